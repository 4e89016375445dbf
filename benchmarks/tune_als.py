"""ALS and BPR constants chosen on a validation split (slow; not part of the tests).

    python benchmarks/tune_als.py

The held-out test part (each user's last 20% of ratings in time) is set aside first; the
validation part is the last 20% of what remains, and the grid is scored there by NDCG@10.
The winner is then scored once on the test part, next to the old defaults.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import polars as pl

from simworld.evaluation import evaluate_offline, split_ratings
from simworld.movielens import load_movielens_catalog, load_movielens_ratings
from simworld.recommenders.baselines import PopularityRecommender
from simworld.recommenders.mf import MFConfig, MFRecommender

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens" / "ml-latest-small"


def main() -> None:
    ratings = load_movielens_ratings(DATA)
    catalog = load_movielens_catalog(DATA)
    train, _test = split_ratings(ratings, 0.2, "temporal")
    grid = {"factors": (32, 64), "regularization": (0.1, 1.0, 10.0), "alpha": (1.0, 5.0, 20.0)}
    algorithms = {"popularity": (PopularityRecommender, None)}
    for values in itertools.product(*grid.values()):
        name = "als " + " ".join(f"{k}={v:g}" for k, v in zip(grid, values))
        algorithms[name] = (MFRecommender, MFConfig(**dict(zip(grid, values))))
    for reg in (0.001, 0.01, 0.1, 1.0):
        algorithms[f"bpr regularization={reg:g}"] = (MFRecommender, MFConfig(algorithm="bpr", iterations=100,
                                                                             regularization=reg))
    # evaluate_offline splits `train` again: its test part is our validation part
    table = evaluate_offline(train, catalog, algorithms, k=10, seed=0, min_train_ratings=5)
    with pl.Config(tbl_rows=60, tbl_width_chars=160, fmt_str_lengths=60):
        print("validation (last 20% of each user's training part):")
        print(table.sort("ndcg@10", descending=True).select("algorithm", "recall@10", "ndcg@10"))
    best = table.filter(pl.col("algorithm").str.starts_with("als")).sort("ndcg@10", descending=True)["algorithm"][0]
    chosen = {"popularity": algorithms["popularity"], "old default (als factors=32 regularization=1 alpha=1)":
              (MFRecommender, MFConfig()), f"validation's best ({best})": algorithms[best],
              "bpr regularization=1": algorithms["bpr regularization=1"],
              "bpr regularization=0.01": algorithms["bpr regularization=0.01"]}
    test = evaluate_offline(ratings, catalog, chosen, k=10, seed=0, min_train_ratings=5)
    with pl.Config(tbl_rows=60, tbl_width_chars=160, fmt_str_lengths=80):
        print("test (each user's last 20%), scored once:")
        print(test.select("algorithm", "recall@10", "ndcg@10"))


if __name__ == "__main__":
    main()
