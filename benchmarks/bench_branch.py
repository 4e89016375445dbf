"""What a branch costs (issue 14 part 5): the parent run, then a branch after round R.

    python benchmarks/bench_branch.py                       # the default scenario, branch after round 5
    python benchmarks/bench_branch.py --scenario scenarios/movies.yaml --round 3 --set recommender.name=mf

Prints the parent's wall time, the branch's replay of rounds 1..R (rebuilding the state from
the response cache, memories included) and its own rounds after R, and the parent's rounds
1..R as they took when they ran (the replay redoes their compute; it makes no LLM call, its
LLM stack has nothing below the cache). The machine is shared: wall times include what
others took.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from simworld import runner
from simworld.branch import parse_settings, start_branch
from simworld.recorder import read_metrics

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(REPO / "scenarios" / "movies.yaml"))
    parser.add_argument("--round", type=int, default=5, help="branch after this round")
    parser.add_argument("--set", action="append", default=None, help="KEY=VALUE (default recommender.name=mf)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the parent (default: the scenario's)")
    args = parser.parse_args()
    settings = parse_settings(args.set or ["recommender.name=mf"])
    with tempfile.TemporaryDirectory(prefix="bench-branch-") as tmp:
        started = time.perf_counter()
        parent = runner.run_scenario(args.scenario, out_dir=Path(tmp), run_id="parent", rounds=args.rounds)
        parent_s = time.perf_counter() - started
        started = time.perf_counter()
        sim = start_branch(parent, args.round, settings)
        replay_s = time.perf_counter() - started
        started = time.perf_counter()
        try:
            sim.run()
        finally:
            sim.close()
        own_s = time.perf_counter() - started
        metrics = read_metrics(parent)
        rounds = int(metrics["round"].max())
        parent_rounds_s = float(metrics.filter(metrics["round"] <= args.round)["wall_s"].sum())
    table = Table(title=f"branch of {Path(args.scenario).name} after round {args.round} of {rounds} "
                        f"({', '.join(f'{k}={v}' for k, v in settings.items())})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("parent run, whole (s)", f"{parent_s:.1f}")
    table.add_row(f"parent's rounds 1..{args.round}, their own wall_s (s)", f"{parent_rounds_s:.1f}")
    table.add_row(f"branch: replay of rounds 1..{args.round} and switch (s)", f"{replay_s:.1f}")
    table.add_row(f"branch: its own rounds {args.round + 1}..{rounds} (s)", f"{own_s:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
