"""SimWorld: a Mesa model whose step is one round, run as a schedule of named stages.

The stages (simworld/stages.py) name what happens; the logic lives in agents, policies,
recommenders and the memory layer. The world is complete when constructed: its parts
(catalog, population, recommender, policies, LLM stack, embedder, memory, random streams,
event loop) are built outside it (simworld/build.py) and handed in.

As a Mesa model it works with Mesa's own tools: users are registered in `self.agents`
(their `unique_id` is their agent id), `step()` runs a round, `running` turns False after
the scenario's last round, and `datacollector` holds per-round model figures, so
`mesa.batch_run(SimWorld, {"scenario": path, "seed": [1, 2], "recommender.name": [...]})`
sweeps scenarios (dotted keyword arguments override scenario fields).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mesa
import numpy as np
import polars as pl

from simworld.activity import ActivityModel
from simworld.agents.actions import Action, SearchAction, watches_of
from simworld.agents.observation import Observation
from simworld.agents.user import AgentState, UserAgent
from simworld.build import WorldParts, build_parts
from simworld.config import Scenario, load_scenario
from simworld.errors import SimworldError
from simworld.events import EventBuilder
from simworld.execution import LocalExecutor
from simworld.recommenders.base import INTERACTION_SCHEMA, empty_interactions
from simworld.stages import Round, Schedule, default_stages


@dataclass(frozen=True)
class RoundResult:
    round: int
    active: int
    events: pl.DataFrame
    wall_s: float
    timings: dict[str, float]  # stage name -> seconds


class SimWorld(mesa.Model):
    """Owns the agents, the recommender, the random streams and the round's schedule."""

    def __init__(self, scenario: Scenario | str | Path, parts: WorldParts | None = None, *,
                 run_id: str = "run", **settings: Any):
        if not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        scenario = scenario.with_settings(settings)
        super().__init__(seed=scenario.seed)
        parts = parts if parts is not None else build_parts(scenario, run_id)
        if parts.streams.seed != self._seed:
            raise ValueError(f"the parts were built for seed {parts.streams.seed}, the world has {self._seed}")
        self.scenario = scenario
        self.run_id = run_id
        self.streams = parts.streams
        self.loop = parts.loop
        self.catalog = parts.catalog
        self.recommender = parts.recommender
        self.llm = parts.llm
        self.embedder = parts.embedder
        self.memory = parts.memory
        self.executor = parts.executor if parts.executor is not None else LocalExecutor()
        self.round = 0  # rounds completed
        self._items_by_id = {item.item_id: item for item in self.catalog.items}  # one lookup per listed film
        genres = self.catalog.genres
        for persona in sorted(parts.personas, key=lambda p: p.agent_id):
            UserAgent(self, AgentState(persona=persona, taste=persona.taste_vector(genres)), parts.policy_for(persona))
        self.users: dict[int, UserAgent] = {a.agent_id: a for a in self.agents}  # lookup index of self.agents
        # the personas as built: a checkpoint stores only those edited since (see state_dict)
        self._built_personas = {a.agent_id: a.state.persona for a in self.agents}
        self.activity = ActivityModel(scenario.activity, [a.persona for a in self.agents])
        n = len(self.catalog)
        self.rating_sum = np.zeros(n)
        self.rating_count = np.zeros(n, dtype=np.int64)
        if parts.crowd is not None:  # the data set's training-period ratings (grounded populations)
            rows = self.catalog.rows(parts.crowd["item_id"].to_list())
            self.rating_sum[rows] = parts.crowd["total"].to_numpy()
            self.rating_count[rows] = parts.crowd["n"].to_numpy()
        self.taste = parts.taste
        self.pending: list[pl.DataFrame] = []  # feedback not yet given to the recommender
        self.injected: dict[int, list[str]] = {}  # agent id -> texts injected for the next round
        self.promoted: dict[int, list[int]] = {}  # agent id -> item ids pinned atop the next page (ads)
        history = parts.history if parts.history is not None else empty_interactions()
        for user, item, rating in history.select("user_id", "item_id", "rating").iter_rows():
            if user in self.users and item in self.catalog:
                self.users[user].state.watched[item] = rating
        self.recommender.fit(history)
        self.schedule = Schedule(default_stages())
        for placed in parts.stages:
            try:
                self.schedule.insert(placed.stage, before=placed.before, after=placed.after)
            except (KeyError, ValueError) as exc:
                raise SimworldError(f"stage {placed.stage.name!r}: {exc.args[0]}") from None
        self._last: RoundResult | None = None
        self.datacollector = mesa.DataCollector(model_reporters={
            "round": lambda m: m.round,
            "active": lambda m: m._last.active if m._last else 0,
            "watches": lambda m: _count(m._last, "watch"),
            "mean_rating": lambda m: _mean_rating(m._last),
        })
        self.running = self.round < scenario.rounds

    # -- the round --------------------------------------------------------------------------
    def step(self) -> None:
        """Mesa's step: one round (the Simulation calls `run_round` to get its result)."""
        self.run_round()

    def run_round(self) -> RoundResult:
        r = self.round + 1
        if self.llm is not None:
            self.llm.set_round(r)
        rnd = Round(number=r, events=EventBuilder(self.run_id, r))
        self.schedule.run(self, rnd)
        self.round = self.steps = r
        self._last = RoundResult(r, len(rnd.active), rnd.events.frame(), sum(rnd.timings.values()), rnd.timings)
        self.datacollector.collect(self)
        self.running = self.round < self.scenario.rounds
        return self._last

    def activate(self, round_no: int) -> list[UserAgent]:
        agents = list(self.agents)
        idle = np.array([a.state.idle_rounds for a in agents], dtype=np.float64)
        chosen = self.activity.select(idle, self.streams.generator("activation", round_no))
        return [agents[k] for k in chosen]

    def recommend(self, agent_ids: list[int]) -> dict[int, tuple]:
        """Each agent's ranked list cut into at most `max_pages` pages; ads pinned on top."""
        if not agent_ids:
            return {}
        spec = self.scenario.recommender
        k = spec.page_size * spec.max_pages
        # films watched since the recommender last learned are not yet in its seen sets
        unlearned = self._unlearned_watches()
        extra = max((len(unlearned.get(a, ())) for a in agent_ids), default=0)
        ranked = self.recommender.recommend(agent_ids, k + extra, exclude_seen=True)
        out = {}
        catalog, size, item_of = self.catalog, spec.page_size, self._items_by_id
        for agent_id, items in zip(agent_ids, ranked):
            promoted, unseen = self.promoted.get(agent_id), unlearned.get(agent_id)
            if promoted or unseen:
                pinned = [i for i in promoted or () if i in catalog]
                skip = set(pinned) | (unseen or set())
                items = pinned + [i for i in items if i not in skip]
            known = [item for i in items[:k] if (item := item_of.get(i)) is not None]
            out[agent_id] = tuple(tuple(known[s:s + size]) for s in range(0, len(known), size))
        return out

    def _unlearned_watches(self) -> dict[int, set[int]]:
        seen: dict[int, set[int]] = {}
        for frame in self.pending:
            for user, item in frame.select("user_id", "item_id").iter_rows():
                seen.setdefault(user, set()).add(item)
        return seen

    def observe(self, agent: UserAgent, pages: tuple, round_no: int,
                memories: tuple[str, ...] | None = None, item_means: np.ndarray | None = None) -> Observation:
        """What the agent sees; `item_means` (this round's `item_means()`) is shared by a round's observations."""
        state = agent.state
        return Observation(
            agent_id=agent.agent_id, round=round_no, persona=state.persona, taste=state.taste.copy(),
            pages=pages, watched=frozenset(state.watched), catalog=self.catalog,
            item_mean_rating=self.item_mean_rating, search=self.catalog.search,
            rng=self.streams.generator("agent", round_no, agent.agent_id),
            memories=memories if memories is not None else tuple(state.recent),
            extra={"injected": tuple(self.injected.get(agent.agent_id, ()))},
            user_taste=self.taste.view(state.watched) if self.taste is not None else None,
            item_means=item_means if item_means is not None else self.item_means(),
        )

    def gather(self, coroutines: list) -> list:
        """Run the coroutines concurrently on the run's event loop; results in order."""
        return self.loop.gather(coroutines)

    def apply_action(self, agent: UserAgent, action: Action, rnd: Round) -> None:
        """One agent's action: its event rows, its watches and ratings, its new memories."""
        from simworld.world_memory import search_memory, watch_memory

        state, catalog = agent.state, self.catalog
        rnd.events.add_action(agent.agent_id, action)
        state.rounds_active += 1
        state.idle_rounds = 0
        memories = rnd.memories.setdefault(agent.agent_id, []) if self.memory is not None else None
        if memories is not None and isinstance(action, SearchAction):
            memories.append(search_memory(agent.agent_id, action.query, rnd.number))
        drift = self.scenario.policy.rule.taste_drift
        for watch in watches_of(action):
            if watch.item_id not in catalog:
                continue  # a policy may only name catalog items; LLM output is validated upstream
            row = catalog.row(watch.item_id)
            item = catalog.items[row]
            genres = catalog.genre_matrix[row]
            if memories is not None:
                memories.append(watch_memory(agent.agent_id, item, watch.rating, watch.feeling, rnd.number,
                                             state.taste, genres, watch.importance))
            state.watched[watch.item_id] = watch.rating
            state.recent.append(f"round {rnd.number}: watched {item.label}, rated {watch.rating:g}: {watch.feeling}")
            self.rating_sum[row] += watch.rating
            self.rating_count[row] += 1
            agent.drift_taste(genres, watch.rating, drift)
            rnd.feedback.append((agent.agent_id, watch.item_id, watch.rating))
        if memories is not None and not memories:
            del rnd.memories[agent.agent_id]

    def end_round(self, rnd: Round) -> None:
        """Bookkeeping once every action is applied: idleness, consumed interventions, feedback."""
        active = {a.agent_id for a in rnd.active}
        for agent in self.agents:
            if agent.agent_id not in active:
                agent.state.idle_rounds += 1
        self.injected, self.promoted = {}, {}
        users, items, ratings = (list(col) for col in zip(*rnd.feedback)) if rnd.feedback else ([], [], [])
        self.pending.append(pl.DataFrame({"user_id": users, "item_id": items, "rating": ratings,
                                          "round": [rnd.number] * len(users)}, schema=INTERACTION_SCHEMA))

    def reflect(self, agent_ids: list[int], rnd: Round) -> None:
        """Agents whose recent memories weigh enough reflect: LLM agents write insights (in
        parallel), rule agents' tastes move; each reflection is a memory and an event row."""
        from simworld.llm.types import LLMOutputError
        from simworld.world_memory import Reflection

        due = self.memory.due_for_reflection(agent_ids)

        async def one(agent_id: int) -> tuple[Reflection, str]:
            agent = self.users[agent_id]
            writer = getattr(agent.policy, "reflect", None)
            if writer is not None:
                try:
                    texts = [r.text for r in self.memory.recent(agent_id)]
                    insights = await writer(agent.persona, texts, rnd.number)
                    return Reflection(agent_id, tuple(insights)), agent.policy.name
                except LLMOutputError:
                    return self.memory.rule_reflection(agent_id, agent.state.taste, rnd.number), "fallback"
            return self.memory.rule_reflection(agent_id, agent.state.taste, rnd.number), "rule"

        done = self.gather([one(a) for a in due])
        for reflection, policy in done:
            if reflection.taste is not None:
                self.users[reflection.agent_id].state.taste = reflection.taste
            for text in reflection.insights:
                rnd.events.add(reflection.agent_id, "reflect", None, text=text, policy=policy)
        if done:
            self.memory.write_reflections([r for r, _ in done], rnd.number)

    def learn(self, rnd: Round) -> None:
        if rnd.number % self.scenario.recommender.retrain_every:
            return
        new = pl.concat(self.pending) if self.pending else empty_interactions()
        self.pending = []
        self.recommender.update(new)

    # -- reading the world ------------------------------------------------------------------
    def item_mean_rating(self, item_id: int) -> float | None:
        row = self.catalog.row(item_id)
        n = self.rating_count[row]
        return float(self.rating_sum[row] / n) if n else None

    def item_means(self) -> np.ndarray:
        """`item_mean_rating` of every catalog row at once (NaN where nobody rated yet)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.rating_count > 0, self.rating_sum / self.rating_count, np.nan)

    def persona_frame(self) -> pl.DataFrame:
        rows = []
        for agent in self.agents:
            p = agent.persona
            rows.append({"agent_id": agent.agent_id, "name": p.name, "age": p.age, "occupation": p.occupation,
                         "traits": ", ".join(p.traits), "top_genres": ", ".join(p.top_genres(3)),
                         "activity": p.activity, "diversity": p.diversity, "conformity": p.conformity,
                         "curiosity": p.curiosity, "rating_bias": p.rating_bias, "source": p.source,
                         "notes": p.notes, "description": p.describe(),
                         "policy": getattr(agent.policy, "name", "custom")})
        return pl.DataFrame(rows)

    def agent_snapshot(self) -> pl.DataFrame:
        """Each agent's taste now (for the population map), with its dominant genre."""
        genres = np.array([*self.catalog.genres, "none"], dtype=object)
        agents = list(self.agents)
        tastes = np.stack([a.state.taste for a in agents]) if agents else np.zeros((0, len(genres) - 1))
        dominant = np.where(tastes.any(axis=1), np.argmax(tastes, axis=1), len(genres) - 1)
        return pl.DataFrame({
            "round": np.full(len(agents), self.round, dtype=np.int64),
            "agent_id": np.array([a.agent_id for a in agents], dtype=np.int64),
            "dominant_genre": pl.Series(genres[dominant].tolist(), dtype=pl.String),
            "taste": pl.Series(tastes.astype(np.float32)).cast(pl.List(pl.Float32)),
            "watched": np.array([len(a.state.watched) for a in agents], dtype=np.int64),
            "rounds_active": np.array([a.state.rounds_active for a in agents], dtype=np.int64),
        })

    # -- researcher interventions (applied at the start of the next round) -------------------
    def edit_persona(self, agent_id: int, **changes: Any) -> None:
        """Change who an agent is. A new `genre_taste` resets the taste vector the choice model
        matches films with (it drifts from there again)."""
        agent = self.users[agent_id]
        agent.state.persona = agent.state.persona.edited(**changes)
        if "genre_taste" in changes:
            agent.state.taste = agent.state.persona.taste_vector(self.catalog.genres)

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
            "agents": self._agent_table(),
            "rating_sum": self.rating_sum, "rating_count": self.rating_count,
            "pending": self.pending, "injected": self.injected, "promoted": self.promoted,
            "recommender": self.recommender,
            "stages": self.schedule.state_dict(),
        }

    def shared_objects(self) -> dict:
        """Live objects that checkpoints refer to by name instead of copying (see the recorder)."""
        return {"catalog": self.catalog, "llm": self.llm, "embedder": self.embedder, "streams": self.streams,
                "loop": self.loop}

    def _agent_table(self) -> dict[str, Any]:
        """The agents' states as a few arrays and lists, quick to pickle for 10,000 agents; a
        persona is stored only when it was edited (the others are rebuilt from the scenario)."""
        states = [a.state for a in self.agents]
        tastes = [s.taste for s in states]
        uniform = bool(tastes) and all(t.shape == tastes[0].shape and t.dtype == tastes[0].dtype for t in tastes)
        return {
            "ids": np.array([a.agent_id for a in self.agents], dtype=np.int64),
            "taste": np.stack(tastes) if uniform else tastes,
            "idle_rounds": np.array([s.idle_rounds for s in states], dtype=np.int64),
            "rounds_active": np.array([s.rounds_active for s in states], dtype=np.int64),
            "watched": [s.watched for s in states],
            "recent": [(list(s.recent), s.recent.maxlen) for s in states],
            "personas": {a.agent_id: a.state.persona for a in self.agents
                         if a.state.persona is not self._built_personas[a.agent_id]},
        }

    def _load_agent_table(self, table: dict[str, Any]) -> None:
        for k, agent_id in enumerate(table["ids"].tolist()):
            recent, maxlen = table["recent"][k]
            self.users[agent_id].state = AgentState(
                persona=table["personas"].get(agent_id, self._built_personas[agent_id]),
                taste=np.array(table["taste"][k]), watched=table["watched"][k],
                idle_rounds=int(table["idle_rounds"][k]), rounds_active=int(table["rounds_active"][k]),
                recent=deque(recent, maxlen=maxlen))

    def load_state(self, state: dict) -> None:
        self.round = self.steps = state["round"]
        if "ids" in state["agents"]:
            self._load_agent_table(state["agents"])
        else:  # a checkpoint of an older version: agent id -> AgentState
            for agent_id, agent_state in state["agents"].items():
                self.users[agent_id].state = agent_state
        self.rating_sum, self.rating_count = state["rating_sum"], state["rating_count"]
        self.pending, self.injected, self.promoted = state["pending"], state["injected"], state["promoted"]
        self.recommender = state["recommender"]
        self.schedule.load_state(state["stages"])
        self.running = self.round < self.scenario.rounds

    def close(self) -> None:
        self.executor.close()
        self.loop.close()
        if self.memory is not None:
            self.memory.close()


def _count(result: RoundResult | None, action: str) -> int:
    return 0 if result is None else int((result.events["action"] == action).sum())


def _mean_rating(result: RoundResult | None) -> float | None:
    if result is None:
        return None
    ratings = result.events.filter(pl.col("action") == "watch")["rating"]
    return float(ratings.mean()) if ratings.len() else None
