"""One plug-in of each kind, complete and tested (tests/test_plugin_guide.py); docs/plugins.md
walks through them. Copy this file into your own package and adapt it.

* `GenreFan`: a policy (who decides what a user watches);
* `LeastPopular`: a recommender (what the platform shows);
* `PopularCRS`: a conversational recommender (what a CRS answers a seeker);
* `CountingMemory`: a memory store (what agents remember);
* `WatchCounter`: a stage of the round (anything that happens each round).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simworld.agents.actions import Action, BrowseAction, DecisionMeta, PageDecision, Watch
from simworld.agents.observation import Observation
from simworld.crs.protocol import CRSReply, CRSRequest
from simworld.memory.store import InProcessMemory
from simworld.recommenders.baselines import PopularityRecommender


class GenreFan:
    """A policy: on each page, watch the first film of the user's favourite genre and rate it 4.5.

    A policy is anything with `async decide(observation) -> Action`. Draw randomness only from
    `obs.rng` (the agent's stream for this round), so runs repeat exactly from a seed."""

    name = "genre_fan"

    async def decide(self, obs: Observation) -> Action:
        favourite = obs.persona.top_genres(1)
        pages = []
        for page in obs.pages:
            pick = next((i for i in page if favourite and favourite[0] in i.genres), None)
            watches = [Watch(item_id=pick.item_id, rating=4.5, feeling="My kind of film.")] if pick else []
            pages.append((tuple(i.item_id for i in page), PageDecision(watches=watches, then="leave")))
            break  # one page is enough for a fan
        return BrowseAction(pages=tuple(pages), meta=DecisionMeta(policy="rule"))


class LeastPopular(PopularityRecommender):
    """A recommender: popularity upside down, the long tail first. Subclass `ScoringRecommender`
    (score every item for each user) or write `fit`/`update`/`recommend` yourself; name it in a
    scenario as `recommender: {name: "examples.my_plugins:LeastPopular"}`."""

    def _score(self, user_ids: list[int]) -> np.ndarray:
        return -super()._score(user_ids)


class PopularCRS:
    """A CRS: asks once what the seeker wants, then proposes the most-mentioned films of the
    catalogue it has not proposed yet. Stateless: everything is in the request."""

    name = "popular-crs"
    model = "popularity-v1"

    def __init__(self, ranking: list[int]):
        self.ranking = list(dict.fromkeys(ranking))  # best first, each film once

    async def respond(self, request: CRSRequest) -> CRSReply:
        if len(request.messages) <= 1:
            return CRSReply(text="What kind of film are you in the mood for?", act="ask")
        proposed = set(request.proposed)
        ranking = tuple(i for i in self.ranking if i not in proposed)[:request.k]
        pick = ranking[:1]
        return CRSReply(text=f"You could try @{pick[0]}." if pick else "I have nothing else to offer.",
                        recommended=pick, ranking=ranking, act="recommend" if pick else "chat")


class CountingMemory(InProcessMemory):
    """A memory store: the in-process store, counting retrievals. A store from scratch must
    keep the `MemoryStore` protocol's commit discipline (simworld/memory/store.py)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.retrievals = 0

    def retrieve(self, agent_id, query, k=None, now=0, *, touch=None):
        self.retrievals += 1
        return super().retrieve(agent_id, query, k, now, touch=touch)


@dataclass
class WatchCounter:
    """A stage: counts each round's watches and writes a note to the event log. Name its factory
    in a scenario: `stages: [{path: "examples.my_plugins:WatchCounter", after: apply}]`. Its
    `state_dict`/`load_state` put its state into the run's checkpoint, so resume keeps it."""

    name: str = "watch_counter"
    counts: list[int] = field(default_factory=list)

    def run(self, world, rnd) -> None:
        watches = sum(1 for action in rnd.events.cols["action"] if action == "watch")
        self.counts.append(watches)
        rnd.events.add(0, "stage_note", None, text=f"{watches} watches this round", policy="rule")

    def state_dict(self) -> dict:
        return {"counts": list(self.counts)}

    def load_state(self, state: dict) -> None:
        self.counts = list(state["counts"])
