"""Test support: run a scenario and SIGKILL this very process at a named point of a round.

    python -m tests.killer SCENARIO OUT_DIR RUN_ID POINT ROUND

POINT is one of
  before:STAGE / after:STAGE   at a stage boundary of round ROUND (STAGE: activate ... learn)
  after:ledger_flush          the round's ledger rows are written, its checkpoint is not
  after:checkpoint            the round is committed; the memory delta is not yet in chroma
  after:memory_commit         the memory delta is in chroma; the summary is not yet updated
  in:finish                   every round done, events.parquet written, the summary still "running"
  random                      no hook: the test kills the process from outside at a random moment
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class KillStage:
    """A stage that only kills: it writes no event, so the run up to it is the real one."""

    round: int
    name: str = "kill"

    def run(self, world, rnd) -> None:
        if rnd.number == self.round:
            die()


def _kill_after(cls: type, method: str, when) -> None:
    original = getattr(cls, method)

    def wrapped(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if when(self, *args, **kwargs):
            die()
        return result

    setattr(cls, method, wrapped)


def install(point: str, round_no: int) -> None:
    """Arm the kill at `point` of round `round_no`."""
    from simworld import build, runner
    from simworld.recorder import Recorder

    if point == "random":
        return
    where, _, name = point.partition(":")
    current = {"round": 0}
    original_step = runner.Simulation.step

    def step(self):  # remember which round is committing
        current["round"] = self.world.round + 1
        return original_step(self)

    runner.Simulation.step = step
    if where in ("before", "after") and name not in ("ledger_flush", "checkpoint", "memory_commit"):
        original_build = build.build_stages

        def build_stages(scenario):
            placed = original_build(scenario)
            anchor = {"before": name} if where == "before" else {"after": name}
            return [*placed, build.PlacedStage(KillStage(round_no), **anchor)]

        build.build_stages = build_stages
        return
    at_round = lambda *a, **k: current["round"] == round_no  # noqa: E731
    if name == "ledger_flush":
        from simworld.llm import LedgerModel

        _kill_after(LedgerModel, "flush", at_round)
    elif name == "checkpoint":
        _kill_after(Recorder, "checkpoint", at_round)
    elif name == "memory_commit":
        from simworld.world_memory import WorldMemory

        _kill_after(WorldMemory, "commit", at_round)
    elif point == "in:finish":
        original_summary = Recorder.write_summary

        def write_summary(self, scenario, status, *args, **kwargs):
            if status == "finished":
                die()
            return original_summary(self, scenario, status, *args, **kwargs)

        Recorder.write_summary = write_summary
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def main(argv: list[str]) -> None:
    scenario, out_dir, run_id, point, round_no = argv
    install(point, int(round_no))
    from simworld import runner

    runner.run_scenario(scenario, out_dir=out_dir, run_id=run_id)
    raise SystemExit(f"the run ended without reaching the kill point {point} in round {round_no}")


if __name__ == "__main__":
    main(sys.argv[1:])
