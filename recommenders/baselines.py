"""Random and windowed-popularity recommenders: the baselines every study needs."""

from __future__ import annotations

from collections import deque

import numpy as np
import polars as pl
from pydantic import Field

from simworld.recommenders.base import RecommenderConfig, RecommenderContext, ScoringRecommender


class RandomConfig(RecommenderConfig):
    pass


class RandomRecommender(ScoringRecommender):
    """Uniformly random ranking, drawn afresh every epoch (round)."""

    Config = RandomConfig

    def _score(self, user_ids: list[int]) -> np.ndarray:
        return np.zeros((len(user_ids), len(self.catalog)))  # the base jitter is the ranking

    def _jitter(self, users: list[int]) -> np.ndarray:
        return super()._jitter(users) * 1e9


class PopularityConfig(RecommenderConfig):
    window: int | None = Field(default=None, ge=1, description="rounds counted; null = all time")
    min_rating: float | None = Field(default=None, description="count only interactions rated at least this")


class PopularityRecommender(ScoringRecommender):
    """Most-interacted items over the last `window` rounds of feedback."""

    Config = PopularityConfig
    config: PopularityConfig

    def __init__(self, config: PopularityConfig | None = None, context: RecommenderContext | None = None):
        super().__init__(config, context)
        self._batches: deque[np.ndarray] = deque(maxlen=self.config.window)

    def _counts(self, frame: pl.DataFrame) -> np.ndarray:
        counts = np.zeros(len(self.catalog), dtype=np.float64)
        if self.config.min_rating is not None:
            frame = frame.filter(pl.col("rating") >= self.config.min_rating)
        ids = [i for i in frame["item_id"].to_list() if i in self.catalog]
        if ids:
            np.add.at(counts, self.catalog.rows(ids), 1.0)
        return counts

    def _train(self, interactions: pl.DataFrame) -> None:
        self._batches.clear()
        if interactions.height == 0:
            return
        if self.config.window is None:
            self._batches.append(self._counts(interactions))
            return
        rounds = interactions["round"].fill_null(0)
        last = int(rounds.max())
        for r in range(last - self.config.window + 1, last + 1):
            self._batches.append(self._counts(interactions.filter(rounds == r)))

    def _learn(self, new: pl.DataFrame) -> None:
        counts = self._counts(new)
        if self.config.window is None and self._batches:
            self._batches[0] = self._batches[0] + counts
        else:
            self._batches.append(counts)

    def _score(self, user_ids: list[int]) -> np.ndarray:
        total = sum(self._batches) if self._batches else np.zeros(len(self.catalog))
        return np.broadcast_to(total, (len(user_ids), len(self.catalog))).copy()
