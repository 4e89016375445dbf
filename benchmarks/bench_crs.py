"""CRS figures: dialogues per minute, success and Recall@10 of each built-in CRS, and the
seekers' human-likeness (z-scores against ReDial's human seekers) with how the knobs move it.

    python benchmarks/bench_crs.py [--part speed crs knobs embedded] [--dialogues 200]

- speed: the default scenario (scenarios/crs_movies.yaml: template seekers, retrieval CRS
  over popularity), dialogues per minute of generation (building the parts timed apart).
- crs: success rate, target-accepted rate, Recall@1/10/50 and persuasiveness of the retrieval
  CRS over each recommender (and for a stranger), of the same CRS behind a local HTTP server,
  and of the LLM CRS with a stand-in model that always recommends its best-retrieved candidate
  (its retrieval alone) on the same seekers.
- knobs: the default seekers' lexical figures as z-scores against ReDial, then each knob set
  low and high (the rest as in the default scenario).
- embedded: the embedded model (SmolLM2-135M via llama.cpp) words the seekers' turns with the
  retrieval CRS, and chooses the LLM CRS's turns with template seekers: dialogues per minute,
  LLM calls and seconds per call, success and Recall@10 (`--embedded-dialogues`, default 20).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/ holds the local CRS server used for the HTTP row

from simworld.crs.config import load_crs_scenario  # noqa: E402
from simworld.crs.generation import Generation, read_dialogues  # noqa: E402
from simworld.crs.metrics import LEXICAL, summarise  # noqa: E402

DEFAULT = REPO / "scenarios" / "crs_movies.yaml"


def run(scenario, out: Path, run_id: str, adjust=None) -> tuple[dict, float, float, Path]:
    """(metrics, seconds to build, seconds to generate, run folder) of one generation; `adjust(gen)`
    may swap a part after it is built."""
    began = time.perf_counter()
    gen = Generation.start(scenario, out_dir=out, run_id=run_id)
    built = time.perf_counter() - began
    if adjust is not None:
        adjust(gen)
    began = time.perf_counter()
    try:
        gen.run()
    finally:
        gen.close()
    ran = time.perf_counter() - began
    return summarise(read_dialogues(gen.run_dir)), built, ran, gen.run_dir


def changed(base, **sections):
    data = base.model_dump()
    for key, value in sections.items():
        if key != "crs" and isinstance(value, dict) and isinstance(data.get(key), dict):  # a new CRS replaces
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    data["base_dir"] = base.base_dir
    from simworld.crs.config import parse_crs_scenario

    return parse_crs_scenario(data, "bench")


def row(name: str, m: dict, extra: str = "") -> str:
    def f(key):
        v = m.get(key)
        return f"{v:7.3f}" if isinstance(v, float) else f"{'-':>7}"

    return (f"{name:<38} {f('success_rate')} {f('target_accepted_rate')} {f('recall@1')} {f('recall@10')} "
            f"{f('recall@50')} {f('persuasiveness')} {f('turns')}  {extra}")


HEADER = (f"{'CRS':<38} {'success':>7} {'target':>7} {'R@1':>7} {'R@10':>7} {'R@50':>7} {'persu.':>7} "
          f"{'turns':>7}")


def part_speed(base, out: Path, n: int) -> None:
    print(f"\n## speed: {DEFAULT.name}, {n} dialogues")
    for repeat in range(2):
        m, built, ran, _ = run(changed(base, dialogues=n), out, f"speed-{repeat}")
        print(f"build {built:5.2f} s, generate {ran:5.2f} s: {60 * n / ran:7.0f} dialogues/min "
              f"(success {m['success_rate']:.3f}, Recall@10 {m['recall@10']:.3f})")


def part_crs(base, out: Path, n: int) -> None:
    print(f"\n## built-in CRSs on the same {n} template seekers (seed {base.seed})\n{HEADER}")
    for name, params in (("popularity", {}), ("itemknn", {}), ("mf", {}), ("content", {}), ("random", {})):
        crs = {"kind": "retrieval", "recommender": {"name": name, "params": params}}
        m, _, ran, _ = run(changed(base, dialogues=n, crs=crs), out, f"crs-{name}")
        print(row(f"retrieval over {name}", m, f"{60 * n / ran:6.0f}/min"))
    stranger = changed(base, dialogues=n, crs={"kind": "retrieval", "personalised": False})
    m, _, ran, _ = run(stranger, out, "crs-stranger")
    print(row("retrieval over popularity, for a stranger", m, f"{60 * n / ran:6.0f}/min"))

    from simworld.crs.generation import build_parts
    from tests.crs_server import CRSServer

    scenario = changed(base, dialogues=n)
    with CRSServer(build_parts(scenario, None, "server").crs) as server:
        http = changed(base, dialogues=n, crs={"kind": "http", "url": server.url, "name": "http-retrieval"})
        m, _, ran, _ = run(http, out, "crs-http")
        print(row("HTTP CRS (retrieval behind a local server)", m, f"{60 * n / ran:6.0f}/min"))

    from tests.crs_fakes import ScriptedLLM

    def stand_in(gen) -> None:  # proposes the best-retrieved candidate once the seeker says a genre
        gen.parts.crs.llm = ScriptedLLM()

    stub = changed(base, dialogues=n, crs={"kind": "llm", "embedder": "minilm"},
                   llm={"model": "openai/none", "cache": False})
    m, _, ran, _ = run(stub, out, "crs-llm-stub", stand_in)
    print(row("LLM CRS, stand-in model (MiniLM retrieval)", m, f"{60 * n / ran:6.0f}/min"))


def z_line(name: str, m: dict) -> str:
    h = m["human_likeness"]
    cells = " ".join(f"{h[k]['simulated']:8.3f} ({h[k]['z']:+5.2f})" if h[k]["z"] is not None else f"{'-':>16}"
                     for k in LEXICAL)
    return f"{name:<26} {cells}"


def part_knobs(base, out: Path, n: int) -> None:
    print(f"\n## human-likeness, {n} dialogues each: value (z against ReDial's human seekers)")
    print(f"{'seekers':<26} " + " ".join(f"{k:>16}" for k in LEXICAL))
    m, _, _, _ = run(changed(base, dialogues=n), out, "knobs-default")
    print(z_line("default scenario", m))
    sweeps = {"cooperativeness": (0.2, 1.0), "disclosure": (0.3, 2.0), "patience": (2, 12), "verbosity": (0.0, 0.8),
              "leniency": (0.0, 0.8), "frustration": (0.0, 0.9), "ambiguity": (0.0, 1.0), "lowercase": (0.0, 1.0),
              "typos": (0.0, 0.15), "chit_chat": (0.0, 1.0)}
    for knob, values in sweeps.items():
        for v in values:
            s = changed(base, dialogues=n, seeker={"knobs": {**base.seeker.knobs.model_dump(), knob: v}})
            m, _, _, _ = run(s, out, f"knobs-{knob}-{v}")
            print(z_line(f"{knob} = {v:g}", m))


def part_embedded(base, out: Path, n: int) -> None:
    from simworld.llm import embedded_available, read_ledger

    if not embedded_available():
        print("\n## embedded: the embedded model is not installed; skipped")
        return
    print(f"\n## embedded model (local/smollm2), {n} dialogues each")
    for name, sections in (("seekers worded by SmolLM2, retrieval CRS", {"seeker": {"kind": "llm"}}),
                           ("template seekers, LLM CRS on SmolLM2", {"crs": {"kind": "llm", "embedder": "minilm"}})):
        s = changed(base, dialogues=n, llm={"model": "local/smollm2", "cache": False}, **sections)
        m, _, ran, run_dir = run(s, out, f"embedded-{len(name)}")
        ledger = read_ledger(run_dir)
        per_call = ledger["latency_s"].mean() if ledger.height else float("nan")
        print(f"{name}: {60 * n / ran:6.1f} dialogues/min, {ledger.height} calls ({per_call:.2f} s each), "
              f"success {m['success_rate']:.3f}, Recall@10 {m['recall@10']:.3f}, leaks {m['leaks']}")
        print("  " + z_line("lexical (z)", m))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="*", default=["speed", "crs", "knobs", "embedded"],
                        choices=["speed", "crs", "knobs", "embedded"])
    parser.add_argument("--dialogues", type=int, default=200)
    parser.add_argument("--embedded-dialogues", type=int, default=20)
    args = parser.parse_args()
    base = load_crs_scenario(DEFAULT)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if "speed" in args.part:
            part_speed(base, out, args.dialogues)
        if "crs" in args.part:
            part_crs(base, out, args.dialogues)
        if "knobs" in args.part:
            part_knobs(base, out, args.dialogues)
        if "embedded" in args.part:
            part_embedded(base, out, args.embedded_dialogues)


if __name__ == "__main__":
    main()
