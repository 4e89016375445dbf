"""Wall time of the default scenario, as the quick start's `make run` runs it.

    python benchmarks/bench_default.py [--scenario scenarios/movies.yaml]

Runs `simworld run SCENARIO` into a scratch folder in a fresh process and prints the wall
time, the rounds and the per-stage means from the run's timings.parquet.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from figures import add_json_option, write_figures

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="scenarios/movies.yaml")
    add_json_option(ap)
    args = ap.parse_args()
    simworld = Path(sys.executable).with_name("simworld")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run([str(simworld), "run", args.scenario, "--out", tmp, "--run-id", "bench"], cwd=ROOT,
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        timings = pl.read_parquet(Path(tmp) / "bench" / "timings.parquet")
    per_stage = timings.group_by("stage", maintain_order=True).agg(pl.col("seconds").mean())
    rounds = timings["round"].n_unique()
    print(f"{args.scenario}: {wall:.1f} s wall for {rounds} rounds (load {os.getloadavg()[0]:.1f})")
    for stage, seconds in per_stage.iter_rows():
        print(f"  {stage:<12} {seconds * 1000:8.1f} ms / round")
    write_figures(args.json, {"wall_s": wall, "rounds": rounds})


if __name__ == "__main__":
    main()
