"""The plug-in guide's complete example (examples/my_plugins.py, docs/plugins.md) works: each
plug-in passes its protocol's contract suite where one exists, and all of them run together."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from examples.my_plugins import CountingMemory, GenreFan, LeastPopular, PopularCRS
from simworld.build import build_parts
from simworld.config import parse_scenario
from simworld.crs.testing import CRSContract
from simworld.embedding import HashingEmbedder
from simworld.memory.config import RetrievalConfig
from simworld.memory.records import MemoryRecord
from simworld.memory.store import MemoryStore
from simworld.recommenders.testing import RecommenderContract
from simworld.world import SimWorld


class TestLeastPopularContract(RecommenderContract):
    def make(self, context):
        return LeastPopular(LeastPopular.Config(), context)


class TestPopularCRSContract(CRSContract):
    def make(self, context):
        counts = context.history.group_by("item_id").len().sort(["len", "item_id"], descending=[True, False])
        return PopularCRS(counts["item_id"].to_list() + context.catalog.ids.tolist())


def test_the_memory_store_keeps_the_protocol_and_counts():
    store = CountingMemory(HashingEmbedder(dim=32), RetrievalConfig())
    assert isinstance(store, MemoryStore)
    store.add(MemoryRecord(agent_id=1, text="watched a great western", importance=0.8, created_round=1))
    assert store.retrieve(1, "western", k=1, now=1) and store.retrievals == 1


SCENARIO = """
name: plugins
seed: 4
rounds: 3
population: {size: 12}
activity: {model: constant, probability: 1.0}
recommender: {name: "examples.my_plugins:LeastPopular", page_size: 6, max_pages: 1}
stages: [{path: "examples.my_plugins:WatchCounter", after: apply}]
"""


def test_policy_recommender_and_stage_run_together():
    import yaml

    scenario = parse_scenario(yaml.safe_load(SCENARIO))
    parts = build_parts(scenario)
    fan = GenreFan()
    world = SimWorld(scenario, replace(parts, policy_for=lambda persona: fan))
    for _ in range(3):
        world.step()
    stage = world.schedule["watch_counter"]
    assert len(stage.counts) == 3 and sum(stage.counts) > 0
    assert isinstance(world.recommender, LeastPopular)
    decision = asyncio.run(fan.decide(world.observe(world.users[1], ((world.catalog.get(world.catalog.ids[0]),),), 9)))
    assert decision.meta.policy == "rule"
