"""One contract suite for every MemoryStore: in-process, chroma embedded, chroma server.

The server flavour uses SIMWORLD_CHROMA_SERVER when CI started a server, otherwise starts
a real `chroma run` on a free loopback port for the session and stops it by its pid.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from simworld.embedding import HashingEmbedder
from simworld.memory import (
    InProcessMemory, MemoryRecord, MemoryStore, RetrievalConfig, ScoredMemory,
)
from simworld.memory.testing import SERVER_ENV, chroma_cli, heartbeat, start_chroma_server

_names = itertools.count()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """URL of a real chroma server on 127.0.0.1: CI's (SIMWORLD_CHROMA_SERVER) or our own."""
    url = os.environ.get(SERVER_ENV)
    if url:
        if not heartbeat(url, timeout=5):
            pytest.fail(f"{SERVER_ENV}={url} is set but no chroma server answers there")
        yield url
        return
    if chroma_cli() is None:
        pytest.skip("the `chroma` command is not installed, and SIMWORLD_CHROMA_SERVER is not set")
    server = start_chroma_server(tmp_path_factory.mktemp("chroma-server") / "data")
    try:
        yield server.url
    finally:
        server.stop()


def make_store(kind: str, tmp_path, request, retrieval: RetrievalConfig | None = None):
    embedder = HashingEmbedder(dim=64)
    if kind == "inprocess":
        return InProcessMemory(embedder, retrieval)
    from simworld.memory import ChromaMemory

    if kind == "chroma":
        return ChromaMemory.persistent(tmp_path / "memory", embedder, retrieval=retrieval)
    url = request.getfixturevalue("chroma_server")
    return ChromaMemory.server(url, embedder, retrieval=retrieval,
                               collection=f"contract-{next(_names)}-{tmp_path.name[:40]}")


@pytest.fixture(params=["inprocess", "chroma", "chroma-server"])
def store_kind(request):
    return request.param


@pytest.fixture
def store(store_kind, tmp_path, request):
    s = make_store(store_kind, tmp_path, request)
    yield s
    s.close()


def obs(agent, text, importance=0.5, created=0, **kw):
    return MemoryRecord(agent_id=agent, text=text, importance=importance, created_round=created, **kw)


def test_is_a_memory_store(store):
    assert isinstance(store, MemoryStore)


def test_add_assigns_deterministic_ids_and_all_returns_in_order(store):
    first = store.add(obs("a", "watched Alien and loved it"))
    rest = store.add_many([obs("a", "watched Heat"), obs("b", "rated Up 4 stars"), obs("a", "read a post")])
    assert first == "a-0"
    assert rest == ["a-1", "b-0", "a-2"]
    got = store.all("a")
    assert [r.memory_id for r in got] == ["a-0", "a-1", "a-2"]
    assert [r.text for r in got] == ["watched Alien and loved it", "watched Heat", "read a post"]
    assert [r.seq for r in got] == [0, 1, 2]
    assert all(r.embedding is not None and r.embedding.shape == (64,) for r in got)
    assert got[0].last_access_round == 0 and got[0].access_count == 0
    assert store.count("a") == 3 and store.count() == 4
    assert store.agent_ids() == ["a", "b"]


def test_fields_round_trip(store):
    vec = HashingEmbedder(dim=64).embed(["custom vector"])[0]
    store.add(MemoryRecord(agent_id="7", text="insight text", kind="insight", importance=0.9,
                           created_round=3, last_access_round=5, access_count=2, embedding=vec,
                           extra={"item_id": 42, "genre": "drama", "liked": True, "score": 4.5}))
    (rec,) = store.all("7")
    assert (rec.kind, rec.importance, rec.created_round, rec.last_access_round, rec.access_count) == (
        "insight", 0.9, 3, 5, 2)
    assert rec.extra == {"item_id": 42, "genre": "drama", "liked": True, "score": 4.5}
    np.testing.assert_array_equal(rec.embedding, vec)


def test_int_agent_ids_become_strings(store):
    store.add(MemoryRecord(agent_id=5, text="hello"))
    assert [r.agent_id for r in store.all(5)] == ["5"]
    assert store.retrieve(5, "hello", k=1)[0].record.memory_id == "5-0"


def test_empty_agent(store):
    assert store.all("nobody") == []
    assert store.retrieve("nobody", "anything", k=3) == []
    assert store.retrieve_many([("nobody", "x", 2)], now=1) == [[]]
    assert store.forget("nobody", ["nobody-0"]) == 0


def test_k_larger_than_count(store):
    store.add_many([obs("a", "one"), obs("a", "two")])
    got = store.retrieve("a", "one", k=10)
    assert len(got) == 2
    assert all(isinstance(s, ScoredMemory) for s in got)


def test_agents_are_isolated(store):
    store.add_many([obs("a", "space opera battle"), obs("b", "space opera battle"), obs("b", "cooking show")])
    got = store.retrieve("a", "space opera", k=5)
    assert [s.memory_id for s in got] == ["a-0"]
    assert {s.record.agent_id for s in store.retrieve("b", "space", k=5)} == {"b"}
    store.forget("a", ["b-0"])  # another agent's id: nothing happens
    assert store.count("b") == 2


def test_forget(store):
    store.add_many([obs("a", f"memory {i}") for i in range(5)])
    assert store.forget("a", ["a-1", "a-3", "a-99"]) == 2
    assert [r.memory_id for r in store.all("a")] == ["a-0", "a-2", "a-4"]
    assert all(s.memory_id not in ("a-1", "a-3") for s in store.retrieve("a", "memory 1", k=5))
    assert store.add(obs("a", "new")) == "a-5"  # ids are never reused


def test_retrieve_ranks_by_relevance(store):
    store.add_many([obs("a", "cooking pasta at home"), obs("a", "a thrilling space battle film"),
                    obs("a", "gardening tips")])
    got = store.retrieve("a", "space battle", k=3, now=0)
    assert got[0].text == "a thrilling space battle film"
    assert got[0].relevance == 1.0
    assert [s.score for s in got] == sorted((s.score for s in got), reverse=True)
    for s in got:
        assert 0.0 <= s.recency <= 1.0 and 0.0 <= s.importance <= 1.0 and 0.0 <= s.relevance <= 1.0


def test_deterministic_order_on_ties(store):
    store.add_many([obs("a", "same text") for _ in range(6)])
    got = store.retrieve("a", "same text", k=4)
    assert [s.memory_id for s in got] == ["a-0", "a-1", "a-2", "a-3"]
    assert len({s.score for s in got}) == 1


def test_query_vector_equals_query_text(store):
    store.add_many([obs("a", "alpha beta"), obs("a", "gamma delta"), obs("a", "beta gamma")])
    vec = HashingEmbedder(dim=64).embed(["beta"])[0]
    store_kw = dict(k=3, now=0)
    by_vec = [s.memory_id for s in store.retrieve("a", vec, **store_kw)]
    by_text = [s.memory_id for s in store.retrieve("a", "beta", **store_kw)]
    assert by_vec == by_text


def test_retrieve_many_matches_single_calls_and_touches_after(store):
    store.add_many([obs("a", "red apple"), obs("a", "green pear"), obs("b", "blue sky"), obs("b", "red car")])
    requests = [("a", "red", 1), ("b", "red", 2), ("a", "pear", 1), ("c", "x", 3)]
    batched = store.retrieve_many(requests, now=2)
    assert [[s.memory_id for s in r] for r in batched] == [["a-0"], ["b-1", "b-0"], ["a-1"], []]
    # records show the statistics from before this call; afterwards they are touched
    assert batched[0][0].record.access_count == 0
    stats = {r.memory_id: (r.access_count, r.last_access_round) for r in store.all("a") + store.all("b")}
    assert stats == {"a-0": (1, 2), "a-1": (1, 2), "b-0": (1, 2), "b-1": (1, 2)}


def test_retrieve_many_embeds_queries_in_one_call(store_kind, tmp_path, request):
    s = make_store(store_kind, tmp_path, request)
    calls = []
    inner = s.embedder.embed

    def counting(texts):
        calls.append(len(texts))
        return inner(texts)

    s.embedder.embed = counting
    try:
        s.add_many([obs(a, f"{a} text {i}") for a in "abc" for i in range(3)])
        assert calls == [9]
        s.retrieve_many([(a, f"query {a}", 2) for a in "abcd"], now=1)
        assert calls == [9, 3]  # one batch; the empty agent d needs no embedding
    finally:
        s.close()


def test_default_k_from_config(store_kind, tmp_path, request):
    s = make_store(store_kind, tmp_path, request, RetrievalConfig(k=2))
    try:
        s.add_many([obs("a", f"m {i}") for i in range(5)])
        assert len(s.retrieve("a", "m")) == 2
        assert [len(r) for r in s.retrieve_many([("a", "m", None), ("a", "m", 4)], now=0)] == [2, 4]
    finally:
        s.close()


def test_bad_inputs(store):
    with pytest.raises(ValueError):
        store.add(MemoryRecord(agent_id="a", text="x", embedding=np.zeros(3, dtype=np.float32)))
    store.add(obs("a", "x"))
    with pytest.raises(ValueError):
        store.retrieve("a", np.zeros(3, dtype=np.float32), k=1)
    with pytest.raises(ValueError):
        store.add(MemoryRecord(agent_id="a", text="dup", memory_id="a-0"))


def test_caller_chosen_ids_are_kept_and_skipped(store):
    assert store.add(MemoryRecord(agent_id="a", text="named", memory_id="a-1")) == "a-1"
    assert store.add_many([obs("a", "auto"), obs("a", "auto2")]) == ["a-2", "a-3"]
