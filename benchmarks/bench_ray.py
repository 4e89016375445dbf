"""The same run in one process and on Ray with 2 actors: both wall times and their ratio.

    python benchmarks/bench_ray.py                           # 1,000 rule agents x 5 rounds
    python benchmarks/bench_ray.py --llm --agents 100        # LLM agents, a local endpoint with 0.2 s latency
    python benchmarks/bench_ray.py --scenario scenarios/movies.yaml --rounds 3

A local Ray reaches off the machine unless it runs in a network namespace holding only
loopback, so the script runs itself again inside one (`unshare --net`, `lo` up; Linux) and
starts Ray there, pinned to 127.0.0.1. `--llm` starts tests/openai_server.py as a process in
the same namespace, and each run gets a fresh response cache (both pay for their calls).

Wall times are of the whole run (build, every round, finish); Ray's includes its actors'
start (each imports simworld), and Ray's own start is printed apart. The machine is shared:
figures move with its load.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from figures import add_json_option, write_figures
from endpoint import start_server

from simworld.execution.ray_backend import LOOPBACK_NAMESPACE

ROOT = Path(__file__).resolve().parents[1]


def scenario_for(args: argparse.Namespace, url: str | None, cache: Path):
    from simworld.config import load_scenario, parse_scenario

    if args.scenario:
        scenario = load_scenario(args.scenario).with_overrides(rounds=args.rounds)
    else:
        spec = {"name": "bench-ray", "seed": 1, "rounds": args.rounds or 5,
                "population": {"size": args.agents}, "activity": {"model": "pareto", "probability": 0.5},
                "recommender": {"name": "popularity", "page_size": 10, "max_pages": 2}, "policy": "rule"}
        if url:
            spec["policy"] = "llm"
            spec["llm"] = {"model": "openai/bench", "api_base": url, "concurrency": 64, "timeout_s": 30}
        scenario = parse_scenario(spec, "bench")
    if url or scenario.llm.cache:
        scenario = scenario.with_settings({"llm.cache_dir": str(cache)})
    return scenario


def timed_run(scenario, out: Path, run_id: str, **execution) -> tuple[float, object]:
    from simworld import runner

    started = time.perf_counter()
    sim = runner.start(scenario.with_settings({f"execution.{k}": v for k, v in execution.items()}),
                       out_dir=out, run_id=run_id)
    try:
        sim.run()
    finally:
        sim.close()
    return time.perf_counter() - started, sim


def inside(args: argparse.Namespace) -> None:
    import ray

    from simworld.config import ExecutionSpec
    from simworld.execution.ray_backend import connect

    server, url = start_server(args.latency) if args.llm else (None, None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            single, _ = timed_run(scenario_for(args, url, out / "cache-1"), out, "single")
            started = time.perf_counter()
            connect(ExecutionSpec(backend="ray", workers=args.workers))
            ray_start = time.perf_counter() - started
            on_ray, _ = timed_run(scenario_for(args, url, out / "cache-2"), out, "ray", backend="ray",
                                  workers=args.workers, shard_size=args.shard_size)
            ray.shutdown()
    finally:
        if server is not None:
            server.terminate()
    what = args.scenario or (f"{args.agents} {'LLM' if args.llm else 'rule'} agents x {args.rounds or 5} rounds"
                             + (f", endpoint latency {args.latency:g} s" if args.llm else ""))
    print(f"run: {what}")
    print(f"{'single process':<28}{single:8.1f} s")
    print(f"{f'Ray, {args.workers} actors':<28}{on_ray:8.1f} s   (Ray's own start: {ray_start:.1f} s more)")
    print(f"{'Ray / single process':<28}{on_ray / single:8.2f} x")
    write_figures(args.json, {"what": what, "local_s": single, "ray_s": on_ray, "ray_start_s": ray_start,
                              "ratio": on_ray / single})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=None, help="default: 5, or the scenario's")
    ap.add_argument("--scenario", default=None, help="a scenario file instead of the built-in rule/LLM one")
    ap.add_argument("--llm", action="store_true", help="LLM agents against tests/openai_server.py")
    ap.add_argument("--latency", type=float, default=0.2, help="--llm: the endpoint's seconds per answer")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="a small run (300 agents, or 30 with --llm; 3 rounds)")
    add_json_option(ap)
    args = ap.parse_args()
    if args.quick:
        args.agents, args.rounds = (30 if args.llm else 300), 3
    if all(name == "lo" for _, name in socket.if_nameindex()):
        inside(args)
        return
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    sys.exit(subprocess.run([*LOOPBACK_NAMESPACE, sys.executable, *sys.argv], check=False, env=env).returncode)


if __name__ == "__main__":
    main()
