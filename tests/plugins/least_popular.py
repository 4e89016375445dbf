"""A recommender plug-in as a user would write one: the least watched films first."""

from __future__ import annotations

import numpy as np

from simworld.recommenders.baselines import PopularityRecommender


class LeastPopular(PopularityRecommender):
    """Popularity upside down: exposes the long tail."""

    def _score(self, user_ids: list[int]) -> np.ndarray:
        return -super()._score(user_ids)


class NotARecommender:
    def fit(self, interactions) -> None: ...
