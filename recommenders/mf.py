"""Matrix factorisation for implicit feedback (ALS or BPR) with the `implicit` library, on CPU."""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from simworld.errors import SimworldError
from simworld.recommenders._util import popularity, positives, score_with_popularity, user_item_matrix
from simworld.recommenders.base import RecommenderConfig, RecommenderContext, ScoringRecommender


class MFConfig(RecommenderConfig):
    algorithm: Literal["als", "bpr"] = "als"
    # ALS's defaults suit simulated worlds of tens to hundreds of users: at regularisation 10 a
    # 40-agent world's factors shrink to nothing and MF ranks like popularity. On MovieLens
    # ml-latest-small a validation part cut from the training part (benchmarks/tune_als.py)
    # picks 64 factors and regularisation 10, which the offline evaluation uses (NDCG@10 on the
    # test part 0.100 against 0.092 with these). BPR's regularisation defaults to 0.01: with
    # ALS's 1.0 it scored far below popularity.
    # The upper bounds keep training finite: past them the factors overflow to NaN (measured on
    # the bundled catalog), or the model would not fit in memory or time.
    factors: int = Field(default=32, ge=1, le=1024)
    regularization: float = Field(default=1.0, ge=0.0, le=1e6, description="default 1.0 for als, 0.01 for bpr")
    iterations: int = Field(default=15, ge=1, le=10_000)
    alpha: float = Field(default=1.0, gt=0.0, le=1e6, description="ALS confidence: 1 + alpha * interactions")
    learning_rate: float = Field(default=0.05, gt=0.0, le=0.5, description="BPR only")
    min_rating: float | None = Field(
        default=None, description="rated interactions below this are not positive signal (unrated ones are)")

    @model_validator(mode="before")
    @classmethod
    def _regularization_default(cls, data):
        if isinstance(data, dict) and data.get("algorithm") == "bpr" and "regularization" not in data:
            data = {**data, "regularization": 0.01}
        return data

    @model_validator(mode="after")
    def _bpr_converges(self) -> "MFConfig":
        # BPR's SGD shrinks each factor by learning_rate * regularization per step: beyond 1 it diverges.
        if self.algorithm == "bpr" and self.learning_rate * self.regularization > 1.0:
            raise ValueError(f"bpr needs learning_rate * regularization <= 1 (training diverges beyond), got "
                             f"{self.learning_rate:g} * {self.regularization:g}")
        return self


class MFRecommender(ScoringRecommender):
    """Implicit-feedback matrix factorisation (implicit's CPU ALS or BPR, one thread, seeded).

    The model is refitted from the whole history on every update (sub-second on a simulated
    population; a few seconds on all of MovieLens ml-latest-small). Users without a known
    history get the items' popularity; popularity also breaks exact ties.
    """

    Config = MFConfig
    config: MFConfig

    def __init__(self, config: MFConfig | None = None, context: RecommenderContext | None = None):
        super().__init__(config, context)
        n = len(self.catalog)
        self._users: dict[int, int] = {}
        self._user_factors = np.zeros((0, self.config.factors), dtype=np.float32)
        self._item_factors = np.zeros((n, self.config.factors), dtype=np.float32)
        self._pop = np.zeros(n)

    def _train(self, interactions: pl.DataFrame) -> None:
        n = len(self.catalog)
        pos = positives(interactions, self.catalog, self.config.min_rating)
        self._pop = popularity(pos, n)
        counts = pos["n"].to_numpy().astype(np.float32)
        self._users, matrix = user_item_matrix(pos, n, values=counts)
        if matrix.nnz == 0:
            self._users = {}
            return
        self._user_factors, self._item_factors = fit_factors(matrix, self.config, self.seed)

    def _score(self, user_ids: list[int]) -> np.ndarray:
        return score_with_popularity(user_ids, self._users, self._pop, lambda rows: (
            self._user_factors[rows].astype(np.float64) @ self._item_factors.T.astype(np.float64)))

def fit_factors(matrix, config: MFConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, item factors) of `matrix` (users x items CSR of interaction counts)."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from threadpoolctl import threadpool_limits
    except ImportError as exc:  # pragma: no cover - install problem
        raise SimworldError("the mf recommender needs the package implicit (pip install implicit)") from exc
    seed = int(seed) & 0x7FFFFFFF
    # One BLAS thread: implicit asks for it (and checks when a model is built), and one
    # thread keeps the results identical whatever the machine's load.
    with threadpool_limits(1, "blas"):
        if config.algorithm == "als":
            model = AlternatingLeastSquares(
                factors=config.factors, regularization=config.regularization, alpha=config.alpha,
                iterations=config.iterations, num_threads=1, random_state=seed,
            )
        else:
            model = BayesianPersonalizedRanking(
                factors=config.factors, learning_rate=config.learning_rate,
                regularization=config.regularization, iterations=config.iterations,
                num_threads=1, random_state=seed,
            )
        model.fit(matrix.tocsr(), show_progress=False)
    return np.asarray(model.user_factors, dtype=np.float32), np.asarray(model.item_factors, dtype=np.float32)
