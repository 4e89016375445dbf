"""The recommender protocol and a base class that does the bookkeeping every algorithm needs.

A recommender sees interactions and items, never agents' minds. Interactions are
a polars frame with the columns of `INTERACTION_SCHEMA`; item and user ids are the catalog's
and the world's own integer ids.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from simworld.catalog import Catalog
from simworld.embedding import Embedder
from simworld.streams import Streams

INTERACTION_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64, "round": pl.Int64,
}


def empty_interactions() -> pl.DataFrame:
    return pl.DataFrame(schema=INTERACTION_SCHEMA)


@dataclass(frozen=True)
class RecommenderContext:
    """What a recommender may use: the items, the run's random streams, and shared services.

    `streams` defaults to the streams of `seed`; a world passes its own (the same registry).
    """

    catalog: Catalog
    seed: int = 0
    embedder: Embedder | None = None
    llm: Any | None = None  # a simworld.llm LanguageModel, for LLM re-rankers
    loop: Any | None = None  # the run's simworld.aio.LoopRunner: sync code runs LLM coroutines on it
    streams: Streams = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.streams is None:
            object.__setattr__(self, "streams", Streams(self.seed))


@runtime_checkable
class Recommender(Protocol):
    def fit(self, interactions: pl.DataFrame) -> None:
        """Train from scratch on all interactions so far (may be empty)."""

    def update(self, new_interactions: pl.DataFrame) -> None:
        """Learn from interactions that arrived since the last fit/update."""

    def recommend(self, user_ids: Sequence[int], k: int, exclude_seen: bool = True) -> list[list[int]]:
        """For each user, up to k item ids, best first."""


class RecommenderConfig(BaseModel):
    """Base of every algorithm's typed configuration (every float finite: no NaN, no infinity)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ScoringRecommender(ABC):
    """Keeps the history and the seen sets; subclasses turn users into item scores.

    Ties are broken by a tiny jitter from the stream ("recommender_jitter", user, epoch), so results are
    deterministic under a seed and identical whether users are asked in a batch or one by one.
    """

    Config: ClassVar[type[RecommenderConfig]] = RecommenderConfig

    def __init__(self, config: RecommenderConfig | None = None, context: RecommenderContext | None = None):
        if context is None:
            raise TypeError(f"{type(self).__name__} needs a RecommenderContext")
        self.config = config if config is not None else self.Config()
        self.context = context
        self.catalog = context.catalog
        self.seed = context.streams.int_seed("recommender")  # for libraries that take an int seed
        self.epoch = 0  # number of fit/update calls: changes the jitter between rounds
        self.history = empty_interactions()
        self._seen: dict[int, set[int]] = {}

    # -- protocol ---------------------------------------------------------------------------
    def fit(self, interactions: pl.DataFrame) -> None:
        self.history = _conform(interactions)
        self._seen = {}
        self._remember(self.history)
        self.epoch += 1
        self._train(self.history)

    def update(self, new_interactions: pl.DataFrame) -> None:
        new = _conform(new_interactions)
        self.history = pl.concat([self.history, new]) if new.height else self.history
        self._remember(new)
        self.epoch += 1
        self._learn(new)

    def recommend(self, user_ids: Sequence[int], k: int, exclude_seen: bool = True) -> list[list[int]]:
        users = [int(u) for u in user_ids]
        if not users or k <= 0:
            return [[] for _ in users]
        scores = np.asarray(self._score(users), dtype=np.float64) + self._jitter(users)  # a new array
        if exclude_seen:
            for r, user in enumerate(users):
                seen = self._seen.get(user)
                if seen:
                    scores[r, self.catalog.rows(seen)] = -np.inf
        if k >= scores.shape[1] or (np.isfinite(scores).sum(axis=1) < k).any():  # fewer than k films for someone
            return [self._top_k(row, k) for row in scores]
        # one top-k over the whole matrix (thousands of users a round): the same order as _top_k per row
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(scores, part, axis=1)
        order = np.take_along_axis(part, np.argsort(-top, axis=1, kind="stable"), axis=1)
        return self.catalog.ids[order].tolist()

    # -- for subclasses ---------------------------------------------------------------------
    @abstractmethod
    def _score(self, user_ids: list[int]) -> np.ndarray:
        """(len(user_ids), len(catalog)) scores; higher is better."""

    def _train(self, interactions: pl.DataFrame) -> None:
        """Fit from the full history. Default: nothing to learn."""

    def _learn(self, new: pl.DataFrame) -> None:
        """Incremental learning; default retrains on the whole history."""
        self._train(self.history)

    def seen(self, user_id: int) -> set[int]:
        return self._seen.get(user_id, set())

    # -- helpers ----------------------------------------------------------------------------
    def _remember(self, interactions: pl.DataFrame) -> None:
        for user, item in zip(interactions["user_id"].to_list(), interactions["item_id"].to_list()):
            if item in self.catalog:
                self._seen.setdefault(user, set()).add(item)

    def _jitter(self, users: list[int]) -> np.ndarray:
        n = len(self.catalog)
        out = np.empty((len(users), n), dtype=np.float64)
        for r, user in enumerate(users):
            out[r] = self.context.streams.generator("recommender_jitter", user & 0x7FFFFFFF, self.epoch).random(n)
        return out * 1e-9

    def _top_k(self, row: np.ndarray, k: int) -> list[int]:
        finite = np.isfinite(row)
        k = min(k, int(finite.sum()))
        if k == 0:
            return []
        part = np.argpartition(-row, k - 1)[:k]
        order = part[np.argsort(-row[part], kind="stable")]
        return self.catalog.ids[order].tolist()


def _conform(frame: pl.DataFrame) -> pl.DataFrame:
    missing = {"user_id", "item_id"} - set(frame.columns)
    if missing:
        raise ValueError(f"interactions need columns user_id and item_id; missing {sorted(missing)}")
    cols = []
    for name, dtype in INTERACTION_SCHEMA.items():
        cols.append(pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype=dtype).alias(name))
    return frame.select(cols)
