"""SimWorld: the round, as a short schedule. The logic lives in agents, policies and recommenders."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import mesa
import numpy as np
import polars as pl

from simworld.activity import ActivityModel
from simworld.agents.actions import Action, SearchAction, watches_of
from simworld.agents.observation import Observation
from simworld.agents.policy import Policy
from simworld.agents.user import AgentState, UserAgent
from simworld.catalog import Catalog
from simworld.config import Scenario
from simworld.events import EventBuilder
from simworld.llm.types import LLMOutputError
from simworld.population import Persona
from simworld.recommenders.base import INTERACTION_SCHEMA, Recommender, empty_interactions
from simworld.world_memory import Reflection, WorldMemory, page_query, search_memory, watch_memory


@dataclass(frozen=True)
class RoundResult:
    round: int
    active: int
    events: pl.DataFrame
    wall_s: float


class SimWorld(mesa.Model):
    """Owns the one RNG, the agents, the recommender and the round.

    Decide reads only the state at the start of the round; apply is sequential in agent-id
    order, so the same seed and the same LLM answers give the same run.
    """

    def __init__(self, scenario: Scenario, catalog: Catalog, personas: list[Persona],
                 recommender: Recommender, policy_for: Callable[[Persona], Policy],
                 history: pl.DataFrame | None = None, run_id: str = "run"):
        super().__init__(seed=scenario.seed)
        self.scenario = scenario
        self.catalog = catalog
        self.recommender = recommender
        self.run_id = run_id
        self.round = 0  # rounds completed
        self.rng_np = np.random.default_rng(scenario.seed)  # activation draws; checkpointed
        genres = catalog.genres
        self.users: dict[int, UserAgent] = {}
        for persona in sorted(personas, key=lambda p: p.agent_id):
            state = AgentState(persona=persona, taste=persona.taste_vector(genres))
            self.users[persona.agent_id] = UserAgent(self, state, policy_for(persona))
        self.order = sorted(self.users)  # apply order: agent id
        self.activity = ActivityModel(scenario.activity, [self.users[i].persona for i in self.order])
        n = len(catalog)
        self.rating_sum = np.zeros(n)
        self.rating_count = np.zeros(n, dtype=np.int64)
        self.pending: list[pl.DataFrame] = []  # feedback not yet given to the recommender
        self.injected: dict[int, list[str]] = {}  # agent id -> texts injected for the next round
        self.promoted: dict[int, list[int]] = {}  # agent id -> item ids pinned atop the next page (ads)
        history = history if history is not None else empty_interactions()
        for user, item, rating in history.select("user_id", "item_id", "rating").iter_rows():
            if user in self.users and item in catalog:
                self.users[user].state.watched[item] = rating
        self.recommender.fit(history)
        self.llm = None  # the run's LedgerModel when a policy or recommender uses an LLM
        self.embedder = None  # the run's sentence embedder, when a part needs one
        self.memory: WorldMemory | None = None  # long-term agent memory, when the scenario has one
        self._loop = asyncio.new_event_loop()

    # -- the round --------------------------------------------------------------------------
    def step(self) -> None:
        """Mesa's step: one round. Mesa's wrapper drops return values, hence `last_result`."""
        self.last_result = self.run_round()

    def run_round(self) -> RoundResult:
        started = time.perf_counter()
        r = self.round + 1
        if self.llm is not None:
            self.llm.set_round(r)
        active = self.activate()
        pages = self.recommend(active)
        recalled = self.recall(active, pages, r)
        observations = [self.observe(agent, pages[agent.agent_id], r, recalled.get(agent.agent_id))
                        for agent in active]
        actions = self.decide(observations)
        events = self.apply(active, actions, r)
        self.learn(r)
        self.round = r
        return RoundResult(r, len(active), events, time.perf_counter() - started)

    def activate(self) -> list[UserAgent]:
        idle = np.array([self.users[i].state.idle_rounds for i in self.order], dtype=np.float64)
        chosen = self.activity.select(idle, self.rng_np)
        return [self.users[self.order[k]] for k in chosen]

    def recommend(self, active: list[UserAgent]) -> dict[int, tuple]:
        spec = self.scenario.recommender
        k = spec.page_size * spec.max_pages
        ids = [a.agent_id for a in active]
        ranked = self.recommender.recommend(ids, k, exclude_seen=True) if ids else []
        out = {}
        for agent_id, items in zip(ids, ranked):
            pinned = [i for i in self.promoted.get(agent_id, ()) if i in self.catalog]
            items = pinned + [i for i in items if i not in pinned]
            known = [self.catalog.get(i) for i in items if i in self.catalog]
            out[agent_id] = tuple(tuple(known[s:s + spec.page_size]) for s in range(0, len(known), spec.page_size))
        return out

    def recall(self, active: list[UserAgent], pages: dict[int, tuple], round_no: int) -> dict[int, tuple[str, ...]]:
        """Each active agent's memories most relevant to its first page (one batched retrieval)."""
        if self.memory is None or not active:
            return {}
        return self.memory.recall({a.agent_id: page_query(pages[a.agent_id]) for a in active}, round_no)

    def observe(self, agent: UserAgent, pages: tuple, round_no: int,
                memories: tuple[str, ...] | None = None) -> Observation:
        state = agent.state
        return Observation(
            agent_id=agent.agent_id, round=round_no, persona=state.persona, taste=state.taste.copy(),
            pages=pages, watched=frozenset(state.watched), catalog=self.catalog,
            item_mean_rating=self.item_mean_rating, search=self.catalog.search,
            rng=self.agent_rng(agent.agent_id, round_no),
            memories=memories if memories is not None else tuple(state.recent),
            extra={"injected": tuple(self.injected.get(agent.agent_id, ()))},
        )

    def decide(self, observations: list[Observation]) -> list[Action]:
        async def one(obs: Observation) -> Action:
            return await self.users[obs.agent_id].policy.decide(obs)

        async def all_of() -> list[Action]:
            return list(await asyncio.gather(*(one(o) for o in observations)))

        return self._loop.run_until_complete(all_of()) if observations else []

    def apply(self, active: list[UserAgent], actions: list[Action], round_no: int) -> pl.DataFrame:
        spec = self.scenario.policy.rule
        events = EventBuilder(self.run_id, round_no)
        fresh: dict[str, list] = {name: [] for name in INTERACTION_SCHEMA}
        memories: dict[int, list] = {}
        for agent, action in sorted(zip(active, actions), key=lambda pair: pair[0].agent_id):
            state = agent.state
            events.add_action(agent.agent_id, action)
            state.rounds_active += 1
            state.idle_rounds = 0
            if self.memory is not None and isinstance(action, SearchAction):
                memories.setdefault(agent.agent_id, []).append(search_memory(action.query, round_no))
            for watch in watches_of(action):
                if watch.item_id not in self.catalog:
                    continue  # a policy may only name catalog items; LLM output is validated upstream
                row = self.catalog.row(watch.item_id)
                if self.memory is not None:
                    memories.setdefault(agent.agent_id, []).append(watch_memory(
                        self.catalog.get(watch.item_id), watch.rating, watch.feeling, round_no, state.taste,
                        self.catalog.genre_matrix[row], watch.importance))
                state.watched[watch.item_id] = watch.rating
                state.recent.append(f"round {round_no}: watched {self.catalog.get(watch.item_id).label}, "
                                    f"rated {watch.rating:g}: {watch.feeling}")
                self.rating_sum[row] += watch.rating
                self.rating_count[row] += 1
                agent.drift_taste(self.catalog.genre_matrix[row], watch.rating, spec.taste_drift)
                for name, value in zip(INTERACTION_SCHEMA, (agent.agent_id, watch.item_id, watch.rating, round_no)):
                    fresh[name].append(value)
        active_ids = {a.agent_id for a in active}
        for agent_id in self.order:
            if agent_id not in active_ids:
                self.users[agent_id].state.idle_rounds += 1
        self.injected, self.promoted = {}, {}
        self.pending.append(pl.DataFrame(fresh, schema=INTERACTION_SCHEMA))
        if self.memory is not None:
            self.memory.remember(memories)  # the round's memories: one batched write
            self.reflect(sorted(memories), round_no, events)
            self.memory.maintain(sorted(memories), round_no)
        return events.frame()

    def reflect(self, agent_ids: list[int], round_no: int, events: EventBuilder) -> None:
        """Agents whose recent memories weigh enough reflect: LLM agents write insights (in
        parallel), rule agents' tastes move; each reflection is a memory and an event row."""
        due = self.memory.due_for_reflection(agent_ids)
        if not due:
            return

        async def one(agent_id: int) -> tuple[Reflection, str]:
            agent = self.users[agent_id]
            writer = getattr(agent.policy, "reflect", None)
            if writer is not None:
                try:
                    texts = [r.text for r in self.memory.recent(agent_id)]
                    return Reflection(agent_id, tuple(await writer(agent.persona, texts, round_no))), agent.policy.name
                except LLMOutputError:
                    return self.memory.rule_reflection(agent_id, agent.state.taste, round_no), "fallback"
            return self.memory.rule_reflection(agent_id, agent.state.taste, round_no), "rule"

        async def all_of() -> list[tuple[Reflection, str]]:
            return list(await asyncio.gather(*(one(a) for a in due)))

        done = self._loop.run_until_complete(all_of())
        for reflection, policy in done:
            if reflection.taste is not None:
                self.users[reflection.agent_id].state.taste = reflection.taste
            for text in reflection.insights:
                events.add(reflection.agent_id, "reflect", None, text=text, policy=policy)
        self.memory.write_reflections([r for r, _ in done], round_no)

    def learn(self, round_no: int) -> None:
        if round_no % self.scenario.recommender.retrain_every:
            return
        new = pl.concat(self.pending) if self.pending else empty_interactions()
        self.pending = []
        self.recommender.update(new)

    # -- reading the world ------------------------------------------------------------------
    def item_mean_rating(self, item_id: int) -> float | None:
        row = self.catalog.row(item_id)
        n = self.rating_count[row]
        return float(self.rating_sum[row] / n) if n else None

    def agent_rng(self, agent_id: int, round_no: int) -> np.random.Generator:
        """A per-agent, per-round stream derived from the run's seed: order-independent."""
        return np.random.default_rng([self.scenario.seed, round_no, agent_id])

    def persona_frame(self) -> pl.DataFrame:
        rows = []
        for agent_id in self.order:
            p = self.users[agent_id].persona
            rows.append({"agent_id": agent_id, "name": p.name, "age": p.age, "occupation": p.occupation,
                         "traits": ", ".join(p.traits), "top_genres": ", ".join(p.top_genres(3)),
                         "activity": p.activity, "diversity": p.diversity, "conformity": p.conformity,
                         "curiosity": p.curiosity, "rating_bias": p.rating_bias, "source": p.source,
                         "notes": p.notes, "description": p.describe(),
                         "policy": getattr(self.users[agent_id].policy, "name", "custom")})
        return pl.DataFrame(rows)

    def agent_snapshot(self) -> pl.DataFrame:
        """Each agent's taste now (for the population map), with its dominant genre."""
        genres = self.catalog.genres
        tastes = [self.users[i].state.taste for i in self.order]
        return pl.DataFrame({
            "round": [self.round] * len(self.order),
            "agent_id": self.order,
            "dominant_genre": [genres[int(np.argmax(t))] if t.any() else "none" for t in tastes],
            "taste": [t.astype(np.float32).tolist() for t in tastes],
            "watched": [len(self.users[i].state.watched) for i in self.order],
            "rounds_active": [self.users[i].state.rounds_active for i in self.order],
        }, schema_overrides={"taste": pl.List(pl.Float32)})

    # -- researcher interventions (applied at the start of the next round) -------------------
    def edit_persona(self, agent_id: int, **changes) -> None:
        self.users[agent_id].state.persona = self.users[agent_id].state.persona.edited(**changes)

    def inject(self, agent_ids: list[int], text: str, item_id: int | None = None) -> None:
        """An event for these agents next round: a news text, or an ad that pins `item_id` on top."""
        for agent_id in agent_ids:
            self.injected.setdefault(agent_id, []).append(text)
            self.users[agent_id].state.recent.append(f"news: {text}")
            if item_id is not None:
                self.promoted.setdefault(agent_id, []).append(item_id)

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "round": self.round,
            "rng": self.rng_np.bit_generator.state,
            "agents": {i: self.users[i].state for i in self.order},
            "rating_sum": self.rating_sum, "rating_count": self.rating_count,
            "pending": self.pending, "injected": self.injected, "promoted": self.promoted,
            "recommender": self.recommender,
        }

    def shared_objects(self) -> dict:
        """Live objects that checkpoints refer to by name instead of copying (see the recorder)."""
        return {"catalog": self.catalog, "llm": self.llm, "embedder": self.embedder}

    def load_state(self, state: dict) -> None:
        self.round = state["round"]
        self.rng_np.bit_generator.state = state["rng"]
        for agent_id, agent_state in state["agents"].items():
            self.users[agent_id].state = agent_state
        self.rating_sum, self.rating_count = state["rating_sum"], state["rating_count"]
        self.pending, self.injected, self.promoted = state["pending"], state["injected"], state["promoted"]
        self.recommender = state["recommender"]

    def close(self) -> None:
        if not self._loop.is_closed():
            # libraries leave background tasks on the loop (litellm's logging worker): end them
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
        if self.memory is not None:
            self.memory.close()
