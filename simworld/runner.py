"""The one public way to run a scenario: `Simulation` owns a run's whole life (build, step,
pause, edit, inject, finish, resume). The CLI, the viewer and notebooks only call it."""

from __future__ import annotations

import gc
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from simworld.build import build_parts
from simworld.config import Scenario, load_scenario
from simworld.errors import SimworldError
from simworld.recorder import Recorder, list_run_folders, new_run_folder, read_checkpoint, read_summary
from simworld.world import RoundResult, SimWorld


@dataclass
class Simulation:
    """A world plus its run folder. `step()` runs, records and commits one round; `run()` runs
    the rest and finishes. A round is committed when its checkpoint is written: a run killed at
    any moment resumes (`resume`) to exactly what an uninterrupted run gives."""

    scenario: Scenario
    world: SimWorld
    recorder: Recorder
    _personas_dirty: bool = False
    _interview_llm: Any = field(default=None, repr=False)
    branch: dict | None = None  # what this run is a branch of (simworld/branch.py), kept in its summary

    @property
    def run_dir(self) -> Path:
        return self.recorder.run_dir

    @property
    def run_id(self) -> str:
        return self.recorder.run_id

    @property
    def rounds_done(self) -> int:
        return self.world.round

    @property
    def finished(self) -> bool:
        return self.world.round >= self.scenario.rounds

    # -- stepping ---------------------------------------------------------------------------
    def step(self) -> tuple[RoundResult, dict]:
        """One round: run it, record it, commit it. Python's cyclic garbage collector pauses
        meanwhile: a world of 10,000 agents holds millions of objects, and the full collections
        that a round's allocations set off took a third of its time (reference counting still
        frees what the round drops; the collector resumes after it)."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._step()
        finally:
            if collecting:
                gc.enable()

    def _step(self) -> tuple[RoundResult, dict]:
        llm = self.world.llm
        llm_before = llm.summary() if llm is not None else None
        result = self.world.run_round()
        started = time.perf_counter()
        metrics = self.recorder.record_round(result.round, result.events, result.active, result.wall_s,
                                             extra=self._llm_round_metrics(llm_before))
        self.recorder.record_agents(self.world.agent_snapshot())
        if self._personas_dirty:
            self.recorder.record_personas(self.world.persona_frame())
            self._personas_dirty = False
        self._commit()
        self.recorder.record_timings(result.round, {**result.timings, "record": time.perf_counter() - started})
        return result, metrics

    def _commit(self) -> None:
        """The commit point of a round: the ledger's rows and the memory's changes travel with
        the checkpoint; what they write elsewhere is written after it and replayed on resume."""
        world = self.world
        if world.llm is not None:
            world.llm.flush()  # rows tagged with their round: resume drops rows past the checkpoint
        state = world.state_dict()
        if world.memory is not None:
            state["memory"] = world.memory.pending_changes()
        self.recorder.checkpoint(state)
        if world.memory is not None:
            world.memory.commit()
        if world.llm is not None:
            world.llm.commit()
        self.recorder.write_summary(self.scenario, "running", world.round, extra=self._llm_summary())

    def run(self, on_round: Callable[[RoundResult, dict], None] | None = None) -> None:
        """Run the remaining rounds and finish. Stops cleanly (resumable) when the LLM budget is
        spent or the model cannot be reached; Ctrl-C marks the run interrupted."""
        from simworld.llm import LLMUnavailableError

        try:
            while not self.finished:
                # checked before each round too: a run killed after the round that spent its
                # budget committed resumes to the same stop, not to one more round
                stop = self.budget_message()
                if stop:  # a clean stop at the end of a round; the run folder stays resumable
                    self.mark("budget_exhausted", stop)
                    return
                result, metrics = self.step()
                if on_round:
                    on_round(result, metrics)
        except KeyboardInterrupt:
            self.mark("interrupted", f"interrupted during round {self.world.round + 1}")
            raise
        except LLMUnavailableError as exc:
            message = (f"{exc}; the run stopped with {self.world.round} of {self.scenario.rounds} rounds done "
                       f"and resumes with: simworld resume {self.run_dir}")
            self.mark("stopped", message)
            raise SimworldError(message) from None
        self.finish()

    def finish(self) -> None:
        """Fold the event log into events.parquet and mark the run finished (safe to repeat:
        a run killed inside `finish` is finished by `resume`)."""
        self.recorder.finish(self.scenario, "finished", self.world.round, extra=self._llm_summary())

    def mark(self, status: str, message: str | None = None) -> None:
        """Record why the run is not going on (paused, stopped, failed, interrupted, ...)."""
        self.recorder.write_summary(self.scenario, status, self.world.round, message=message,
                                    extra=self._llm_summary())

    def pause(self) -> None:
        self.mark("paused", f"paused after round {self.world.round}")

    # -- LLM figures ------------------------------------------------------------------------
    def _llm_round_metrics(self, before: dict | None) -> dict[str, float] | None:
        """This round's LLM calls, tokens and cost (the ledger's totals now minus before)."""
        if before is None:
            return None
        after = self.world.llm.summary()
        return {f"llm_{key}": float(after[key] - before[key]) for key in ("calls", "tokens", "cost_usd")}

    def _llm_summary(self) -> dict | None:
        """What the summary holds beside the recorder's figures: the LLM's totals, the branch's parent."""
        extra: dict[str, Any] = {"branch": self.branch} if self.branch is not None else {}
        if self.world.llm is not None:
            extra["llm"] = self.world.llm.summary()
        return extra or None

    def budget_message(self) -> str | None:
        """Why the run must stop now, if the LLM budget is spent."""
        if self.world.llm is None:
            return None
        from simworld.llm import BudgetedModel

        budget = self.world.llm.find(BudgetedModel)
        return budget.message if budget is not None and budget.exhausted else None

    # -- researcher interventions -------------------------------------------------------------
    def memories(self, agent_id: int) -> list[str] | None:
        """What the agent remembers in its memory store, or None when the run has none."""
        return self.world.memory.texts(agent_id) if self.world.memory is not None else None

    def interview(self, agent_id: int, question: str, remember: bool = False) -> str:
        """Ask an agent a question; it answers in character from its persona and memories.

        Nothing about the agent changes (not even its memories' access statistics) unless
        `remember`, which writes the exchange to its memory. A run without an LLM policy uses
        the scenario's `llm` (by default the embedded model). The call is in the ledger."""
        from simworld.agents.llm_policy import interview_agent

        if agent_id not in self.world.users:
            raise SimworldError(f"no agent {agent_id} in this run")
        llm = self.world.llm or self._llm_for_interviews()
        state = self.world.users[agent_id].state
        now = self.world.round
        memory = self.world.memory
        recalled = memory.peek(agent_id, question, now) if memory is not None else tuple(state.recent)
        answer = self.world.loop.run(interview_agent(llm, state.persona, recalled, question, now))
        if remember:
            note = f'Round {now}: a researcher asked "{question}"; I answered "{answer}"'
            state.recent.append(note)
            if memory is not None:
                memory.note(agent_id, note, kind="interview", importance=0.6, round_no=now)
        llm.flush()
        return answer

    def _llm_for_interviews(self):
        if self._interview_llm is None:  # built on the first interview of a run without one
            from simworld.llm import build_language_model

            self._interview_llm = build_language_model(self.scenario.llm, self.run_dir, run_id=self.run_id,
                                                       seed=self.world.streams.int_seed("llm_retry"))
        return self._interview_llm

    def edit_persona(self, agent_id: int, **changes: Any) -> None:
        """Change who an agent is (a new genre taste resets its taste vector); takes effect from
        the next round, and is recorded."""
        if agent_id not in self.world.users:
            raise SimworldError(f"no agent {agent_id} in this run")
        self.world.edit_persona(agent_id, **changes)
        self._personas_dirty = True

    def inject(self, agent_ids: list[int], text: str, item_id: int | None = None) -> None:
        """Put an event (a news post; an ad when item_id is given) in front of these agents next round."""
        self.world.inject(agent_ids, text, item_id)

    def close(self) -> None:
        self.world.close()


# -- starting and resuming -----------------------------------------------------------------------

def start(scenario: Scenario | str | Path, *, out_dir: str | Path | None = None, run_id: str | None = None,
          rounds: int | None = None, seed: int | None = None) -> Simulation:
    """A new run of `scenario` in a new run folder (removed again if the world cannot be built)."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    scenario = scenario.with_overrides(rounds=rounds, seed=seed)
    out = Path(out_dir) if out_dir is not None else Path(scenario.output.dir)
    with new_run_folder(out, run_id or scenario.output.run_id, scenario.name, scenario.seed) as (run_dir, run_id):
        world = SimWorld(scenario, build_parts(scenario, run_id, run_dir), run_id=run_id)
        recorder = Recorder.create(scenario, run_dir, run_id, world.catalog)
    recorder.shared = world.shared_objects()
    recorder.record_personas(world.persona_frame())
    recorder.record_agents(world.agent_snapshot())  # round 0: the tastes people start with
    return Simulation(scenario, world, recorder)


def resume(run_dir: str | Path, execution: dict[str, Any] | None = None) -> Simulation:
    """Continue a run from its last committed round, with nothing duplicated or missing; a run
    whose rounds are all done but which was killed while finishing is finished. `execution`
    (dotted `execution.*` settings) decides elsewhere than the run did so far, e.g. a Ray run
    resumed in this process: every backend gives the same events."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    from simworld.branch import BRANCH_FILE, resume_branch

    if execution and any(not key.startswith("execution.") for key in execution):
        raise SimworldError(f"resume changes only execution settings, not {sorted(execution)}")
    if (run_dir / BRANCH_FILE).exists():  # its first rounds replay its parent's: the branch module knows how
        if execution:
            raise SimworldError("a branch resumes with the backend it was made with (drop --ray/--workers/--local)")
        return resume_branch(run_dir)
    scenario = load_scenario(run_dir / "scenario.yaml")  # saved with its paths made absolute
    if execution:
        scenario = scenario.with_settings(execution)
    run_id = summary["run_id"]
    world = SimWorld(scenario, build_parts(scenario, run_id, run_dir), run_id=run_id)
    sim = reopen(scenario, world, run_dir)
    if sim.finished and summary.get("status") != "finished":
        sim.finish()
    return sim


def reopen(scenario: Scenario, world: SimWorld, run_dir: Path,
           after_load: Callable[[SimWorld, dict | None], None] | None = None) -> Simulation:
    """`world` (just built) at its run folder's last committed round: the checkpoint's state
    (then `after_load(world, state)`), the ledger and the memory put back to it, the recorder
    reopened. `scenario` is the run's, as the summary names it (a branch replays another)."""
    shared = world.shared_objects()
    state = read_checkpoint(run_dir, **shared)
    if state is not None:
        world.load_state(state)
    if after_load is not None:
        after_load(world, state)
    if world.llm is not None:
        world.llm.restore(world.round)
    if world.memory is not None:
        world.memory.restore(state.get("memory") if state is not None else None)
    recorder = Recorder.reopen(run_dir, world.run_id, world.catalog, world.round)
    recorder.shared = shared
    return Simulation(scenario, world, recorder)


def run_scenario(path: str | Path, **kwargs) -> Path:
    """Run a scenario to the end; return its run folder."""
    sim = start(path, **kwargs)
    try:
        sim.run()
    finally:
        sim.close()
    return sim.run_dir


def list_runs(out_dir: str | Path = "runs") -> list[dict]:
    """The summaries of the simulation runs in `out_dir`."""
    return list_run_folders(out_dir, "summary.json", read_summary)


def replay(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Run a run again from its response cache, into a new run folder beside it (or in
    `out_dir`), and return that folder: the saved scenario and seed, with an LLM that only
    answers from the cache, so nothing is called and no API key is needed, and the event log
    equals the original's (run id and latencies aside). A request the cache has no answer for
    raises `LLMCacheMiss`, one sentence, and the new folder is removed."""
    from simworld.branch import BRANCH_FILE, replay_branch
    from simworld.llm import LLMCacheMiss

    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if (run_dir / BRANCH_FILE).exists():  # its saved scenario holds only from its branch round
        return replay_branch(run_dir, out_dir)
    scenario = load_scenario(run_dir / "scenario.yaml")
    llm = scenario.llm
    # the cache the run used: its own cache_dir, or the folder that holds its run folder
    cache_dir = llm.cache_dir if llm.cache_dir is not None else run_dir.resolve().parent
    done = summary.get("rounds_done") or 0
    scenario = scenario.with_overrides(
        llm=llm.model_copy(update={"cache_only": True, "cache_dir": cache_dir}).model_dump(),
        rounds=done if 0 < done < scenario.rounds else None)  # as far as the original got
    out = Path(out_dir) if out_dir is not None else run_dir.parent
    run_id, n = f"{summary['run_id']}-replay", 1
    while (out / run_id).exists():
        n += 1
        run_id = f"{summary['run_id']}-replay-{n}"
    sim = start(scenario, out_dir=out, run_id=run_id)
    try:
        sim.run()
    except LLMCacheMiss:
        sim.close()
        shutil.rmtree(sim.run_dir, ignore_errors=True)
        raise
    sim.close()
    return sim.run_dir
