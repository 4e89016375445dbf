"""MovieLens-grounded worlds: one per-user time split that every part of a run respects.

Each user's ratings are cut in time (`split_ratings`, temporal): the last `holdout` share is
held out, the rest is the training part. Everything a run is built from sees only the
training part: the catalogue filter (`min_ratings` counts training ratings), the personas,
their warm-start history, the crowd's mean ratings and the taste model. The held-out part is
read only by `simworld eval fidelity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import polars as pl

from simworld.catalog import Catalog, subset
from simworld.taste import TasteModel


@dataclass(frozen=True)
class Grounding:
    """A MovieLens folder split in time per user, on the catalogue built from its training part."""

    path: Path
    holdout: float
    catalog: Catalog
    ratings: pl.DataFrame  # every rating of the folder (to know which films a user never rated)
    train: pl.DataFrame  # on catalogue films, sorted by user and time
    test: pl.DataFrame  # the held-out part, on catalogue films

    @cached_property
    def crowd(self) -> pl.DataFrame:
        """item_id, n, total: the training-period ratings each film starts a run with."""
        return self.train.group_by("item_id").agg(pl.len().alias("n"), pl.col("rating").sum().alias("total"))

    @cached_property
    def taste(self) -> TasteModel:
        return TasteModel(self.train, self.catalog)


@cache
def load_grounding(path: str, holdout: float, min_ratings: int = 0, max_items: int | None = None) -> Grounding:
    """The split of the MovieLens folder `path` (cached: a process builds it once per setting).

    `min_ratings` and `max_items` filter the catalogue by training ratings only, so that no
    held-out rating decides which films exist."""
    from simworld.evaluation import split_ratings
    from simworld.movielens import load_movielens_catalog, load_movielens_ratings

    folder = Path(path)
    ratings = load_movielens_ratings(folder)
    if holdout > 0:
        train, test = split_ratings(ratings, holdout, "temporal")
    else:
        train, test = ratings.sort(["user_id", "timestamp", "item_id"]), ratings.clear()
    full = load_movielens_catalog(folder)
    counts = train.group_by("item_id").len().filter(pl.col("item_id").is_in(full.ids.tolist()))
    if min_ratings > 0:
        counts = counts.filter(pl.col("len") >= min_ratings)
    if max_items is not None:
        counts = counts.sort(["len", "item_id"], descending=[True, False]).head(max_items)
    keep = sorted(counts["item_id"].to_list()) if (min_ratings > 0 or max_items is not None) else full.ids.tolist()
    catalog = subset(full, keep, name=full.name) if len(keep) != len(full) else full
    ids = catalog.ids.tolist()
    return Grounding(folder, holdout, catalog, ratings,
                     train.filter(pl.col("item_id").is_in(ids)).sort(["user_id", "timestamp", "item_id"]),
                     test.filter(pl.col("item_id").is_in(ids)))
