"""Is a hybrid population's round bound by the LLM endpoint or by our CPU? (issue 14 part 2)

    python benchmarks/bench_hybrid_scale.py [--agents 10000] [--llm-fraction 0.05] [--rounds 3]
        [--latency 0.2] [--concurrency 16] [--backend local|processes] [--workers 2]

A population of `agents` (a share `llm_fraction` deciding by LLM, the rest by the rule model)
runs `rounds` rounds against the OpenAI-protocol test server (tests/openai_server.py, in its
own process) that answers every call after `latency` seconds. For each round it prints the
round's wall time, the decide stage's, the LLM calls the round made (the ledger), the
endpoint's floor for them, ceil(calls / concurrency) * latency, and this process's CPU
seconds in the round. A decide stage close to the floor is bound by the endpoint; one well
above it, with CPU near its wall time, by us. The response cache is off: every round pays
for its calls, as a fresh run does.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from endpoint import start_server

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from simworld import runner
from simworld.config import parse_scenario
from simworld.llm import read_ledger


def scenario(args: argparse.Namespace, url: str) -> dict:
    spec = {
        "name": "hybrid-scale", "seed": 1, "rounds": args.rounds,
        "population": {"size": args.agents},
        "activity": {"model": "constant", "probability": args.probability},
        "recommender": {"name": "popularity", "page_size": 10, "max_pages": 3},
        "policy": {"kind": "hybrid", "llm_fraction": args.llm_fraction},
        "llm": {"model": "openai/gpt-4o-mini", "api_base": url, "concurrency": args.concurrency, "cache": False},
    }
    if args.backend != "local":
        spec["execution"] = {"backend": args.backend, "workers": args.workers}
    return spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--llm-fraction", type=float, default=0.05)
    ap.add_argument("--probability", type=float, default=1.0, help="each agent's chance to be active in a round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--backend", choices=["local", "processes"], default="local")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    proc, url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            sim = runner.start(parse_scenario(scenario(args, url)), out_dir=Path(tmp), run_id="hybrid")
            build_s = time.perf_counter() - t0
            rows = []
            for _ in range(args.rounds):
                wall, cpu = time.perf_counter(), time.process_time()
                result, _ = sim.step()
                rows.append((result.round, result.active, time.perf_counter() - wall, time.process_time() - cpu))
            sim.finish()
            sim.close()
            run_dir = Path(tmp) / "hybrid"
            timings = pl.read_parquet(run_dir / "timings.parquet")
            ledger = read_ledger(run_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.agents:,} agents, {args.llm_fraction:.0%} deciding by LLM, backend {args.backend}"
          f"{f' ({args.workers} workers)' if args.backend != 'local' else ''}, LLM concurrency {args.concurrency}, "
          f"endpoint latency {args.latency * 1000:.0f} ms; build {build_s:.1f} s; load average {load}")
    print(f"{'round':>5} {'active':>7} {'LLM calls':>9} {'floor s':>8} {'decide s':>9} {'decide/floor':>12} "
          f"{'round s':>8} {'CPU s':>6} {'rest of round s':>15}")
    decide_total = floor_total = 0.0
    for round_no, active, wall, cpu in rows:
        calls = ledger.filter((pl.col("round") == round_no) & ~pl.col("cached")).height
        floor = math.ceil(calls / args.concurrency) * args.latency
        decide = float(timings.filter((pl.col("round") == round_no) & (pl.col("stage") == "decide"))["seconds"].sum())
        decide_total, floor_total = decide_total + decide, floor_total + floor
        print(f"{round_no:>5} {active:>7,} {calls:>9,} {floor:>8.2f} {decide:>9.2f} {decide / floor if floor else 0:>12.2f} "
              f"{wall:>8.2f} {cpu:>6.2f} {wall - decide:>15.2f}")
    verdict = "the endpoint" if floor_total and decide_total / floor_total <= 1.25 else "our CPU (or the machine's load)"
    print(f"decide stage / endpoint floor over the run: {decide_total / floor_total if floor_total else 0:.2f} "
          f"-> bound by {verdict}")


if __name__ == "__main__":
    main()
