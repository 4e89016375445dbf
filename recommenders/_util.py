"""Shared helpers of the built-in learning recommenders: interaction matrices and popularity."""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from simworld.catalog import Catalog


def known(interactions: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """The rows whose item is in the catalog (unknown item ids are ignored), with a catalog row."""
    if interactions.height == 0:
        return interactions.with_columns(pl.lit(0, dtype=pl.Int64).alias("row")).clear()
    ids = catalog.ids
    lookup = pl.DataFrame({"item_id": ids, "row": np.arange(len(ids), dtype=np.int64)})
    return interactions.join(lookup, on="item_id", how="inner", maintain_order="left")


def positives(interactions: pl.DataFrame, catalog: Catalog, min_rating: float | None = None) -> pl.DataFrame:
    """One row per (user, item) with a known item: user_id, row, rating (the latest), n (count).

    With `min_rating`, rated interactions below it are dropped; unrated ones are kept.
    """
    frame = known(interactions, catalog)
    if min_rating is not None:
        frame = frame.filter(pl.col("rating").is_null() | (pl.col("rating") >= min_rating))
    return (
        frame.group_by(["user_id", "row"], maintain_order=True)
        .agg(pl.col("rating").drop_nulls().last(), pl.len().alias("n"))
        .sort(["user_id", "row"])
    )


def user_item_matrix(pos: pl.DataFrame, n_items: int, values: np.ndarray | None = None
                     ) -> tuple[dict[int, int], sp.csr_matrix]:
    """(user id -> matrix row, users x items CSR) from `positives` output; values default to 1."""
    users = pos["user_id"].unique(maintain_order=True).to_list()
    index = {u: r for r, u in enumerate(users)}
    rows = np.fromiter((index[u] for u in pos["user_id"].to_list()), dtype=np.int64, count=pos.height)
    cols = pos["row"].to_numpy().astype(np.int64, copy=False)
    data = np.ones(pos.height, dtype=np.float32) if values is None else values.astype(np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(len(users), n_items), dtype=np.float32)
    matrix.sum_duplicates()
    return index, matrix


def popularity(pos: pl.DataFrame, n_items: int) -> np.ndarray:
    """Number of distinct users per catalog row, scaled to [0, 1] (all zeros when empty)."""
    counts = np.zeros(n_items, dtype=np.float64)
    if pos.height:
        np.add.at(counts, pos["row"].to_numpy(), 1.0)
    top = counts.max() if n_items else 0.0
    return counts / top if top > 0 else counts


def score_with_popularity(user_ids: list[int], users: dict[int, int], pop: np.ndarray,
                          personal) -> np.ndarray:
    """(users x items) scores: `personal(rows)` for users with a known history (model rows
    `rows`), plus popularity to break their ties; popularity alone for cold users."""
    out = np.empty((len(user_ids), len(pop)), dtype=np.float64)
    out[:] = pop
    rows = [users.get(u) for u in user_ids]
    warm = [r for r, row in enumerate(rows) if row is not None]
    if warm:
        out[warm] = personal([rows[r] for r in warm]) + TIE_WEIGHT * pop
    return out


# Popularity is added with this weight to personal scores: it orders the items a model scores
# equally (e.g. items no neighbour reaches) without changing any strict preference, and it is
# far above the base class's tie-breaking jitter (1e-9).
TIE_WEIGHT = 1e-6
