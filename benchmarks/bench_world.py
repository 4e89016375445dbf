"""What a rule-policy world costs, part by part (issue 14: 10,000 agents x 100 rounds in 5 minutes).

    python benchmarks/bench_world.py --agents 10000 --rounds 100
    python benchmarks/bench_world.py --agents 10000 --rounds 4 --social
    python benchmarks/bench_world.py --agents 1000 --rounds 4 --memory   # embeddings: keep it small

Prints the wall time of the whole run (build, every round with its recording and checkpoint,
finish) and the CPU time this process spent (the machine is shared: on a busy machine the wall
time exceeds the CPU time by what others took), agent-rounds per second, the mean seconds per round of each stage of the round
(timings.parquet), and of each part of the recording that follows a round (the event log
and metrics, the agents' snapshot, the checkpoint, the summary), and the first and last ten
rounds' cost side by side (a round must not get dearer as the run's history grows).
`--memory` adds chromadb agent memory (MiniLM embeddings), `--social` the social layer (a
friend graph, chats, posts, the feed); each prints its own stages' cost per round.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import polars as pl
from figures import add_json_option, write_figures
from rich.console import Console
from rich.table import Table

from simworld import runner
from simworld.config import parse_scenario


def scenario_for(args: argparse.Namespace) -> dict:
    spec = {
        "name": "bench", "seed": 1, "rounds": args.rounds,
        "population": {"size": args.agents}, "activity": {"model": "pareto", "probability": args.probability},
        "recommender": {"name": args.recommender, "page_size": 10, "max_pages": 3},
    }
    if args.memory:
        spec["memory"] = {"backend": "chroma", "embedder": "minilm"}
    if args.social:
        spec["social"] = {"graph": {"source": "taste_sbm", "degree": 6}}
    return spec


def timed(recorded: dict[str, list[float]], name: str, fn):
    """`fn`, adding each call's seconds to recorded[name] (the benchmark's own stopwatch)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            recorded[name].append(time.perf_counter() - started)
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--recommender", default="popularity")
    ap.add_argument("--probability", type=float, default=0.5)
    ap.add_argument("--memory", action="store_true", help="agent memory in chromadb (MiniLM embeddings)")
    ap.add_argument("--social", action="store_true", help="the social layer (taste-SBM friend graph, degree 6)")
    add_json_option(ap)
    args = ap.parse_args()
    scenario = parse_scenario(scenario_for(args))
    console = Console(width=120)
    recording: dict[str, list[float]] = defaultdict(list)
    steps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0, cpu0 = time.perf_counter(), time.process_time()
        sim = runner.start(scenario, out_dir=Path(tmp), run_id="bench")
        build_s = time.perf_counter() - t0
        rec = sim.recorder
        rec.record_round = timed(recording, "events + metrics", rec.record_round)
        rec.record_agents = timed(recording, "agents snapshot", rec.record_agents)
        rec.checkpoint = timed(recording, "checkpoint", rec.checkpoint)
        rec.write_summary = timed(recording, "summary", rec.write_summary)
        rec.record_timings = timed(recording, "timings", rec.record_timings)
        agent_rounds = 0
        for _ in range(args.rounds):
            t = time.perf_counter()
            result, _ = sim.step()
            steps.append(time.perf_counter() - t)
            agent_rounds += result.active
        t = time.perf_counter()
        sim.finish()
        finish_s = time.perf_counter() - t
        sim.close()
        total_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        run_dir = Path(tmp) / "bench"
        timings = pl.read_parquet(run_dir / "timings.parquet")
        checkpoint_mb = (run_dir / "checkpoint.pkl").stat().st_size / 1e6
    rounds_s = sum(steps)
    extras = " + ".join(name for name, on in (("memory", args.memory), ("social", args.social)) if on) or "rule only"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    table = Table(title=f"{args.agents:,} agents x {args.rounds} rounds, {args.recommender}, {extras} "
                        f"(load average {load})")
    for col in ("total s", "CPU s", "build s", "rounds s (with recording)", "finish s", "active agent-rounds",
                "active agent-rounds/s", "all agent-rounds/s", "checkpoint MB"):
        table.add_column(col, justify="right")
    table.add_row(f"{total_s:.1f}", f"{cpu_s:.1f}", f"{build_s:.2f}", f"{rounds_s:.1f}", f"{finish_s:.2f}", f"{agent_rounds:,}",
                  f"{agent_rounds / rounds_s:,.0f}", f"{args.agents * args.rounds / rounds_s:,.0f}",
                  f"{checkpoint_mb:.1f}")
    console.print(table)

    stages = Table(title="mean seconds per round: the round's stages (timings.parquet), then the recording after it")
    for col in ("part", "s / round", "share", "first 10 rounds", "last 10 rounds"):
        stages.add_column(col, justify="right" if col != "part" else "left")
    per_round = sum(steps) / len(steps)
    ordered = timings.group_by("stage", maintain_order=True).agg(pl.col("seconds"))
    for stage, seconds in ordered.iter_rows():
        if stage == "record":
            continue
        stages.add_row(stage, *_cells(seconds, per_round))
    for name, seconds in recording.items():
        stages.add_row(f"record: {name}", *_cells(seconds[-args.rounds:], per_round))
    stages.add_row("whole step", *_cells(steps, per_round))
    console.print(stages)
    write_figures(args.json, {"agents": args.agents, "rounds": args.rounds, "wall_s": total_s, "cpu_s": cpu_s,
                              "build_s": build_s, "finish_s": finish_s, "round_s": per_round,
                              "agent_rounds_per_s": agent_rounds / rounds_s, "checkpoint_mb": checkpoint_mb})


def _cells(seconds: list[float], per_round: float) -> list[str]:
    mean = sum(seconds) / len(seconds) if seconds else 0.0
    first, last = seconds[:10], seconds[-10:]
    return [f"{mean:.3f}", f"{mean / per_round:.0%}", f"{sum(first) / max(len(first), 1):.3f}",
            f"{sum(last) / max(len(last), 1):.3f}"]


if __name__ == "__main__":
    main()
