"""Fidelity figures on MovieLens ml-latest-small (slow: minutes; not part of the tests).

    python benchmarks/bench_fidelity.py tune [--grid]  # taste-model changes (and a grid) on a validation split
    python benchmarks/bench_fidelity.py table     # `simworld eval fidelity` of scenarios/movielens.yaml, all users

`tune` never reads held-out data: it cuts each user's training part again in time (the last
20% of it is the validation part), fits the taste model on the rest with each setting, and
prints the 1:1 liked-vs-never-rated accuracy (the film with the higher affinity is picked)
and the rating RMSE on the validation part, for each change to the taste model in turn.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "movielens" / "ml-latest-small"


def validation_scores(train: pl.DataFrame, valid: pl.DataFrame, ratings: pl.DataFrame, catalog, config,
                      users: int = 300, seed: int = 0) -> dict[str, float]:
    from simworld.taste import TasteModel

    model = TasteModel(train, catalog, config)
    rng = np.random.default_rng(seed)
    ids = catalog.ids
    rated = dict(ratings.group_by("user_id").agg("item_id").iter_rows())
    history = {u: dict(zip(i, r)) for u, i, r in
               train.sort("user_id", "timestamp").group_by("user_id", maintain_order=True).agg("item_id", "rating").iter_rows()}
    valid = valid.filter(pl.col("user_id").is_in(list(history)))
    picked = sorted(rng.choice(valid["user_id"].unique().to_numpy(), size=min(users, valid["user_id"].n_unique()),
                               replace=False).tolist())
    wins, errors = [], []
    for user in picked:
        view = model.view(history[user])
        part = valid.filter(pl.col("user_id") == user)
        never = ids[~np.isin(ids, rated[user])]
        for item in part.filter(pl.col("rating") >= 4)["item_id"].to_list()[:3]:
            neg = int(rng.choice(never))
            wins.append(view.affinity(item) > view.affinity(neg))
        for item, rating in part.select("item_id", "rating").rows()[:10]:
            errors.append(view.predict(item) - rating)
    return {"acc_1to1": float(np.mean(wins)), "rmse": float(np.sqrt(np.mean(np.square(errors))))}


# The taste model's history, one change at a time (TasteConfig fields; the last is the default).
STEPS = (
    ("binary cosine", {"half_life": 1e9, "like_weight": 0.0, "alpha": 0.5, "iuf": 0.0}),
    ("+ rating weights", {"half_life": 1e9, "like_weight": 1.0, "alpha": 0.5, "iuf": 0.0}),
    ("+ recency (half-life 10)", {"half_life": 10.0, "like_weight": 1.0, "alpha": 0.5, "iuf": 0.0}),
    ("+ asymmetric cosine (alpha 0.3)", {"half_life": 10.0, "like_weight": 1.0, "alpha": 0.3, "iuf": 0.0}),
    ("+ inverse user frequency (iuf 1)", {"half_life": 10.0, "like_weight": 1.0, "alpha": 0.3, "iuf": 1.0}),
    ("  with the plain cosine (alpha 0.5)", {"half_life": 10.0, "like_weight": 1.0, "alpha": 0.5, "iuf": 1.0}),
)


def tune() -> None:
    from simworld.evaluation import split_ratings
    from simworld.grounding import load_grounding
    from simworld.taste import TasteConfig

    ground = load_grounding(str(DATA), 0.2, 5)
    train, valid = split_ratings(ground.train, 0.2, "temporal")
    for name, fields in STEPS:
        scores = validation_scores(train, valid, ground.ratings, ground.catalog, TasteConfig(**fields))
        print(f"{name:36s} 1:1 accuracy {scores['acc_1to1']:.3f}  RMSE {scores['rmse']:.3f}", flush=True)
    if "--grid" not in sys.argv:
        return
    grid = {"iuf": (0.5, 1.0, 1.5), "alpha": (0.3, 0.5, 0.6), "half_life": (10.0, 25.0)}
    rows = []
    for values in itertools.product(*grid.values()):
        config = TasteConfig(**dict(zip(grid, values)))
        started = time.perf_counter()
        rows.append({**dict(zip(grid, values)), **validation_scores(train, valid, ground.ratings, ground.catalog, config),
                     "s": time.perf_counter() - started})
        print(rows[-1], flush=True)
    with pl.Config(tbl_rows=50):
        print(pl.DataFrame(rows).sort("acc_1to1", descending=True))
    for neighbours, shrink in itertools.product((20, 50), (10.0, 50.0)):
        config = TasteConfig(neighbours=neighbours, shrink=shrink)
        print({"neighbours": neighbours, "shrink": shrink,
               **validation_scores(train, valid, ground.ratings, ground.catalog, config)}, flush=True)


def table() -> None:
    from simworld.config import load_scenario
    from simworld.fidelity import run_fidelity

    scenario = load_scenario(ROOT / "scenarios" / "movielens.yaml")
    policies = sys.argv[2].split(",") if len(sys.argv) > 2 else ["rule"]
    started = time.perf_counter()
    result = run_fidelity(scenario, policies, users=610, rounds=10, out_dir=Path("runs") / "bench-fidelity")
    with pl.Config(tbl_cols=20, tbl_width_chars=200):
        print(result.alignment_table())
        print(result.ratings_table())
    print({k: v for k, v in result.realism.items() if k in ("activity", "long_tail")})
    print("genres tvd", result.realism["genres"]["tvd"], "ratings tvd", result.realism["ratings"]["tvd"])
    print(f"{time.perf_counter() - started:.0f} s")


def svg() -> None:
    """docs/fidelity-accuracy.svg (the README's chart) from a fidelity.json: accuracy per 1:m."""
    import json

    report = json.loads(Path(sys.argv[2]).read_text())
    rows = [r for r in report["alignment"]]
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    colors = ["#9aa5b1", "#F58518", "#4C78A8", "#54A24B", "#E45756"]
    width, height, left, bottom = 560, 300, 50, 40
    group = (width - left - 20) / 3
    bar = group / (len(policies) + 1)
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           'font-size="12">'), (f'<text x="{left}" y="18" font-size="14">Liked film picked from 1 liked + m never '
           f'rated (accuracy, {report["users"]} MovieLens users)</text>')]
    scale = (height - bottom - 40) / 1.0
    for k, m in enumerate((1, 3, 9)):
        x0 = left + k * group
        out.append(f'<text x="{x0 + group / 2 - 10}" y="{height - 15}">1:{m}</text>')
        for j, policy in enumerate(policies):
            value = next(r["accuracy"] for r in rows if r["policy"] == policy and r["m"] == m)
            h = value * scale
            x = x0 + (j + 0.5) * bar
            out.append(f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{bar * 0.9:.1f}" height="{h:.1f}" '
                       f'fill="{colors[j % len(colors)]}"/>')
            out.append(f'<text x="{x:.1f}" y="{height - bottom - h - 3:.1f}" font-size="10">{value:.2f}</text>')
    for j, policy in enumerate(policies):
        out.append(f'<rect x="{left + j * 110}" y="28" width="10" height="10" fill="{colors[j % len(colors)]}"/>'
                   f'<text x="{left + j * 110 + 14}" y="37">{policy}</text>')
    out.append(f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#333"/>')
    (ROOT / "docs" / "fidelity-accuracy.svg").write_text("\n".join(out) + "\n</svg>\n")


if __name__ == "__main__":
    {"tune": tune, "table": table, "svg": svg}[sys.argv[1] if len(sys.argv) > 1 else "table"]()
