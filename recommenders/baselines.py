"""Random and windowed-popularity recommenders: the baselines every study needs."""

from __future__ import annotations

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
    """Most-interacted items over the last `window` rounds of feedback (rounds of the
    interactions' `round` column, however often the recommender is updated)."""

    Config = PopularityConfig
    config: PopularityConfig

    def __init__(self, config: PopularityConfig | None = None, context: RecommenderContext | None = None):
        super().__init__(config, context)
        self._by_round: dict[int, np.ndarray] = {}  # round -> interaction counts per item (window only)
        self._total = np.zeros(len(self.catalog), dtype=np.float64)  # over the window, or all time

    def _counts(self, frame: pl.DataFrame) -> np.ndarray:
        counts = np.zeros(len(self.catalog), dtype=np.float64)
        ids = [i for i in frame["item_id"].to_list() if i in self.catalog]
        if ids:
            np.add.at(counts, self.catalog.rows(ids), 1.0)
        return counts

    def _train(self, interactions: pl.DataFrame) -> None:
        self._by_round = {}
        self._total = np.zeros(len(self.catalog), dtype=np.float64)
        self._learn(interactions)

    def _learn(self, new: pl.DataFrame) -> None:
        if self.config.min_rating is not None:
            new = new.filter(pl.col("rating") >= self.config.min_rating)
        if self.config.window is None:
            self._total = self._total + self._counts(new)
            return
        new = new.with_columns(pl.col("round").fill_null(0))
        for (round_no,), part in new.partition_by("round", as_dict=True).items():
            self._by_round[round_no] = self._by_round.get(round_no, 0.0) + self._counts(part)
        if self._by_round:
            newest = max(self._by_round)
            self._by_round = {r: c for r, c in self._by_round.items() if r > newest - self.config.window}
        self._total = sum(self._by_round.values(), np.zeros(len(self.catalog), dtype=np.float64))

    def _score(self, user_ids: list[int]) -> np.ndarray:
        return np.broadcast_to(self._total, (len(user_ids), len(self.catalog)))  # read-only: recommend adds jitter
