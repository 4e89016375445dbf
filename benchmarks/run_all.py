"""Every headline figure of simworld's benchmarks in one table (issue 14, part 4).

    python benchmarks/run_all.py              # the issue's sizes (about 15-20 minutes here)
    python benchmarks/run_all.py --quick      # small sizes, to check that everything runs
    python benchmarks/run_all.py --only world llm

Each benchmark runs as a process of its own (a fresh interpreter, nothing warm carried from
one to the next) and hands its figures over as JSON (benchmarks/figures.py); this script
prints them in one table. The last column says how to read a figure; the first names the
script to run alone for the details (each script's docstring explains its set-up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

Row = tuple[str, str, str]  # figure, value, how to read it


@dataclass(frozen=True)
class Bench:
    name: str
    script: str  # in benchmarks/
    full: list[str]
    quick: list[str]
    rows: Callable[[dict], list[Row]]


def _f(value, spec: str = ".2f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def world_rows(f: dict) -> list[Row]:
    size = f"{f.get('agents', 0):,} rule agents x {f.get('rounds', 0)} rounds"
    return [
        (f"whole run, {size}", f"{_f(f.get('wall_s'), '.0f', ' s')} ({_f(f.get('cpu_s'), '.0f', ' s')} CPU)",
         ("build + every round (recorded, checkpointed) + finish; target: 10,000 x 100 in 300 s. On a busy "
         "machine the wall time also counts what others took: the CPU time is this run's own")),
        ("agent-rounds per second (active agents)", _f(f.get("agent_rounds_per_s"), ",.0f"),
         "higher is better; a round must not get dearer as the run grows (see the script's first/last rounds)"),
    ]


def world_part_rows(part: str, what: str) -> Callable[[dict], list[Row]]:
    def rows(f: dict) -> list[Row]:
        return [(f"one round with {part}, {f.get('agents', 0):,} rule agents", _f(f.get("round_s"), ".2f", " s"),
                 f"the price of {what}; the script prints it stage by stage")]
    return rows


def llm_rows(f: dict) -> list[Row]:
    rows = []
    for c in (16, 64):
        raw, stack = f.get(f"raw_ratio_c{c}"), f.get(f"stack_ratio_c{c}")
        rows.append((f"LLM calls at concurrency {c}: time / latency floor",
                     f"raw {_f(raw)}x, litellm {_f(f.get(f'litellm_ratio_c{c}'))}x, simworld {_f(stack)}x",
                     ("1.0 is the endpoint's own latency; simworld's stack should be within 1.2x of the raw "
                      f"client's ({_f(stack / raw if raw and stack else None)}x now)")))
    return rows


def memory_rows(f: dict) -> list[Row]:
    size = f"{f.get('agents', 0):,} agents x {f.get('memories_per_agent', 0)} memories, top-5"
    return [(f"memory retrieval, one round ({size})", _f(1000 * f["ours_s"] if "ours_s" in f else None, ".0f", " ms"),
             "every active agent's recall in one batch (recency + importance + relevance)")]


def recommender_rows(f: dict) -> list[Row]:
    times = ", ".join(f"{key.removesuffix(' recommend_s')} {_f(v, '.2f')}"
                      for key, v in f.items() if key.endswith(" recommend_s"))
    return [(f"recommenders: one batched recommend for {f.get('users', 0):,} users (k={f.get('k')}), s", times,
             "what the recommend stage costs per round; fit and update times in the script's table")]


def ray_rows(f: dict) -> list[Row]:
    return [(f"same run, single process vs Ray with 2 actors: {f.get('what')}",
             f"{_f(f.get('local_s'), '.1f', ' s')} vs {_f(f.get('ray_s'), '.1f', ' s')} ({_f(f.get('ratio'))}x)",
             ("above 1: Ray's overhead on one machine (observations travel to the actors every round); below 1: "
             f"the actors' CPUs gain more than that costs. Ray's own start, {_f(f.get('ray_start_s'), '.0f', ' s')}, "
             "comes on top"))]


def default_rows(f: dict) -> list[Row]:
    return [("default scenario (scenarios/movies.yaml), whole run", _f(f.get("wall_s"), ".0f", " s"),
             "the quick start's `make run`; it should take at most 3 minutes here")]


BENCHES = [
    Bench("world", "bench_world.py", ["--agents", "10000", "--rounds", "100"], ["--agents", "2000", "--rounds", "10"],
          world_rows),
    Bench("world_social", "bench_world.py", ["--agents", "10000", "--rounds", "3", "--social"],
          ["--agents", "1000", "--rounds", "2", "--social"],
          world_part_rows("the social side", "the friend graph's chats, posts and feed")),
    Bench("world_memory", "bench_world.py", ["--agents", "1000", "--rounds", "2", "--memory"],
          ["--agents", "100", "--rounds", "2", "--memory"],
          world_part_rows("chromadb memory", "agent memory: mostly MiniLM embedding every new memory on the CPU")),
    Bench("llm", "bench_llm_concurrency.py", ["--only-overhead", "--repeats", "3"],
          ["--only-overhead", "--calls", "64", "--repeats", "1", "--workers", "1"], llm_rows),
    Bench("memory", "bench_memory.py", ["--skip", "naive", "--skip", "writes", "--skip", "embedding"],
          ["--agents", "200", "--quick", "--skip", "naive", "--skip", "writes", "--skip", "embedding"], memory_rows),
    Bench("recommenders", "bench_recommenders.py", [], ["--users", "200", "--repeats", "1"], recommender_rows),
    Bench("ray", "bench_ray.py", [], ["--quick"], ray_rows),
    Bench("ray_llm", "bench_ray.py", ["--llm", "--agents", "100", "--rounds", "3"], ["--llm", "--quick"], ray_rows),
    Bench("default", "bench_default.py", [], [], default_rows),
]


def run_one(bench: Bench, quick: bool, tmp: Path, console: Console) -> tuple[list[Row], float, str | None]:
    out = tmp / f"{bench.name}.json"
    cmd = [sys.executable, str(HERE / bench.script), *(bench.quick if quick else bench.full), "--json", str(out)]
    started = time.perf_counter()
    with console.status(f"{bench.name}: {' '.join(cmd[1:-2])}"):
        done = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(HERE)})
    took = time.perf_counter() - started
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return [], took, f"exit {done.returncode}: {tail[0]}"
    return bench.rows(json.loads(out.read_text())), took, None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: checks that every benchmark runs")
    ap.add_argument("--only", nargs="*", choices=[b.name for b in BENCHES], help="run only these")
    args = ap.parse_args(argv)
    console = Console(width=max(Console().width, 150))
    table = Table(title=f"simworld benchmarks ({'quick sizes' if args.quick else 'full sizes'}; "
                        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start)")
    for col, justify in (("benchmark", "left"), ("figure", "left"), ("value", "right"), ("how to read it", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for bench in BENCHES:
            if args.only and bench.name not in args.only:
                continue
            rows, took, error = run_one(bench, args.quick, Path(tmp), console)
            label = f"{bench.script}\n({took:.0f} s)"
            if error:
                failed += 1
                table.add_row(label, "[red]failed[/red]", "", error)
            for k, (figure, value, how) in enumerate(rows):
                table.add_row(label if k == 0 else "", figure, value, how)
            table.add_section()
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
