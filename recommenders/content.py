"""Content-based recommender: item text embeddings against the user's rated history."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field

from simworld.embedding import HashingEmbedder
from simworld.recommenders._util import TIE_WEIGHT, known, popularity, positives
from simworld.recommenders.base import RecommenderConfig, RecommenderContext, ScoringRecommender


class ContentConfig(RecommenderConfig):
    weighting: Literal["rating", "uniform"] = Field(
        default="rating", description="profile = rating-weighted or plain mean of history embeddings")
    unrated_weight: float = Field(default=3.0, gt=0.0, description="weight of an interaction without a rating")
    min_rating: float | None = Field(
        default=None, description="rated interactions below this are left out of the profile")
    cold: Literal["popularity", "zero"] = Field(
        default="popularity", description="scores of users without history: popularity, or all zero")


class ContentRecommender(ScoringRecommender):
    """Score = cosine of the item's text embedding with the user's profile.

    Item embeddings come from `context.embedder` over `Item.text`, once per instance (a
    `HashingEmbedder` when the context has none). The profile is the rating-weighted mean of
    the embeddings of the user's history. Items nobody interacted with are scored like any
    other (no cold-item problem). Users without history get popularity (or zeros, by config).
    """

    Config = ContentConfig
    config: ContentConfig

    def __init__(self, config: ContentConfig | None = None, context: RecommenderContext | None = None):
        super().__init__(config, context)
        self._embeddings: np.ndarray | None = None
        self._profiles: dict[int, np.ndarray] = {}
        self._pop = np.zeros(len(self.catalog))

    @property
    def embeddings(self) -> np.ndarray:
        """(items, dim) float32, L2-normalised rows, in catalog order."""
        if self._embeddings is None:
            embedder = self.context.embedder or HashingEmbedder()
            vectors = np.asarray(embedder.embed([item.text for item in self.catalog.items]), dtype=np.float64)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            self._embeddings = vectors / np.where(norms == 0, 1.0, norms)
        return self._embeddings

    def _train(self, interactions: pl.DataFrame) -> None:
        self._pop = popularity(positives(interactions, self.catalog), len(self.catalog))
        frame = known(interactions, self.catalog)
        if self.config.min_rating is not None:
            frame = frame.filter(pl.col("rating").is_null() | (pl.col("rating") >= self.config.min_rating))
        self._profiles = {}
        if frame.height == 0:
            return
        if self.config.weighting == "rating":
            weight = pl.col("rating").fill_null(self.config.unrated_weight).clip(lower_bound=0.0)
        else:
            weight = pl.lit(1.0)
        frame = frame.with_columns(weight.alias("w")).filter(pl.col("w") > 0)
        emb = self.embeddings
        for (user,), group in frame.group_by(["user_id"], maintain_order=True):
            w = group["w"].to_numpy()
            profile = (w[:, None] * emb[group["row"].to_numpy()]).sum(axis=0) / w.sum()
            self._profiles[int(user)] = profile

    def _score(self, user_ids: list[int]) -> np.ndarray:
        n = len(self.catalog)
        cold = self._pop if self.config.cold == "popularity" else np.zeros(n)
        out = np.empty((len(user_ids), n), dtype=np.float64)
        out[:] = cold
        warm = [r for r, u in enumerate(user_ids) if u in self._profiles]
        if warm:
            profiles = np.stack([self._profiles[user_ids[r]] for r in warm])
            out[warm] = profiles @ self.embeddings.T + TIE_WEIGHT * self._pop
        return out

    def __getstate__(self) -> dict:
        """Pickle the computed embeddings, not the embedder (a model may not pickle)."""
        self.embeddings  # noqa: B018 - compute them now, so the copy needs no embedder
        state = self.__dict__.copy()
        state["context"] = replace(self.context, embedder=None, llm=None)
        return state
