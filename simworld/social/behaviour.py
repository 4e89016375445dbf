"""How rule-driven agents behave socially: pure functions of the state and a random stream.

- each persona's mix of watching, talking and posting (its traits tilt the scenario's means);
- whom to chat with (a friend, in proportion to tie strength);
- how much a post appeals to a reader (its film's genres against the reader's taste, and
  the poster's verdict), which drives likes, reposts and follows;
- whom to follow next (the friend of a friend sharing most followed accounts);
- what to post about (the latest watch with a clear opinion, not posted about yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from simworld.population import Persona
from simworld.social.config import MixConfig
from simworld.social.graph import SocialGraph
from simworld.social.state import DiaryEntry

MODES = ("watch", "talk", "post")
TRAIT_MIX = {  # how a trait tilts a persona's (watch, talk, post) weights
    "sociable": (1.0, 1.6, 1.2), "introverted": (1.2, 0.5, 0.7), "critical": (1.0, 1.0, 1.5),
    "playful": (1.0, 1.2, 1.2), "thoughtful": (1.1, 1.0, 1.2), "impatient": (1.0, 0.9, 0.8),
}


def persona_mix(persona: Persona, spec: MixConfig, rng: np.random.Generator) -> np.ndarray:
    """A persona's own chances of (watch, talk, post) in a round: a Dirichlet draw around the
    scenario's means tilted by its traits; a mean at 0 stays 0."""
    base = np.array([spec.watch, spec.talk, spec.post], dtype=np.float64)
    for trait in persona.traits:
        base = base * np.array(TRAIT_MIX.get(trait, (1.0, 1.0, 1.0)))
    base = base / base.sum()
    mix = rng.dirichlet(np.maximum(spec.spread * base, 1e-3))
    mix[base == 0] = 0.0
    return mix / mix.sum()


def draw_mode(mix: np.ndarray, rng: np.random.Generator) -> str:
    return MODES[int(min(np.searchsorted(np.cumsum(mix), rng.random(), side="right"), len(MODES) - 1))]


def verdict(rating: float) -> float:
    """A rating as a view of the film: -1 (0.5-1 stars) .. 0 (3 stars) .. +1 (5 stars)."""
    return float(np.clip((rating - 3.0) / 2.0, -1.0, 1.0))


def pick_friend(graph: SocialGraph, agent_id: int, rng: np.random.Generator) -> int:
    friends = graph.friends(agent_id)
    ties = np.array([graph.tie(agent_id, b) for b in friends])
    return friends[int(rng.choice(len(friends), p=ties / ties.sum()))] if ties.sum() > 0 else friends[0]


def appeal(taste: np.ndarray, genres: np.ndarray, post_verdict: float) -> tuple[float, float]:
    """(appeal 0..1, taste match) of a post for a reader: the match of the film's genres with
    the reader's taste on a logistic curve, more for a film the poster loved."""
    match = float(taste @ genres)
    return 1.0 / (1.0 + np.exp(-6.0 * (match - 0.35))) * (0.6 + 0.4 * max(post_verdict, 0.0)), match


def who_to_follow(graph: SocialGraph, agent_id: int, followed: set[int]) -> int | None:
    """The friend of a friend (not followed yet) who follows most of the accounts `agent_id`
    follows (ties: the smaller id), or None."""
    candidates = {c for f in graph.friends(agent_id) for c in graph.friends(f)} - followed - {agent_id}
    if not candidates:
        return None
    return min(candidates, key=lambda c: (-len(followed.intersection(graph.following(c))), c))


def post_topic(diary: Sequence[DiaryEntry], posted: set[int], skip: Iterable[int] = ()) -> DiaryEntry | None:
    """The film to post about: the latest watch rated 2 or less or 4 or more, not posted about yet."""
    skip = set(skip)
    for entry in reversed(diary):
        if abs(entry.rating - 3.0) >= 1.0 and entry.item_id not in posted and entry.item_id not in skip:
            return entry
    return None
