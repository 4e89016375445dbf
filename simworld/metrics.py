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
outside_share               ... of films found outside the platform (`discovery_rate`) (NaN)
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
    "outside_share",
)
WATCH_SOURCES = {"page": "recommended_share", "search": "search_share", "friend": "friend_share",
                 "feed": "feed_share", "outside": "outside_share"}


def round_metrics(events_of_round: pl.DataFrame, history: pl.DataFrame, catalog: Catalog,
                  item_popularity: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of one round (see the module docstring for keys and empty values), computed
    from the whole history: the reference `RunningMetrics` must agree with."""
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


class RunningMetrics:
    """`round_metrics` for a run, round after round, without reading the history again: what the
    metrics need from earlier rounds is kept as running aggregates (impressions and distinct
    watchers per item, the agents who watched, each agent's genre counts and entropy). Feed the
    rounds in order; `round(events)` adds a round and returns its metrics. A resumed run rebuilds
    the aggregates with `absorb(history)`. tests/test_scale.py checks it against `round_metrics`."""

    def __init__(self, catalog: Catalog):
        n = len(catalog)
        self.catalog = catalog
        self.exposure = np.zeros(n)  # impressions per catalog row, all rounds
        self.watchers = np.zeros(n)  # distinct agents who watched each catalog row
        self.pairs: set[tuple[int, int]] = set()  # (agent, item) watched
        self.watch_agents: set[int] = set()  # agents with any watch row
        self.genre_counts: dict[int, np.ndarray] = {}  # agent -> genre counts, in order of first watch
        self.entropy: dict[int, float] = {}  # agent -> normalised genre entropy (NaN: no genre yet)
        self._genres = (catalog.genre_matrix > 0).astype(np.float64)
        self._order = np.argsort(catalog.ids, kind="stable")  # catalog ids -> rows, for whole arrays
        self._sorted_ids = catalog.ids[self._order]

    def rows(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(catalog rows of the ids that are in the catalog, in order; which ids those were)."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted_ids, item_ids), len(self._sorted_ids) - 1)
        known = self._sorted_ids[pos] == item_ids
        return self._order[pos[known]], known

    def _page_rows(self, events: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(catalog rows of every known item shown on a page, in order; the page each came from,
        numbered in the order of the page rows)."""
        items = (_pages(events).select(pl.col("items")).with_row_index("page").explode("items")
                 .drop_nulls("items"))
        rows, known = self.rows(items["items"].to_numpy())
        return rows, items["page"].to_numpy()[known]

    def absorb(self, events: pl.DataFrame) -> None:
        """Add events (one round, or a resumed run's whole history in order) to the aggregates."""
        rows, _ = self._page_rows(events)
        self.exposure += np.bincount(rows, minlength=len(self.exposure))
        watches = events.filter(pl.col("action") == "watch")
        changed: dict[int, None] = {}
        catalog = self.catalog
        for agent, item in zip(watches["agent_id"].to_list(), watches["item_id"].to_list()):
            self.watch_agents.add(agent)
            if agent not in self.genre_counts:
                self.genre_counts[agent] = np.zeros(self._genres.shape[1])
                self.entropy[agent] = math.nan
            if item is None or item not in catalog:
                continue
            row = catalog.row(item)
            if (agent, item) not in self.pairs:
                self.pairs.add((agent, item))
                self.watchers[row] += 1.0
            self.genre_counts[agent] += self._genres[row]
            changed[agent] = None
        for agent in changed:
            self.entropy[agent] = _entropy(self.genre_counts[agent], len(catalog.genres))

    def round(self, events_of_round: pl.DataFrame) -> dict[str, float]:
        """Absorb one round and return its metrics (the same numbers as `round_metrics`)."""
        self.absorb(events_of_round)
        catalog, n = self.catalog, len(self.catalog)
        watches = events_of_round.filter(pl.col("action") == "watch")
        rows_now, page_of = self._page_rows(events_of_round)
        shown_now = len(rows_now) > 0
        exposure_now = np.bincount(rows_now, minlength=n).astype(np.float64)
        p = (self.watchers + 1.0) / (len(self.watch_agents) + 1.0)
        entropies = [v for v in self.entropy.values() if not math.isnan(v)]
        return {
            "impressions": float(len(rows_now)),
            "watches": float(watches.height),
            "ctr": fast_click_through(events_of_round),
            "mean_rating": mean_rating(events_of_round),
            "intra_list_diversity": fast_intra_list_diversity(rows_now, page_of, catalog),
            "coverage": int(np.count_nonzero(self.exposure)) / n,
            "coverage_round": int(np.count_nonzero(exposure_now)) / n,
            "exposure_gini": gini(exposure_now) if shown_now else math.nan,
            "exposure_gini_cumulative": gini(self.exposure) if self.exposure.any() else math.nan,
            "novelty": float(np.mean(-np.log2(p[rows_now]))) if shown_now else math.nan,
            "popularity_bias": float(np.mean(popularity_percentile(self.watchers)[rows_now])) if shown_now
            else math.nan,
            "genre_entropy": float(np.mean(entropies)) if entropies and len(catalog.genres) >= 2 else math.nan,
            **watch_source_shares(watches),
        }


def _entropy(counts: np.ndarray, n_genres: int) -> float:
    """`genre_entropy`'s value for one agent's genre counts (NaN when they hold no genre)."""
    total = counts.sum()
    if total == 0 or n_genres < 2:
        return math.nan
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(n_genres))


def fast_click_through(events: pl.DataFrame) -> float:
    """`click_through` with polars joins instead of a Python loop over the rows."""
    pages = _pages(events)
    impressions = int(pages["items"].list.len().sum() or 0)
    if impressions == 0:
        return math.nan
    shown = (pages.select("agent_id", pl.col("items").alias("item_id")).explode("item_id")
             .drop_nulls().unique())
    watches = events.filter(pl.col("action") == "watch").select("agent_id", "item_id")
    return watches.join(shown, on=["agent_id", "item_id"], how="semi").height / impressions


def fast_intra_list_diversity(rows: np.ndarray, page_of: np.ndarray, catalog: Catalog) -> float:
    """`intra_list_diversity` of pages given as the catalog rows of their known items and the
    (non-decreasing) page number of each: the sum of a page's pairwise cosines is
    |sum of its vectors|^2 - sum of |vector|^2 (equal to the loop's value up to rounding)."""
    if len(rows) == 0:
        return math.nan
    lengths = np.bincount(page_of)
    keep = np.repeat(lengths >= 2, lengths)
    m = lengths[lengths >= 2]
    if len(m) == 0:
        return math.nan
    vectors = catalog.genre_matrix.astype(np.float64)[rows[keep]]
    starts = np.concatenate(([0], np.cumsum(m)[:-1]))
    total = np.add.reduceat(vectors, starts, axis=0)
    self_sims = np.add.reduceat((vectors * vectors).sum(axis=1), starts)
    mean_pair = ((total * total).sum(axis=1) - self_sims) / (m * (m - 1))
    return float(np.mean(1.0 - mean_pair))


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
