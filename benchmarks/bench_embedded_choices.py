"""Are the embedded model's choices sensible? The figures behind the default scenario's mix.

    python benchmarks/bench_embedded_choices.py [--pages 60] [--page-size 5]

Each synthetic persona gets one page of films drawn from the bundled catalog. Three
choosers judge the same pages: the embedded model (`local/smollm2`, asked exactly what
`LLMPolicy` asks, with the per-page schema), the calibrated rule model, and a uniform random
pick of as many films as the model chose. For every watched film we score its taste match
(cosine between the persona's genre tastes and the film's genres) and report, per chooser:

- taste lift: mean match of the films watched minus the mean match of their pages (0 = blind);
- hit rate: share of watches that are the page's best-matching film;
- first-slot share: share of watches in the page's first position (position bias; 1/page_size
  is unbiased);
- rating-match correlation: do higher ratings go to better-matching films?
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simworld.agents.llm_policy import page_schema  # noqa: E402
from simworld.agents.observation import Observation  # noqa: E402
from simworld.agents.prompting import fit_to_budget, item_lines, system_message, template  # noqa: E402
from simworld.agents.rule_policy import RulePolicy  # noqa: E402
from simworld.catalog import load_bundled_catalog  # noqa: E402
from simworld.llm import LiteLLMModel, LLMOutputError, LLMRequest  # noqa: E402
from simworld.population import synthetic_personas  # noqa: E402


def match(catalog, taste: np.ndarray, item_id: int) -> float:
    genres = catalog.genre_matrix[catalog.row(item_id)]
    norm = np.linalg.norm(genres) * np.linalg.norm(taste)
    return float(taste @ genres / norm) if norm else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--page-size", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    catalog = load_bundled_catalog()
    rng = np.random.default_rng(args.seed)
    personas = synthetic_personas(args.pages, catalog, rng)
    rule = RulePolicy()
    model = LiteLLMModel("local/smollm2", temperature=0.7, max_tokens=200)
    loop = asyncio.new_event_loop()  # the one async model method runs on a loop this script owns
    ids = np.array(catalog.ids)
    stats = {name: {"lift": [], "hit": [], "first": [], "ratings": [], "matches": []} for name in ("embedded", "rule", "random")}
    invalid = 0
    started = time.perf_counter()
    for k, persona in enumerate(tqdm(personas, desc="pages")):
        taste = persona.taste_vector(catalog.genres)
        page = tuple(catalog.get(int(i)) for i in rng.choice(ids, size=args.page_size, replace=False))
        scores = [match(catalog, taste, i.item_id) for i in page]
        obs = Observation(agent_id=persona.agent_id, round=1, persona=persona, taste=taste, pages=(page,),
                          watched=frozenset(), catalog=catalog, item_mean_rating=lambda _: None,
                          search=catalog.search, rng=np.random.default_rng([args.seed, k]))
        prompt = fit_to_budget(lambda mems, desc: template("browse_page").format(
            round=1, injected="", memories="- nothing yet", items=item_lines(page, desc),
            max_watches=rule.spec.max_watches_per_page), (), 1200)
        try:
            reply = loop.run_until_complete(model.complete(LLMRequest(
                messages=[system_message(persona), {"role": "user", "content": prompt}],
                response_model=page_schema(tuple(i.item_id for i in page), rule.spec.max_watches_per_page),
                seed=k, agent_id=persona.agent_id)))
            llm_watches = [(w.item_id, w.rating) for w in reply.parsed.watches]
        except LLMOutputError:
            invalid += 1
            llm_watches = []
        rule_watches = [(w.item_id, w.rating) for w in rule.judge_page(obs, page, 0, False).watches]
        n_random = max(len(llm_watches), 1)
        random_watches = [(int(i), 3.0) for i in rng.choice([i.item_id for i in page], size=n_random, replace=False)]
        position = {item.item_id: pos for pos, item in enumerate(page)}
        for name, watches in (("embedded", llm_watches), ("rule", rule_watches), ("random", random_watches)):
            for item_id, rating in watches:
                s = stats[name]
                m = scores[position[item_id]]
                s["lift"].append(m - float(np.mean(scores)))
                s["hit"].append(m >= max(scores) - 1e-9)
                s["first"].append(position[item_id] == 0)
                s["ratings"].append(rating)
                s["matches"].append(m)
    elapsed = time.perf_counter() - started
    loop.close()

    table = Table(title=f"choices on {args.pages} pages of {args.page_size} films ({elapsed:.0f} s)")
    for col in ("chooser", "watches", "taste lift", "hit rate", "first-slot share", "rating~match r"):
        table.add_column(col, justify="right")
    for name, s in stats.items():
        r = (float(np.corrcoef(s["ratings"], s["matches"])[0, 1])
             if len(s["ratings"]) > 2 and np.std(s["ratings"]) > 0 else float("nan"))
        table.add_row(name, str(len(s["lift"])), f"{np.mean(s['lift']) if s['lift'] else float('nan'):+.3f}",
                      f"{np.mean(s['hit']) if s['hit'] else float('nan'):.2f}",
                      f"{np.mean(s['first']) if s['first'] else float('nan'):.2f}", f"{r:+.2f}")
    Console().print(table)
    print(f"embedded answers that failed the schema: {invalid} of {args.pages}; "
          f"unbiased first-slot share: {1 / args.page_size:.2f}")


if __name__ == "__main__":
    main()
