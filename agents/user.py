"""UserAgent: a persona, its evolving taste and history, and an injected policy."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import mesa
import numpy as np

from simworld.agents.policy import Policy
from simworld.population import Persona


@dataclass
class AgentState:
    """Everything about an agent that changes during a run; checkpointed every round."""

    persona: Persona
    taste: np.ndarray
    watched: dict[int, float] = field(default_factory=dict)  # item id -> last rating
    idle_rounds: int = 0
    rounds_active: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=8))  # short texts of recent events


class UserAgent(mesa.Agent):
    def __init__(self, model: mesa.Model, state: AgentState, policy: Policy):
        super().__init__(model)
        self.unique_id = state.persona.agent_id  # one id end to end: Mesa's, the events', memory's
        self.state = state
        self.policy = policy  # injected: the agent never builds its own LLM or policy

    @property
    def agent_id(self) -> int:
        return self.unique_id

    @property
    def persona(self) -> Persona:
        return self.state.persona

    def drift_taste(self, genres: np.ndarray, rating: float, rate: float) -> None:
        """Liked films pull the taste toward their genres, disliked ones push it away."""
        if rate <= 0 or not genres.any():
            return
        pull = (rating - 3.0) / 2.0  # -1.25 .. +1
        taste = (1.0 - rate) * self.state.taste + rate * pull * genres
        taste = np.maximum(taste, 0.0)  # np.clip(taste, 0, None), without its overhead on 18 numbers
        norm = math.sqrt(taste.dot(taste))  # np.linalg.norm's own formula for a vector
        if norm > 0:
            self.state.taste = taste / norm
