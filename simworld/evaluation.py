"""Offline sanity check of the recommenders on real ratings (MovieLens): Recall, NDCG, coverage.

Each user's ratings are split into a training part and a test part (by default the user's
last `test_fraction` of ratings in time); every algorithm is fitted on all training parts
and asked for `k` items per evaluated user, excluding what that user has in training. The
test items rated at least `relevant_rating` (4 of 5) are the relevant ones.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from simworld.catalog import Catalog, subset
from simworld.embedding import Embedder, HashingEmbedder
from simworld.recommenders.base import RecommenderConfig, RecommenderContext

Split = Literal["temporal", "random"]
Algorithms = dict[str, tuple[type, RecommenderConfig | None]]


def default_algorithms() -> Algorithms:
    """The built-in algorithms that need no LLM, each with its default configuration."""
    from simworld.recommenders.baselines import PopularityRecommender, RandomRecommender
    from simworld.recommenders.content import ContentRecommender
    from simworld.recommenders.knn import ItemKNNRecommender
    from simworld.recommenders.mf import MFConfig, MFRecommender

    return {
        "random": (RandomRecommender, None),
        "popularity": (PopularityRecommender, None),
        "itemknn": (ItemKNNRecommender, None),
        # chosen on a validation part cut from ml-latest-small's training part (benchmarks/tune_als.py)
        "mf": (MFRecommender, MFConfig(factors=64, regularization=10.0)),
        # BPR's own regularisation default (0.01): with ALS's it scored far below popularity
        "mf_bpr": (MFRecommender, MFConfig(algorithm="bpr", iterations=100)),
        "content": (ContentRecommender, None),
    }


def split_ratings(ratings: pl.DataFrame, test_fraction: float = 0.2, split: Split = "temporal",
                  seed: int = 0, min_user_ratings: int = 5) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, test) per user. Users with fewer than `min_user_ratings` ratings stay in train.

    temporal: each user's last ceil(test_fraction * n) ratings by timestamp (ties by item id)
    are the test part; random: a seeded random choice of as many.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    frame = ratings
    if "timestamp" not in frame.columns:
        frame = frame.with_columns(pl.lit(0, dtype=pl.Int64).alias("timestamp"))
    if split == "temporal":
        frame = frame.sort(["user_id", "timestamp", "item_id"])
    elif split == "random":
        rng = np.random.default_rng(seed)
        frame = frame.sort(["user_id", "item_id"]).with_columns(
            pl.Series("_key", rng.random(frame.height))).sort(["user_id", "_key"]).drop("_key")
    else:
        raise ValueError(f"unknown split {split!r}: use 'temporal' or 'random'")
    frame = frame.with_columns(
        pl.int_range(pl.len()).over("user_id").alias("_pos"), pl.len().over("user_id").alias("_n"))
    n_test = (pl.col("_n").cast(pl.Float64) * test_fraction).ceil().cast(pl.Int64)
    is_test = (pl.col("_n") >= min_user_ratings) & (pl.col("_pos") >= pl.col("_n") - n_test)
    frame = frame.with_columns(is_test.alias("_test"))
    cols = [c for c in frame.columns if not c.startswith("_")]
    return frame.filter(~pl.col("_test")).select(cols), frame.filter(pl.col("_test")).select(cols)


def evaluate_offline(ratings: pl.DataFrame, catalog: Catalog, algorithms: Algorithms | None = None,
                     k: int = 10, test_fraction: float = 0.2, seed: int = 0, split: Split = "temporal",
                     max_users: int | None = None, relevant_rating: float = 4.0,
                     embedder: Embedder | None = None, min_train_ratings: int = 0) -> pl.DataFrame:
    """One row per algorithm: recall@k, ndcg@k, coverage@k, users, fit_s, recommend_s.

    `ratings`: user_id, item_id, rating (and timestamp for the temporal split); items outside
    `catalog` are dropped. `max_users` evaluates a seeded random subset of the users who have
    a relevant test item (all of them are still used for training). `min_train_ratings` keeps
    only the films with that many ratings in the training part. Recall = hits / relevant
    items; NDCG with binary gains; coverage = share of the catalog recommended to anyone.
    """
    algorithms = algorithms if algorithms is not None else default_algorithms()
    ratings = ratings.filter(pl.col("item_id").is_in(catalog.ids.tolist()))
    train, test = split_ratings(ratings, test_fraction, split, seed)
    if min_train_ratings > 0:  # the catalogue filter counts training ratings only
        counts = train.group_by("item_id").len().filter(pl.col("len") >= min_train_ratings)
        catalog = subset(catalog, sorted(counts["item_id"].to_list()))
        train = train.filter(pl.col("item_id").is_in(catalog.ids.tolist()))
        test = test.filter(pl.col("item_id").is_in(catalog.ids.tolist()))
    relevant = (test.filter(pl.col("rating") >= relevant_rating)
                .group_by("user_id").agg(pl.col("item_id")).sort("user_id"))
    users = relevant["user_id"].to_list()
    if max_users is not None and len(users) > max_users:
        pick = np.sort(np.random.default_rng(seed).choice(len(users), size=max_users, replace=False))
        relevant = relevant[pick.tolist()]
        users = relevant["user_id"].to_list()
    truth = [set(items) for items in relevant["item_id"].to_list()]
    interactions = train.select("user_id", "item_id", "rating").with_columns(
        pl.lit(0, dtype=pl.Int64).alias("round"))
    context = RecommenderContext(catalog=catalog, seed=seed, embedder=embedder or HashingEmbedder())
    rows: list[dict[str, Any]] = []
    for name, (cls, config) in algorithms.items():
        rec = cls(config if config is not None else cls.Config(), context)
        started = time.perf_counter()
        rec.fit(interactions)
        fitted = time.perf_counter()
        lists: list[list[int]] = []
        for start in range(0, len(users), 256):
            lists.extend(rec.recommend(users[start:start + 256], k, exclude_seen=True))
        done = time.perf_counter()
        recall, ndcg = ranking_scores(lists, truth, k)
        shown = {i for items in lists for i in items}
        rows.append({"algorithm": name, f"recall@{k}": recall, f"ndcg@{k}": ndcg,
                     f"coverage@{k}": len(shown) / len(catalog), "users": len(users),
                     "fit_s": fitted - started, "recommend_s": done - fitted})
    return pl.DataFrame(rows)


def ranking_scores(lists: list[list[int]], truth: list[set[int]], k: int) -> tuple[float, float]:
    """Mean Recall@k and NDCG@k (binary relevance) over users with at least one relevant item."""
    recalls, ndcgs = [], []
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for items, rel in zip(lists, truth):
        if not rel:
            continue
        hits = np.array([i in rel for i in items[:k]], dtype=np.float64)
        recalls.append(hits.sum() / len(rel))
        ideal = discounts[:min(len(rel), k)].sum()
        ndcgs.append(float((hits * discounts[:len(hits)]).sum() / ideal))
    if not recalls:
        return math.nan, math.nan
    return float(np.mean(recalls)), float(np.mean(ndcgs))


def run_offline_eval(movielens_path: Path, k: int = 10, seed: int = 0, max_users: int | None = None,
                     min_ratings: int = 5, algorithms: Algorithms | None = None,
                     embedder: Embedder | None = None) -> pl.DataFrame:
    """`simworld eval recommenders`: load a MovieLens folder and evaluate every algorithm.

    The catalog is the movies with at least `min_ratings` ratings in the training part (a
    count over all ratings would let held-out ratings decide which films exist); the split is
    the temporal leave-last-20%-out per user. Raises `simworld.errors.DataError` for a
    missing folder.
    """
    from simworld.movielens import load_movielens_catalog, load_movielens_ratings

    path = Path(movielens_path)
    return evaluate_offline(load_movielens_ratings(path), load_movielens_catalog(path), algorithms, k=k, seed=seed,
                            max_users=max_users, embedder=embedder, min_train_ratings=min_ratings)
