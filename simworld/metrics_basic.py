"""Per-round metrics of the foundation: activity, watches, rating, coverage, genre entropy."""

from __future__ import annotations

import math

import polars as pl

from simworld.catalog import Catalog


def basic_round_metrics(events: pl.DataFrame, history: pl.DataFrame, catalog: Catalog) -> dict[str, float]:
    """`events`: this round; `history`: every event so far, this round included.

    watches, mean_rating (NaN when nothing was watched), coverage (share of the catalog shown
    so far), genre_entropy (mean over users of the normalised entropy of the genres they
    watched so far: falls as filter bubbles form; NaN before anyone watched).
    """
    watches = events.filter(pl.col("action") == "watch")
    shown = history.filter(pl.col("items").is_not_null()).select(pl.col("items").explode()).to_series()
    coverage = shown.n_unique() / len(catalog) if shown.len() else 0.0
    return {
        "watches": float(watches.height),
        "mean_rating": float(watches["rating"].mean()) if watches.height else math.nan,
        "coverage": float(coverage),
        "genre_entropy": user_genre_entropy(history.filter(pl.col("action") == "watch"), catalog),
    }


def user_genre_entropy(watches: pl.DataFrame, catalog: Catalog) -> float:
    """Mean over users of the normalised Shannon entropy of the genres they watched."""
    if watches.height == 0 or len(catalog.genres) < 2:
        return math.nan
    item_genres = catalog.genre_pairs
    counts = (watches.select("agent_id", "item_id").join(item_genres, on="item_id")
              .group_by("agent_id", "genre").len())
    if counts.height == 0:
        return math.nan
    per_user = (counts.with_columns((pl.col("len") / pl.col("len").sum().over("agent_id")).alias("p"))
                .group_by("agent_id").agg((-(pl.col("p") * pl.col("p").log())).sum().alias("h")))
    return float(per_user["h"].mean() / math.log(len(catalog.genres)))
