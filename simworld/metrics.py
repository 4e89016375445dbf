"""Per-round simulation metrics: pure functions over the event log (polars frames).

`round_metrics(events_of_round, history, catalog)` returns one flat dict of floats with
these keys (stable names, the columns of `metrics.parquet`):

==========================  ================================================================
key                         meaning (empty-round value)
==========================  ================================================================
impressions                 items shown on recommendation pages this round (0)
watches                     watch events this round (0)
ctr                         click-through: watches of items shown to that agent on a page
                            this round / impressions (NaN without impressions)
mean_rating                 mean of this round's non-null watch ratings (NaN)
intra_list_diversity        mean over this round's pages (>= 2 catalog items) of
                            1 - mean pairwise cosine of the items' genre vectors (NaN)
coverage                    share of the catalog shown on pages so far, this round included (0)
coverage_round              share of the catalog shown on pages this round (0)
exposure_gini               Gini of impressions per catalog item, this round (NaN)
exposure_gini_cumulative    Gini of impressions per catalog item, all rounds so far (NaN)
novelty                     mean over this round's impressions of -log2 p(item) (NaN)
popularity_bias             mean over this round's impressions of the item's popularity
                            percentile in the catalog, 0 = least, 1 = most popular (NaN)
genre_entropy               mean over agents who watched anything so far of the normalised
                            Shannon entropy of the genres they watched (NaN): the filter bubble
recommended_share           share of this round's watches picked from a recommendation page (NaN)
search_share                ... found with the search box (NaN)
friend_share                ... of films a friend talked about in a chat before (NaN)
feed_share                  ... of films seen in a post in the feed before (NaN)
==========================  ================================================================

A watch's source is the `source` column of the event log: where the policy picked it (page or
search), unless the agent heard about the film from a friend in the rounds before, which the
social layer records as friend or feed (word of mouth; see simworld/social).

"Shown" means the `items` of `page` rows (what the recommender served); search results are
not exposure. Popularity: by default the watches in `history` (each agent counted once per
item); p(item) = (watchers + 1) / (agents + 1), where agents are those in `history`. Pass
`item_popularity` (per catalog row, e.g. MovieLens rating counts) to use another reference;
then p(item) = (count + 1) / (sum of counts + number of items). The popularity percentile
is the mid-rank: (items less popular + half of the others equally popular) / (items - 1),
so the least popular item is 0 and the most popular 1 (0.5 when all are equal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from simworld.catalog import Catalog

METRIC_KEYS: tuple[str, ...] = (
    "impressions", "watches", "ctr", "mean_rating", "intra_list_diversity", "coverage",
    "coverage_round", "exposure_gini", "exposure_gini_cumulative", "novelty", "popularity_bias",
    "genre_entropy", "recommended_share", "search_share", "friend_share", "feed_share",
)
WATCH_SOURCES = {"page": "recommended_share", "search": "search_share", "friend": "friend_share",
                 "feed": "feed_share"}


def round_metrics(events_of_round: pl.DataFrame, history: pl.DataFrame, catalog: Catalog,
                  item_popularity: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of one round (see the module docstring for keys and empty values)."""
    pages = _pages(events_of_round)
    watches = events_of_round.filter(pl.col("action") == "watch")
    shown_now = _known([i for items in pages["items"].to_list() for i in items], catalog)
    shown_all = _known(_shown_items(history), catalog)
    n = len(catalog)
    if item_popularity is not None:
        counts = np.asarray(item_popularity, dtype=np.float64)
        p = (counts + 1.0) / (counts.sum() + n)
    else:
        counts = watch_counts(history, catalog)
        agents = history.filter(pl.col("action") == "watch")["agent_id"].n_unique()
        p = (counts + 1.0) / (agents + 1.0)
    rows_now = catalog.rows(shown_now) if shown_now else np.zeros(0, dtype=np.int64)
    return {
        "impressions": float(len(shown_now)),
        "watches": float(watches.height),
        "ctr": click_through(events_of_round),
        "mean_rating": mean_rating(events_of_round),
        "intra_list_diversity": intra_list_diversity(pages["items"].to_list(), catalog),
        "coverage": len(set(shown_all)) / n,
        "coverage_round": len(set(shown_now)) / n,
        "exposure_gini": gini(exposure(shown_now, catalog)) if shown_now else math.nan,
        "exposure_gini_cumulative": gini(exposure(shown_all, catalog)) if shown_all else math.nan,
        "novelty": float(np.mean(-np.log2(p[rows_now]))) if shown_now else math.nan,
        "popularity_bias": float(np.mean(popularity_percentile(counts)[rows_now])) if shown_now else math.nan,
        "genre_entropy": genre_entropy(history.filter(pl.col("action") == "watch"), catalog),
        **watch_source_shares(watches),
    }


# -- the pieces (each usable alone) -------------------------------------------------------------

def click_through(events: pl.DataFrame) -> float:
    """Watches of items shown to the same agent on a page of these events / impressions."""
    pages = _pages(events)
    impressions = sum(len(items) for items in pages["items"].to_list())
    if impressions == 0:
        return math.nan
    shown: dict[int, set[int]] = {}
    for agent, items in pages.select("agent_id", "items").iter_rows():
        shown.setdefault(agent, set()).update(items)
    watches = events.filter(pl.col("action") == "watch").select("agent_id", "item_id").iter_rows()
    clicked = sum(1 for agent, item in watches if item in shown.get(agent, ()))
    return clicked / impressions


def watch_source_shares(watches: pl.DataFrame) -> dict[str, float]:
    """Share of the watches by where they came from (page, search, friend, feed); NaN when
    there is no watch. A log without a `source` column counts every watch as from a page."""
    if watches.height == 0:
        return {key: math.nan for key in WATCH_SOURCES.values()}
    if "source" not in watches.columns:
        counts = {"page": watches.height}
    else:
        counts = dict(watches.select(pl.col("source").fill_null("page")).group_by("source").len().iter_rows())
    return {key: counts.get(source, 0) / watches.height for source, key in WATCH_SOURCES.items()}


def mean_rating(events: pl.DataFrame) -> float:
    ratings = events.filter(pl.col("action") == "watch")["rating"].drop_nulls()
    return float(ratings.mean()) if ratings.len() else math.nan


def intra_list_diversity(pages: Sequence[Sequence[int]], catalog: Catalog) -> float:
    """Mean over lists (>= 2 catalog items) of 1 - mean pairwise cosine of genre vectors.

    Genre vectors are `catalog.genre_matrix` rows (L2-normalised; an item without genres has a
    zero vector, cosine 0 with everything).
    """
    gm = catalog.genre_matrix.astype(np.float64)
    values = []
    for page in pages:
        ids = _known(page, catalog)
        m = len(ids)
        if m < 2:
            continue
        v = gm[catalog.rows(ids)]
        sims = v @ v.T
        mean_pair = (sims.sum() - np.trace(sims)) / (m * (m - 1))
        values.append(1.0 - mean_pair)
    return float(np.mean(values)) if values else math.nan


def exposure(item_ids: Sequence[int], catalog: Catalog) -> np.ndarray:
    """Impressions per catalog row (unknown ids ignored)."""
    out = np.zeros(len(catalog), dtype=np.float64)
    ids = _known(item_ids, catalog)
    if ids:
        np.add.at(out, catalog.rows(ids), 1.0)
    return out


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 = equal, (n-1)/n = all on one (NaN if sum 0)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total <= 0:
        return math.nan
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def watch_counts(history: pl.DataFrame, catalog: Catalog) -> np.ndarray:
    """Distinct agents who watched each catalog item in `history` (per catalog row)."""
    out = np.zeros(len(catalog), dtype=np.float64)
    pairs = history.filter(pl.col("action") == "watch").select("agent_id", "item_id").unique()
    ids = _known(pairs["item_id"].to_list(), catalog)
    if ids:
        np.add.at(out, catalog.rows(ids), 1.0)
    return out


def popularity_percentile(counts: np.ndarray) -> np.ndarray:
    """Mid-rank percentile of each count among all: 0 least, 1 most popular, 0.5 for all-equal."""
    counts = np.asarray(counts, dtype=np.float64)
    n = len(counts)
    if n < 2:
        return np.full(n, 0.5)
    order = np.sort(counts)
    less = np.searchsorted(order, counts, side="left")
    equal = np.searchsorted(order, counts, side="right") - less
    return (less + (equal - 1) / 2.0) / (n - 1)


def genre_entropy(watches: pl.DataFrame, catalog: Catalog) -> float:
    """Mean over agents of the normalised entropy (log base = number of catalog genres) of the
    genre counts of the items they watched; each watched item counts once per genre it has."""
    if watches.height == 0 or len(catalog.genres) < 2:
        return math.nan
    gm = (catalog.genre_matrix > 0).astype(np.float64)
    values = []
    for _agent, items in watches.group_by("agent_id", maintain_order=True).agg(pl.col("item_id")).iter_rows():
        ids = _known(items, catalog)
        if not ids:
            continue
        counts = gm[catalog.rows(ids)].sum(axis=0)
        total = counts.sum()
        if total == 0:
            continue
        p = counts[counts > 0] / total
        values.append(float(-(p * np.log(p)).sum() / math.log(len(catalog.genres))))
    return float(np.mean(values)) if values else math.nan


def _pages(events: pl.DataFrame) -> pl.DataFrame:
    return events.filter((pl.col("action") == "page") & pl.col("items").is_not_null())


def _shown_items(events: pl.DataFrame) -> list[int]:
    return [i for items in _pages(events)["items"].to_list() for i in items]


def _known(item_ids, catalog: Catalog) -> list[int]:
    return [int(i) for i in item_ids if i is not None and i in catalog]
