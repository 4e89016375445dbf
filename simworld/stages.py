"""The round as an open schedule of named stages.

A stage does one job: it reads the world and what earlier stages of the same round left in
the `Round`, and writes its own part. The world runs the stages in order and times each
one. A plug-in (a scenario's `stages:` section, the social layer, a user's own code) adds
a stage at a named place with `Schedule.insert(stage, after="apply")`; no other stage is
edited. A stage that keeps state between rounds gives it to the checkpoint through
`state_dict()` / `load_state(state)`.

Decide reads only the state at the start of the round; every stage after it applies changes
sequentially in agent-id order, so the same seed and the same LLM answers give the same run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, runtime_checkable

from simworld.events import EventBuilder

if TYPE_CHECKING:
    from simworld.agents.actions import Action
    from simworld.agents.observation import Observation
    from simworld.agents.user import UserAgent
    from simworld.memory import MemoryRecord
    from simworld.world import SimWorld


@dataclass
class Round:
    """What the stages of one round hand each other; built fresh every round."""

    number: int
    events: EventBuilder
    active: list["UserAgent"] = field(default_factory=list)
    pages: dict[int, tuple] = field(default_factory=dict)  # agent id -> pages of items
    recalled: dict[int, tuple[str, ...]] = field(default_factory=dict)  # agent id -> memory texts
    observations: list["Observation"] = field(default_factory=list)
    actions: list["Action"] = field(default_factory=list)  # in the order of `observations`
    memories: dict[int, list["MemoryRecord"]] = field(default_factory=dict)  # to write this round
    feedback: list[tuple[int, int, float]] = field(default_factory=list)  # (agent, item, rating)
    timings: dict[str, float] = field(default_factory=dict)  # stage name -> seconds
    extra: dict[str, Any] = field(default_factory=dict)  # plug-in stages' own hand-over space


@runtime_checkable
class Stage(Protocol):
    name: str

    def run(self, world: "SimWorld", rnd: Round) -> None: ...


@dataclass(frozen=True)
class FunctionStage:
    """A stage made of a plain function `fn(world, rnd)`."""

    name: str
    fn: Callable[["SimWorld", Round], None]

    def run(self, world: "SimWorld", rnd: Round) -> None:
        self.fn(world, rnd)


class Schedule:
    """The ordered stages of a round; names are unique."""

    def __init__(self, stages: Iterable[Stage] = ()):
        self._stages: list[Stage] = []
        for stage in stages:
            self.insert(stage)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._stages]

    def __iter__(self):
        return iter(self._stages)

    def __getitem__(self, name: str) -> Stage:
        for stage in self._stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage {name!r} in the round (stages: {', '.join(self.names)})")

    def insert(self, stage: Stage, *, before: str | None = None, after: str | None = None) -> None:
        """Add `stage` before or after a named stage, or at the end."""
        if stage.name in self.names:
            raise ValueError(f"the round already has a stage {stage.name!r}")
        if before is not None and after is not None:
            raise ValueError("give `before` or `after`, not both")
        anchor = before if before is not None else after
        if anchor is None:
            self._stages.append(stage)
            return
        at = self.names.index(self[anchor].name)
        self._stages.insert(at if before is not None else at + 1, stage)

    def remove(self, name: str) -> Stage:
        stage = self[name]
        self._stages.remove(stage)
        return stage

    def run(self, world: "SimWorld", rnd: Round) -> None:
        for stage in self._stages:
            started = time.perf_counter()
            stage.run(world, rnd)
            rnd.timings[stage.name] = time.perf_counter() - started

    def state_dict(self) -> dict[str, Any]:
        return {s.name: s.state_dict() for s in self._stages if hasattr(s, "state_dict")}

    def load_state(self, state: dict[str, Any]) -> None:
        for name, stage_state in state.items():
            self[name].load_state(stage_state)


# -- the built-in stages -------------------------------------------------------------------------


def activate(world: "SimWorld", rnd: Round) -> None:
    """Which agents act now (the activity model; the round's own random stream)."""
    rnd.active = world.activate(rnd.number)


def recommend(world: "SimWorld", rnd: Round) -> None:
    """One batched call of the recommender for all active agents, cut into pages."""
    rnd.pages = world.recommend([a.agent_id for a in rnd.active])


def recall(world: "SimWorld", rnd: Round) -> None:
    """Each active agent's memories most relevant to its first page, in one batched retrieval."""
    if world.memory is None or not rnd.active:
        return
    from simworld.world_memory import page_query

    rnd.recalled = world.memory.recall({a.agent_id: page_query(rnd.pages[a.agent_id]) for a in rnd.active},
                                       rnd.number)


def observe(world: "SimWorld", rnd: Round) -> None:
    means = world.item_means()  # the crowd's ratings as the round starts, one array for everyone
    rnd.observations = [world.observe(a, rnd.pages[a.agent_id], rnd.number, rnd.recalled.get(a.agent_id), means)
                        for a in rnd.active]


def decide(world: "SimWorld", rnd: Round) -> None:
    """Every active agent's policy decides (the world's executor says where: simworld/execution)."""
    rnd.actions = world.executor.decide(world, rnd.observations)


def apply(world: "SimWorld", rnd: Round) -> None:
    """Actions applied one agent at a time in id order: events, watches, ratings, memories."""
    for agent, action in sorted(zip(rnd.active, rnd.actions), key=lambda pair: pair[0].agent_id):
        world.apply_action(agent, action, rnd)
    world.end_round(rnd)


def remember(world: "SimWorld", rnd: Round) -> None:
    """The round's new memories, written in one batch."""
    if world.memory is not None and rnd.memories:
        world.memory.remember(rnd.memories)


def reflect(world: "SimWorld", rnd: Round) -> None:
    """Agents whose recent memories weigh enough reflect (LLM agents in parallel)."""
    if world.memory is not None and rnd.memories:
        world.reflect(sorted(rnd.memories), rnd)


def forget(world: "SimWorld", rnd: Round) -> None:
    """Consolidate repeats and forget old, unimportant, unused memories."""
    if world.memory is not None and rnd.memories:
        world.memory.maintain(sorted(rnd.memories), rnd.number)


def learn(world: "SimWorld", rnd: Round) -> None:
    """The recommender learns from the feedback gathered since its last update."""
    world.learn(rnd)


def default_stages() -> list[Stage]:
    return [FunctionStage(fn.__name__, fn) for fn in
            (activate, recommend, recall, observe, decide, apply, remember, reflect, forget, learn)]
