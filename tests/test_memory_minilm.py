"""Memory with the real embedder: all-MiniLM-L6-v2 loaded offline from its package."""

from __future__ import annotations

from simworld.embedding import MiniLMEmbedder
from simworld.memory import InProcessMemory, MemoryRecord, RetrievalConfig


def test_minilm_retrieval_is_semantic():
    embedder = MiniLMEmbedder()
    assert embedder.dim == 384
    store = InProcessMemory(embedder, RetrievalConfig(w_recency=0, w_importance=0, touch_on_retrieve=False))
    store.add_many([
        MemoryRecord(agent_id=1, text="I watched a romantic comedy set in Paris and liked it"),
        MemoryRecord(agent_id=1, text="I loved Star Wars: rebels fight the empire among the stars"),
        MemoryRecord(agent_id=1, text="A documentary about baking sourdough bread was boring"),
    ])
    (space, food) = store.retrieve_many(
        [(1, "science fiction film about outer space", 1), (1, "cooking and food", 1)], now=1)
    assert space[0].text.startswith("I loved Star Wars")
    assert food[0].text.startswith("A documentary about baking")
