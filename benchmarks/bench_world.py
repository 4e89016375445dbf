"""Agent-rounds per second of a rule-policy run (issue 2's figure: 10,000 agents x 20 rounds).

    python benchmarks/bench_world.py --agents 10000 --rounds 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from simworld import runner
from simworld.config import parse_scenario


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--recommender", default="popularity")
    ap.add_argument("--probability", type=float, default=0.5)
    args = ap.parse_args()
    scenario = parse_scenario({
        "name": "bench", "seed": 1, "rounds": args.rounds,
        "population": {"size": args.agents}, "activity": {"model": "pareto", "probability": args.probability},
        "recommender": {"name": args.recommender, "page_size": 10, "max_pages": 3},
    })
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sim = runner.start(scenario, out_dir=Path(tmp), run_id="bench")
        build_s = time.perf_counter() - t0
        agent_rounds, step_s = 0, 0.0
        for _ in range(args.rounds):
            t = time.perf_counter()
            result, _ = sim.step()
            step_s += time.perf_counter() - t
            agent_rounds += result.active
        t = time.perf_counter()
        sim.finish()
        finish_s = time.perf_counter() - t
        sim.close()
        timings = pl.read_parquet(Path(tmp) / "bench" / "timings.parquet")
    table = Table(title=f"rule-policy world: {args.agents} agents x {args.rounds} rounds ({args.recommender})")
    for col in ("build s", "rounds s (incl. recording)", "active agent-rounds", "agent-rounds/s",
                "all agent-rounds/s", "finish s"):
        table.add_column(col, justify="right")
    table.add_row(f"{build_s:.2f}", f"{step_s:.2f}", str(agent_rounds), f"{agent_rounds / step_s:,.0f}",
                  f"{args.agents * args.rounds / step_s:,.0f}", f"{finish_s:.2f}")
    console.print(table)
    stages = Table(title="mean seconds per round, by stage (timings.parquet)")
    stages.add_column("stage")
    stages.add_column("s / round", justify="right")
    stages.add_column("share", justify="right")
    per_stage = timings.group_by("stage", maintain_order=True).agg(pl.col("seconds").mean())
    total = float(per_stage["seconds"].sum())
    for stage, seconds in per_stage.iter_rows():
        stages.add_row(stage, f"{seconds:.3f}", f"{seconds / total:.0%}")
    console.print(stages)


if __name__ == "__main__":
    main()
