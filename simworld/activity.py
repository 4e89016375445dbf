"""Who acts in a round: constant, Pareto-distributed or marginal (growing with idleness) activity."""

from __future__ import annotations

import numpy as np

from simworld.config import ActivitySpec
from simworld.population import Persona


class ActivityModel:
    def __init__(self, spec: ActivitySpec, personas: list[Persona]):
        self.spec = spec
        if spec.model == "pareto":
            # The persona's activity trait is its quantile in a Pareto law: a heavy tail of
            # very active users, as in real platforms; scaled so the mean rate is `probability`.
            q = np.clip(np.array([p.activity for p in personas], dtype=np.float64), 0.0, 0.995)
            weights = (1.0 - q) ** (-1.0 / spec.pareto_alpha)
            rates = spec.probability * weights / weights.mean()
        else:
            rates = np.full(len(personas), spec.probability)
        self.base = np.clip(rates, 0.0, 1.0)

    def probabilities(self, idle_rounds: np.ndarray) -> np.ndarray:
        if self.spec.model == "marginal":
            return np.clip(self.base * (1.0 + self.spec.growth * idle_rounds), 0.0, 1.0)
        return self.base

    def select(self, idle_rounds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Indices (into the population order) of the agents that act this round, ascending."""
        chosen = np.flatnonzero(rng.random(len(idle_rounds)) < self.probabilities(idle_rounds))
        cap = self.spec.max_active
        if cap is not None and len(chosen) > cap:
            chosen = np.sort(rng.choice(chosen, size=cap, replace=False))
        return chosen
