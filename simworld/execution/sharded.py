"""The driver's side of deciding in workers (worker processes or Ray actors).

The driver keeps the world, the recommender, memory writes and the round barrier: every
round it sends each worker its agents' observations, waits for all of them (on the run's
event loop, so the driver's own LLM work, such as chats, goes on meanwhile) and puts the
actions back in the order of the observations. Deciding has no side effect but LLM calls,
whose answers land in the shared response cache, so a worker that dies mid-round is started
again and asked again: answers it had paid for are hits then, reported as the paid calls
they were (the cache's journal, as on resume), so the ledger is what an uninterrupted run
writes. A worker that dies twice in a round stops the run at the last complete round.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from simworld.agents.actions import Action
from simworld.agents.observation import Observation
from simworld.config import ExecutionSpec
from simworld.errors import SimworldError
from simworld.execution.shards import assign_shards, plan_shards, social_graph
from simworld.execution.wire import Reply, Request, WorkerSetup, encode_observations, unpack_error

if TYPE_CHECKING:
    from simworld.world import SimWorld

ATTEMPTS = 2  # a worker may die once in a round; the second death stops the run


class WorkerDied(Exception):
    """The worker's process (or actor) is gone."""


class Host(Protocol):
    """One worker: a process or a Ray actor holding some shards' policies."""

    pid: int | None

    def wait_ready(self) -> None: ...

    async def ask(self, request: Request) -> Reply: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...


class ThreadedHost:
    """What every host does alike: it is launched when made, a blocking `_call` runs in a
    thread so the driver's event loop goes on, and a restart is a close and a new launch."""

    def __init__(self, setup: WorkerSetup, index: int):
        self.setup, self.index = setup, index
        self.pid: int | None = None
        self._launch()

    def _launch(self) -> None:
        raise NotImplementedError

    def _call(self, request: Request) -> Reply:
        raise NotImplementedError

    def wait_ready(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    async def ask(self, request: Request) -> Reply:
        return await asyncio.to_thread(self._call, request)

    def restart(self) -> None:
        self.close()
        self._launch()
        self.wait_ready()


class ShardedExecutor:
    """Splits the agents into shards and the shards over `spec.workers` hosts (made by
    `host_class`, started on the first round: they need the world's policies and graph)."""

    backend = "sharded"

    def __init__(self, spec: ExecutionSpec, run_id: str):
        self.spec, self.run_id = spec, run_id
        self.shards: list[list[int]] = []
        self.hosts: list[Host] = []
        self.host_of: dict[int, int] = {}  # agent id -> host index
        self.known: list[dict] = []  # per host: agent id -> the persona object it holds
        self._setup_personas: list[dict] = []  # per host: the personas it starts with (again after a restart)
        self.restarts = 0  # hosts started again after dying

    host_class: Callable[[WorkerSetup, int], Host]  # set by each backend

    def new_hosts(self, setups: list[WorkerSetup]) -> list[Host]:
        """One host per setup, started side by side, then waited for; if one fails, all end."""
        hosts = [self.host_class(setup, i) for i, setup in enumerate(setups)]
        try:
            for host in hosts:
                host.wait_ready()
        except BaseException:
            for host in hosts:
                host.close()
            raise
        return hosts

    # -- the executor
    def decide(self, world: "SimWorld", observations: Sequence[Observation]) -> list[Action]:
        if not observations:
            return []
        if not self.hosts:
            self.start(world)
        groups: dict[int, list[int]] = {}
        for pos, obs in enumerate(observations):
            groups.setdefault(self.host_of[obs.agent_id], []).append(pos)
        order = sorted(groups)
        replies = world.gather([self._ask(world, h, [observations[p] for p in groups[h]], observations[0].round)
                                for h in order])
        if world.llm is not None:  # every call once in the ledger, failed rounds' calls included
            for reply in replies:
                world.llm.add_rows(reply.rows)
        for reply in replies:
            if reply.error is not None:
                raise unpack_error(reply.error)
        actions: list[Action | None] = [None] * len(observations)
        for h, reply in zip(order, replies, strict=True):
            for pos, action in zip(groups[h], reply.actions or (), strict=True):  # one action each
                actions[pos] = action
        return actions  # type: ignore[return-value]

    async def _ask(self, world: "SimWorld", h: int, observations: list[Observation], round_no: int) -> Reply:
        resumed = _resumed_from(world)
        for attempt in range(ATTEMPTS):
            known = self.known[h]
            request = Request(round=round_no, observations=encode_observations(world, observations, known),
                              rating_sum=world.rating_sum, rating_count=world.rating_count,
                              # asked again: answers this run paid for in this round in the dead
                              # worker are reported as paid (CachedModel's journal)
                              resumed_from=resumed if attempt == 0 else round_no - 1)
            try:
                reply = await self.hosts[h].ask(request)
            except WorkerDied as exc:
                died = exc
                self.restarts += 1
                await asyncio.to_thread(self.hosts[h].restart)
                self.known[h] = dict(self._setup_personas[h])
                continue
            known.update({o.agent_id: o.persona for o in observations})
            return reply
        raise SimworldError(f"{self.backend} worker {h} died twice in round {round_no} ({died}); the run keeps "
                            f"its {round_no - 1} complete rounds: go on with `simworld resume` on its run folder")

    def start(self, world: "SimWorld") -> None:
        agents = sorted(world.users)
        graph = social_graph(world)
        self.shards = plan_shards(agents, self.spec.shard_size, graph, seed=world.scenario.seed)
        owned = assign_shards(self.shards, self.spec.workers)
        llm_ids, voice_ids = policy_kinds(world)
        cache_dir = _cache_dir(world)
        setups = []
        for w, shard_indices in enumerate(owned):
            ids = sorted(a for i in shard_indices for a in self.shards[i])
            for a in ids:
                self.host_of[a] = w
            setups.append(WorkerSetup(
                scenario=world.scenario, run_id=self.run_id, catalog=world.catalog,
                personas=[world.users[a].persona for a in ids], llm_ids=frozenset(llm_ids & set(ids)),
                voice_ids=frozenset(voice_ids & set(ids)), taste=world.taste, cache_dir=cache_dir,
                llm_share=len(owned)))
        self._setup_personas = [{p.agent_id: p for p in s.personas} for s in setups]
        self.known = [dict(p) for p in self._setup_personas]
        self.hosts = self.new_hosts(setups)

    @property
    def pids(self) -> list[int | None]:
        """The workers' process ids (tests kill one to check that it is started again)."""
        return [h.pid for h in self.hosts]

    def close(self) -> None:
        hosts, self.hosts = self.hosts, []
        for host in hosts:
            host.close()


def policy_kinds(world: "SimWorld") -> tuple[set[int], set[int]]:
    """The agents deciding by LLM and those the LLM voices; a policy a worker cannot rebuild
    from the scenario (a user's own) is refused with one clear error."""
    from simworld.agents.llm_policy import LLMPolicy, VoicePolicy
    from simworld.agents.rule_policy import RulePolicy

    llm_ids, voice_ids = set(), set()
    for agent_id in sorted(world.users):
        kind = type(world.users[agent_id].policy)
        if kind is LLMPolicy:
            llm_ids.add(agent_id)
        elif kind is VoicePolicy:
            voice_ids.add(agent_id)
        elif kind is not RulePolicy:
            raise SimworldError(f"agent {agent_id} decides with {kind.__name__}, which workers cannot build from "
                                f"the scenario (they build rule, llm and hybrid policies): run it with "
                                f"execution.backend local")
    return llm_ids, voice_ids


def _cache_dir(world: "SimWorld") -> str | None:
    from simworld.llm import CachedModel

    cache = world.llm.find(CachedModel) if world.llm is not None else None
    return str(cache.cache.path.parent) if cache is not None else None


def _resumed_from(world: "SimWorld") -> int | None:
    from simworld.llm import CachedModel

    cache = world.llm.find(CachedModel) if world.llm is not None else None
    return cache.resumed_from if cache is not None else None
