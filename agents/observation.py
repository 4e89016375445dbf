"""What an agent sees at the start of a round. Read-only: decide never changes the world."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from simworld.catalog import Catalog, Item
from simworld.population import Persona
from simworld.taste import UserTaste


@dataclass(frozen=True)
class Observation:
    agent_id: int
    round: int
    persona: Persona
    taste: np.ndarray  # current genre-taste vector (unit length), drifts with what was watched
    pages: tuple[tuple[Item, ...], ...]  # the recommender's ranked list, cut into pages
    watched: frozenset[int]  # item ids watched before this round
    catalog: Catalog  # immutable during a run: safe to read concurrently
    item_mean_rating: Callable[[int], float | None]  # the crowd's mean rating so far (social proof)
    search: Callable[[str, int], list[int]]  # the platform's search box
    rng: np.random.Generator  # this agent's stream for this round, derived from the run's seed
    memories: tuple[str, ...] = ()  # retrieved memories (agent memory) or recent events
    feed: tuple[str, ...] = ()  # posts from followed users (social layer)
    extra: dict[str, object] = field(default_factory=dict)  # injected events (ads, news) for this round
    # MovieLens-grounded users: affinity and predicted rating from their own history (simworld/taste.py)
    user_taste: UserTaste | None = None
    # the crowd's mean rating per catalog row (NaN: nobody rated it yet): the numbers `item_mean_rating`
    # gives, as one array the round's observations share (the rule policy scores pages with it)
    item_means: np.ndarray | None = None
