"""The collaborative taste model of MovieLens-grounded users: item-to-item similarity over the
user's own history, fitted on the training part of the ratings only.

Two questions, both asked of one user's history (item id -> rating, oldest first):

* `UserTaste.affinity(item)`: how much the user would want this film, 0..1. The score is the
  weighted mean cosine similarity between the film and the films of the history, each history
  film weighted by its recency (half-life `half_life` films) and by its rating (`like_weight`).
  The similarity counts co-raters, each weighted by the inverse of their number of ratings
  (`iuf`: someone who rated 2,000 films says little about any two of them), over the two
  films' plain rater counts. It is mapped to 0..1 by a logistic over the score's spread on
  random (user, film) pairs of the training data, so that the choice model's thresholds mean
  the same thing for every data set.
* `UserTaste.predict(item)`: the rating the user would give: the baseline mu + b_user + b_item
  (regularised means) plus the k most similar history films' residuals, weighted by their
  adjusted-cosine similarity (shrunk by the number of co-raters).

The constants were chosen on a validation part cut from the end of each user's training part
(`python benchmarks/bench_fidelity.py tune`), never on held-out data. There, 1:1 trials of a
liked film against a never-rated one (the higher affinity is picked) went: plain binary-cosine
kNN 0.845, weighting history films by rating (like_weight 0.5, 1.0) 0.854, 0.864, the
asymmetric cosine (alpha 0.3) 0.866; recency (half_life 10 against none) added about 0.01
with rating weights. Weighting co-raters by inverse user frequency (iuf 1) then took it to
0.889 (alpha 0.3) and 0.894 (alpha 0.5, the plain cosine); iuf 1.5 and 2 fell back to 0.88
and 0.865. Tried and left out: keeping each film's 50-300 nearest neighbours only (0.84-0.885),
a log-popularity prior (every weight lowered it), blending in an EASE score (+0.005, not worth
a second dense inverse). The rating kNN's neighbours and shrinkage moved RMSE by < 0.005
(0.877 against 0.878 for the bias baseline alone on that validation part). Genre taste alone
and text-embedding similarity alone stay near 0.58 (issue 13's probe).

A leaf module: it knows the catalog and ratings, nothing of agents or worlds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from simworld.catalog import Catalog
from simworld.errors import DataError

MAX_ITEMS = 20_000  # the similarity matrices are dense: 20k films is 1.6 GB each in float32


@dataclass(frozen=True)
class TasteConfig:
    half_life: float = 10.0  # films: a history film's weight halves every this many films back
    like_weight: float = 1.0  # a history film's weight grows by this per 1.5 stars above 3.5
    alpha: float = 0.5  # asymmetric cosine: co-raters / (n_film^alpha * n_history_film^(1-alpha)); < 0.5 favours popular films
    iuf: float = 1.0  # a co-rater counts 1 / (their number of ratings)^iuf: heavy raters say little about two films
    neighbours: int = 50  # history films used to predict a rating
    shrink: float = 10.0  # co-raters at which a residual similarity counts half
    reg_item: float = 10.0  # ratings' pull of a film's bias toward 0
    reg_user: float = 10.0  # ratings' pull of a user's bias toward 0


class TasteModel:
    """Item-item similarities and rating biases fitted on (training) ratings over a catalog."""

    def __init__(self, train: pl.DataFrame, catalog: Catalog, config: TasteConfig | None = None):
        self.config = config or TasteConfig()
        self.catalog = catalog
        n = len(catalog)
        if n > MAX_ITEMS:
            raise DataError(f"the taste model holds a dense {n} x {n} similarity matrix: keep at most {MAX_ITEMS} "
                            "films (catalog.max_items or catalog.min_ratings)")
        frame = train.filter(pl.col("item_id").is_in(catalog.ids.tolist()))
        users = frame["user_id"].unique().sort().to_numpy()
        uidx = np.searchsorted(users, frame["user_id"].to_numpy())
        cols = catalog.rows(frame["item_id"].to_list())
        ratings = frame["rating"].to_numpy().astype(np.float64)
        nu = len(users)
        self.mu = float(ratings.mean()) if len(ratings) else 3.5
        cfg = self.config
        # regularised biases (one pass each: items, then users given items)
        count_i = np.bincount(cols, minlength=n).astype(np.float64)
        self.item_bias = np.bincount(cols, ratings - self.mu, minlength=n) / (count_i + cfg.reg_item)
        resid_u = ratings - self.mu - self.item_bias[cols]
        user_bias = np.bincount(uidx, resid_u, minlength=nu) / (np.bincount(uidx, minlength=nu) + cfg.reg_user)
        resid = resid_u - user_bias[uidx]
        from scipy import sparse

        binary = sparse.csr_matrix((np.ones(len(cols), dtype=np.float32), (uidx, cols)), shape=(nu, n))
        co = (binary.T @ binary).toarray().astype(np.float32)
        counts = np.diag(co).astype(np.float64)
        per_user = np.maximum(np.asarray(binary.sum(axis=1)).ravel(), 1.0)
        weighted = binary.T @ (sparse.diags((per_user ** -cfg.iuf).astype(np.float32)) @ binary)
        wco = weighted.toarray().astype(np.float32)  # inverse-user-frequency co-occurrence
        denom = np.outer(counts ** cfg.alpha, counts ** (1.0 - cfg.alpha)).astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = np.where(denom > 0, wco / denom, 0.0).astype(np.float32)
        np.fill_diagonal(sim, 0.0)
        self.similarity = sim  # (asymmetric) binary cosine: who watches one also watches the other
        res = sparse.csr_matrix((resid.astype(np.float32), (uidx, cols)), shape=(nu, n))
        dot = (res.T @ res).toarray().astype(np.float32)
        rn = np.sqrt(np.maximum(np.diag(dot), 0)).astype(np.float32)
        rden = np.outer(rn, rn)
        with np.errstate(invalid="ignore", divide="ignore"):
            rsim = np.where(rden > 0, dot / rden, 0.0).astype(np.float32)
        rsim *= co / (co + np.float32(cfg.shrink))
        np.fill_diagonal(rsim, 0.0)
        self.rating_similarity = rsim  # adjusted cosine of residuals: who likes one likes the other
        self.counts = count_i
        self.center, self.scale = self._score_spread(frame, np.random.default_rng(0))

    def _score_spread(self, frame: pl.DataFrame, rng: np.random.Generator) -> tuple[float, float]:
        """Median and spread of raw affinity scores over random (user, film) pairs, to map scores to 0..1."""
        by_user = frame.sort(["user_id", "timestamp"] if "timestamp" in frame.columns else ["user_id"])
        groups = by_user.group_by("user_id", maintain_order=True).agg("item_id", "rating")
        if groups.height == 0:
            return 0.0, 1.0
        picks = rng.choice(groups.height, size=min(200, groups.height), replace=False)
        scores = []
        for row in picks.tolist():
            items, ratings = groups["item_id"][row].to_list(), groups["rating"][row].to_list()
            view = self.view(dict(zip(items, ratings)), raw=True)
            sample = rng.choice(len(self.catalog), size=min(50, len(self.catalog)), replace=False)
            scores.extend(view.raw_scores(sample))
        scores = np.asarray(scores)
        spread = float(np.std(scores)) or 1.0
        return float(np.median(scores)), spread

    def view(self, history: Mapping[int, float], raw: bool = False) -> UserTaste:
        """One user's taste given their history (item id -> rating, oldest first)."""
        return UserTaste(self, history, raw)

    def popularity(self, item_id: int) -> float:
        return float(self.counts[self.catalog.row(item_id)])


class UserTaste:
    """A user's affinity and predicted rating for any film of the catalog, from their history."""

    def __init__(self, model: TasteModel, history: Mapping[int, float], raw: bool = False):
        self.model = model
        known = [(i, r) for i, r in history.items() if i in model.catalog]
        cfg = model.config
        self.rows = model.catalog.rows([i for i, _ in known]) if known else np.zeros(0, dtype=np.int64)
        self.ratings = np.array([r for _, r in known], dtype=np.float64)
        age = np.arange(len(known))[::-1].astype(np.float64)  # 0 = the latest film
        like = np.clip(1.0 + cfg.like_weight * (self.ratings - 3.5) / 1.5, 0.05, None)
        self.weights = (0.5 ** (age / cfg.half_life)) * like
        base = model.mu + model.item_bias[self.rows] if len(known) else np.zeros(0)
        self.user_bias = float((self.ratings - base).sum() / (len(known) + cfg.reg_user)) if len(known) else 0.0
        self.residuals = self.ratings - base - self.user_bias
        self.raw = raw
        self._affinity: dict[int, float] = {}

    def raw_scores(self, rows: np.ndarray) -> np.ndarray:
        if not len(self.rows):
            return np.zeros(len(rows))
        sims = self.model.similarity[np.ix_(np.asarray(rows), self.rows)]
        return sims @ self.weights / self.weights.sum()

    def affinity(self, item_id: int) -> float:
        """0..1: the logistic of the film's score, standardised over random pairs of the training data."""
        if item_id not in self._affinity:
            raw = float(self.raw_scores(np.array([self.model.catalog.row(item_id)]))[0])
            z = (raw - self.model.center) / self.model.scale
            self._affinity[item_id] = raw if self.raw else float(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))))
        return self._affinity[item_id]

    def predict(self, item_id: int) -> float:
        """The expected rating (0.5..5, not rounded)."""
        model, row = self.model, self.model.catalog.row(item_id)
        base = model.mu + self.user_bias + model.item_bias[row]
        if len(self.rows):
            sims = model.rating_similarity[row, self.rows]
            top = np.argsort(-sims, kind="stable")[:model.config.neighbours]
            top = top[sims[top] > 0]
            if len(top):
                base += float(sims[top] @ self.residuals[top] / sims[top].sum())
        return float(np.clip(base, 0.5, 5.0))
