"""Text realism of the voiced feelings: a run folder's figures, or a quick probe of the voice prompt.

    python benchmarks/bench_text_realism.py score RUN_DIR [RUN_DIR ...]
    python benchmarks/bench_text_realism.py probe [--films 60] [--seed 0]

`score` prints `simworld.text_realism.score_run` (what `simworld eval text RUN_DIR` prints) for
every feeling of the run, for the lines the LLM was asked to voice (the first VOICED_FILMS
watches of each hybrid decision) as shown, and for the model's lines the voice gate kept:
sentiment-rating consistency, distinct-1/2, the share of lines another agent wrote word for
word, mean words, the shares of short and numeric lines, and the share of voiced lines the
templates wrote (the fallback rows of `VoicePolicy` name them). A run made before the gate
existed has no such rows: all its voiced lines are the model's.

`probe` asks the embedded model (`local/smollm2`) to voice pairs of films with seeded ratings
exactly as `VoicePolicy` does, with no simulation around it (about 0.3-0.5 s a call), and prints
the same figures for the model's raw lines and for the gated ones, with the gate's reasons.

Measured (December 2026) on scenarios/movies.yaml with `policy: {kind: hybrid, llm_fraction: 0.0,
voice: true, voice_fraction: 0.2}`, voiced lines (95 in each run):

                            before (JSON, 2 films a call)   after (free text, examples, gate)
    consistency                  1.000 (few lines had any sentiment)   1.000 (model's own: 0.62 in the probe)
    distinct-1 / distinct-2      0.571 / 0.798 (fragments, names)      0.321 / 0.693
    mean words                   2.1                                  9.4
    short / numeric lines        0.768 / 0.474                        0.000 / 0.000
    shared across agents         0.305                                0.105 (the templates' lines)
    written by the templates     0                                    0.137
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simworld.agents.llm_policy import VOICED_FILMS, gate_feelings  # noqa: E402
from simworld.text_realism import score_run, score_texts  # noqa: E402

COLUMNS = ("lines", "consistency", "distinct_1", "distinct_2", "shared_across_agents", "mean_words", "short",
           "numeric")


def print_table(title: str, results: dict[str, dict]) -> None:
    table = Table(title=title)
    table.add_column("measure")
    for name in results:
        table.add_column(name, justify="right")
    for key in (*COLUMNS, "template_share"):
        cells = []
        for r in results.values():
            v = r.get(key)
            cells.append("-" if v is None else f"{v:.0f}" if key == "lines" else f"{v:.3f}")
        table.add_row(key, *cells)
    Console().print(table)


def score(args) -> None:
    for run_dir in args.run_dirs:
        print_table(f"text realism of {run_dir.name}", score_run(run_dir))


def probe(args) -> None:
    from simworld.agents.llm_policy import voice_line, voice_line_flags
    from simworld.agents.observation import Observation
    from simworld.agents.rule_policy import RulePolicy
    from simworld.catalog import load_bundled_catalog
    from simworld.llm import LiteLLMModel
    from simworld.population import synthetic_personas

    catalog = load_bundled_catalog()
    rng = np.random.default_rng(args.seed)
    people = synthetic_personas(args.films // VOICED_FILMS, catalog, rng)
    rule = RulePolicy()
    model = LiteLLMModel("local/smollm2", temperature=0.7)
    loop = asyncio.new_event_loop()
    raw, final, reasons, tokens = [], [], Counter(), 0
    started = time.perf_counter()
    for k, persona in enumerate(people):
        items = [catalog.get(int(i)) for i in rng.choice(catalog.ids, size=VOICED_FILMS, replace=False)]
        films = [(item, float(rng.choice(np.arange(1, 11)) / 2)) for item in items]
        obs = Observation(agent_id=persona.agent_id, round=1, persona=persona, taste=None, pages=(),
                          watched=frozenset(), catalog=catalog, item_mean_rating=lambda _: None,
                          search=catalog.search, rng=np.random.default_rng([args.seed, k]))
        templates = [rule.feeling(obs, item, rating) for item, rating in films]
        lines = []
        for item, rating in films:
            line, usage = loop.run_until_complete(voice_line(model, item, rating, persona.agent_id, 1))
            tokens += usage.prompt_tokens + usage.completion_tokens
            lines.append(line or "")
        kept, replaced = gate_feelings(lines, films, templates, persona.name)
        for flags in replaced.values():
            reasons.update(flags)
        for (item, rating), line, out in zip(films, lines, kept):
            raw.append((persona.agent_id, line, rating))
            final.append((persona.agent_id, out, rating))
            if args.show:
                flags = voice_line_flags(line, item, rating, persona.name)
                print(f"{rating:>3} {item.label[:30]:30} {line!r} {sorted(flags) or ''}")
    elapsed = time.perf_counter() - started
    loop.close()
    results = {"model (raw)": score_texts(raw), "after the gate": score_texts(final)}
    results["after the gate"]["template_share"] = sum(a != b for (_, a, _), (_, b, _) in zip(raw, final)) / len(raw)
    print_table(f"voice probe: {len(raw)} films, {elapsed:.0f} s, {tokens} tokens", results)
    print("gate reasons:", dict(reasons))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="score run folders")
    s.add_argument("run_dirs", nargs="+", type=Path)
    p = sub.add_parser("probe", help="voice seeded films with the embedded model")
    p.add_argument("--films", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show", action="store_true", help="print every line with its flags")
    args = parser.parse_args()
    {"score": score, "probe": probe}[args.command](args)


if __name__ == "__main__":
    main()
