"""Item-item k-nearest-neighbour recommender over co-occurrence cosine similarity."""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import Field

from simworld.recommenders._util import popularity, positives, score_with_popularity, user_item_matrix
from simworld.recommenders.base import RecommenderConfig, RecommenderContext, ScoringRecommender


class ItemKNNConfig(RecommenderConfig):
    neighbors: int = Field(default=50, ge=1, description="similar items kept per item")
    shrinkage: float = Field(default=10.0, ge=0.0, le=1e6, description="added to the cosine denominator")
    min_rating: float | None = Field(
        default=None, description="rated interactions below this are not positive signal (unrated ones are)")
    block_size: int = Field(default=1024, ge=1, description="items per similarity block (memory bound)")


class ItemKNNRecommender(ScoringRecommender):
    """Score of an item = sum of its similarities to the items in the user's history.

    sim(i, j) = |U_i & U_j| / (sqrt(|U_i| |U_j|) + shrinkage) over the users who interacted
    with each item; every item keeps only its `neighbors` most similar items. Users without
    a (known) history get the items' popularity; popularity also orders items that no
    neighbour reaches. Retrained from the whole history on every update.
    """

    Config = ItemKNNConfig
    config: ItemKNNConfig

    def __init__(self, config: ItemKNNConfig | None = None, context: RecommenderContext | None = None):
        super().__init__(config, context)
        n = len(self.catalog)
        self._users: dict[int, int] = {}
        self._matrix = sp.csr_matrix((0, n), dtype=np.float32)  # users x items
        self._sim = sp.csr_matrix((n, n), dtype=np.float32)  # history item -> scored item
        self._pop = np.zeros(n)

    def _train(self, interactions: pl.DataFrame) -> None:
        n = len(self.catalog)
        pos = positives(interactions, self.catalog, self.config.min_rating)
        self._users, self._matrix = user_item_matrix(pos, n)
        self._pop = popularity(pos, n)
        self._sim = item_similarity(self._matrix, self.config.neighbors, self.config.shrinkage,
                                    self.config.block_size)

    def _score(self, user_ids: list[int]) -> np.ndarray:
        return score_with_popularity(user_ids, self._users, self._pop,
                                     lambda rows: (self._matrix[rows] @ self._sim).toarray())

def item_similarity(matrix: sp.csr_matrix, neighbors: int, shrinkage: float, block_size: int = 1024
                    ) -> sp.csr_matrix:
    """(items x items) CSR: entry (j, i) = cosine of items j and i if j is among i's neighbours."""
    n = matrix.shape[1]
    binary = matrix.copy()
    binary.data[:] = 1.0
    csc = binary.tocsc()
    counts = np.asarray(binary.sum(axis=0)).ravel().astype(np.float64)
    norms = np.sqrt(counts)
    keep = min(neighbors, max(n - 1, 0))
    rows_out: list[np.ndarray] = []
    cols_out: list[np.ndarray] = []
    vals_out: list[np.ndarray] = []
    active = np.flatnonzero(counts > 0)
    csr_t = csc.T.tocsr()  # items x users
    for start in range(0, len(active), block_size):
        block = active[start:start + block_size]
        # rows: the block's items; columns: every item (contiguous rows for argpartition)
        co = (csr_t[block] @ csc).toarray().astype(np.float32)
        sim = co / (np.outer(norms[block], norms) + shrinkage + 1e-12).astype(np.float32)
        sim[np.arange(len(block)), block] = 0.0  # an item is not its own neighbour
        if keep == 0:
            continue
        if keep < n:
            top = np.argpartition(-sim, keep - 1, axis=1)[:, :keep]
        else:
            top = np.tile(np.arange(n), (len(block), 1))
        vals = np.take_along_axis(sim, top, axis=1)
        mask = vals > 0
        rows_out.append(top[mask])  # the neighbour j (a history item) ...
        cols_out.append(np.broadcast_to(block[:, None], top.shape)[mask])  # ... of the scored item i
        vals_out.append(vals[mask])
    if not vals_out:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals_out).astype(np.float32), (np.concatenate(rows_out), np.concatenate(cols_out))),
        shape=(n, n), dtype=np.float32,
    )
