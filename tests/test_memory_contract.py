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
    ChromaMemory, InProcessMemory, MemoryConfig, MemoryDelta, MemoryPipeline, MemoryRecord,
    MemoryStore, RetrievalConfig, ScoredMemory,
)
from simworld.memory.testing import SERVER_ENV, chroma_cli, heartbeat, start_chroma_server

_names = itertools.count()
A, B, C, D = 1, 2, 3, 4  # agent ids


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


class Opener:
    """Opens a store of one backend, and opens it again as a new process would."""

    def __init__(self, kind: str, tmp_path, request, retrieval: RetrievalConfig | None = None):
        self.kind, self.tmp_path, self.retrieval = kind, tmp_path, retrieval
        self.url = request.getfixturevalue("chroma_server") if kind == "chroma-server" else None
        self.collection = f"contract-{next(_names)}-{tmp_path.name[:40]}"

    def open(self) -> MemoryStore:
        embedder = HashingEmbedder(dim=64)
        if self.kind == "inprocess":
            return InProcessMemory(embedder, self.retrieval)
        if self.kind == "chroma":
            from chromadb.api.client import SharedSystemClient

            SharedSystemClient.clear_system_cache()  # read the folder again
            return ChromaMemory.persistent(self.tmp_path / "memory", embedder, retrieval=self.retrieval)
        return ChromaMemory.server(self.url, embedder, retrieval=self.retrieval, collection=self.collection)


def make_store(kind: str, tmp_path, request, retrieval: RetrievalConfig | None = None):
    return Opener(kind, tmp_path, request, retrieval).open()


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
    first = store.add(obs(A, "watched Alien and loved it"))
    rest = store.add_many([obs(A, "watched Heat"), obs(B, "rated Up 4 stars"), obs(A, "read a post")])
    assert first == "1-0"
    assert rest == ["1-1", "2-0", "1-2"]
    got = store.all(A)
    assert [r.memory_id for r in got] == ["1-0", "1-1", "1-2"]
    assert [r.text for r in got] == ["watched Alien and loved it", "watched Heat", "read a post"]
    assert [r.seq for r in got] == [0, 1, 2]
    assert all(r.agent_id == A and type(r.agent_id) is int for r in got)
    assert all(r.embedding is not None and r.embedding.shape == (64,) for r in got)
    assert got[0].last_access_round == 0 and got[0].access_count == 0
    assert store.count(A) == 3 and store.count() == 4
    assert store.agent_ids() == [A, B]


def test_fields_round_trip(store):
    vec = HashingEmbedder(dim=64).embed(["custom vector"])[0]
    store.add(MemoryRecord(agent_id=7, text="insight text", kind="insight", importance=0.9,
                           created_round=3, last_access_round=5, access_count=2, embedding=vec,
                           extra={"item_id": 42, "genre": "drama", "liked": True, "score": 4.5}))
    (rec,) = store.all(7)
    assert (rec.kind, rec.importance, rec.created_round, rec.last_access_round, rec.access_count) == (
        "insight", 0.9, 3, 5, 2)
    assert rec.extra == {"item_id": 42, "genre": "drama", "liked": True, "score": 4.5}
    np.testing.assert_array_equal(rec.embedding, vec)


def test_agent_ids_are_ints(store):
    store.add(MemoryRecord(agent_id=np.int64(5), text="hello"))
    (rec,) = store.all(5)
    assert type(rec.agent_id) is int and rec.memory_id == "5-0"
    for wrong in ("5", 5.0, True):
        with pytest.raises(TypeError, match="agent ids are ints"):
            MemoryRecord(agent_id=wrong, text="x")
        with pytest.raises(TypeError):
            store.retrieve(wrong, "hello", k=1)
        with pytest.raises(TypeError):
            store.all(wrong)


def test_empty_agent(store):
    assert store.all(99) == []
    assert store.retrieve(99, "anything", k=3) == []
    assert store.retrieve_many([(99, "x", 2)], now=1) == [[]]
    assert store.forget(99, ["99-0"]) == 0


def test_k_larger_than_count(store):
    store.add_many([obs(A, "one"), obs(A, "two")])
    got = store.retrieve(A, "one", k=10)
    assert len(got) == 2
    assert all(isinstance(s, ScoredMemory) for s in got)


def test_agents_are_isolated(store):
    store.add_many([obs(A, "space opera battle"), obs(B, "space opera battle"), obs(B, "cooking show")])
    got = store.retrieve(A, "space opera", k=5)
    assert [s.memory_id for s in got] == ["1-0"]
    assert {s.record.agent_id for s in store.retrieve(B, "space", k=5)} == {B}
    store.forget(A, ["2-0"])  # another agent's id: nothing happens
    assert store.count(B) == 2


def test_forget(store):
    store.add_many([obs(A, f"memory {i}") for i in range(5)])
    assert store.forget(A, ["1-1", "1-3", "1-99"]) == 2
    assert [r.memory_id for r in store.all(A)] == ["1-0", "1-2", "1-4"]
    assert all(s.memory_id not in ("1-1", "1-3") for s in store.retrieve(A, "memory 1", k=5))
    assert store.add(obs(A, "new")) == "1-5"  # ids are never reused
    store.forget(A, ["1-5"])
    assert store.add(obs(A, "newer")) == "1-6"  # not even the latest one's


def test_retrieve_ranks_by_relevance(store):
    store.add_many([obs(A, "cooking pasta at home"), obs(A, "a thrilling space battle film"),
                    obs(A, "gardening tips")])
    got = store.retrieve(A, "space battle", k=3, now=0)
    assert got[0].text == "a thrilling space battle film"
    assert got[0].relevance == 1.0
    assert [s.score for s in got] == sorted((s.score for s in got), reverse=True)
    for s in got:
        assert 0.0 <= s.recency <= 1.0 and 0.0 <= s.importance <= 1.0 and 0.0 <= s.relevance <= 1.0


def test_deterministic_order_on_ties(store):
    store.add_many([obs(A, "same text") for _ in range(6)])
    got = store.retrieve(A, "same text", k=4)
    assert [s.memory_id for s in got] == ["1-0", "1-1", "1-2", "1-3"]
    assert len({s.score for s in got}) == 1


def test_query_vector_equals_query_text(store):
    store.add_many([obs(A, "alpha beta"), obs(A, "gamma delta"), obs(A, "beta gamma")])
    vec = HashingEmbedder(dim=64).embed(["beta"])[0]
    store_kw = dict(k=3, now=0)
    by_vec = [s.memory_id for s in store.retrieve(A, vec, **store_kw)]
    by_text = [s.memory_id for s in store.retrieve(A, "beta", **store_kw)]
    assert by_vec == by_text


def test_retrieve_many_matches_single_calls_and_touches_after(store):
    store.add_many([obs(A, "red apple"), obs(A, "green pear"), obs(B, "blue sky"), obs(B, "red car")])
    requests = [(A, "red", 1), (B, "red", 2), (A, "pear", 1), (C, "x", 3)]
    batched = store.retrieve_many(requests, now=2)
    assert [[s.memory_id for s in r] for r in batched] == [["1-0"], ["2-1", "2-0"], ["1-1"], []]
    # records show the statistics from before this call; afterwards they are touched
    assert batched[0][0].record.access_count == 0
    stats = {r.memory_id: (r.access_count, r.last_access_round) for r in store.all(A) + store.all(B)}
    assert stats == {"1-0": (1, 2), "1-1": (1, 2), "2-0": (1, 2), "2-1": (1, 2)}


def test_retrieve_without_touch_has_no_side_effect(store):
    store.add_many([obs(A, "red apple"), obs(A, "green pear")])
    store.commit()
    before = [(r.access_count, r.last_access_round) for r in store.all(A)]
    pending = store.pending_changes()
    assert store.retrieve(A, "red", k=2, now=5, touch=False)
    assert store.retrieve_many([(A, "pear", 1)], now=6, touch=False)
    assert [(r.access_count, r.last_access_round) for r in store.all(A)] == before
    assert store.pending_changes().touched == pending.touched == ()
    assert store.retrieval.touch_on_retrieve  # the store's settings were never changed
    store.retrieve(A, "red", k=1, now=7, touch=True)
    assert store.all(A)[0].access_count == 1


def test_retrieve_many_embeds_queries_in_one_call(store_kind, tmp_path, request):
    s = make_store(store_kind, tmp_path, request)
    calls = []
    inner = s.embedder.embed

    def counting(texts):
        calls.append(len(texts))
        return inner(texts)

    s.embedder.embed = counting
    try:
        s.add_many([obs(a, f"{a} text {i}") for a in (A, B, C) for i in range(3)])
        assert calls == [9]
        s.retrieve_many([(a, f"query {a}", 2) for a in (A, B, C, D)], now=1)
        assert calls == [9, 3]  # one batch; the empty agent D needs no embedding
    finally:
        s.close()


def test_default_k_from_config(store_kind, tmp_path, request):
    s = make_store(store_kind, tmp_path, request, RetrievalConfig(k=2))
    try:
        s.add_many([obs(A, f"m {i}") for i in range(5)])
        assert len(s.retrieve(A, "m")) == 2
        assert [len(r) for r in s.retrieve_many([(A, "m", None), (A, "m", 4)], now=0)] == [2, 4]
    finally:
        s.close()


def test_bad_inputs(store):
    with pytest.raises(ValueError):
        store.add(MemoryRecord(agent_id=A, text="x", embedding=np.zeros(3, dtype=np.float32)))
    store.add(obs(A, "x"))
    with pytest.raises(ValueError):
        store.retrieve(A, np.zeros(3, dtype=np.float32), k=1)
    with pytest.raises(ValueError):
        store.add(MemoryRecord(agent_id=A, text="dup", memory_id="1-0"))


def test_caller_chosen_ids_are_kept_and_skipped(store):
    assert store.add(MemoryRecord(agent_id=A, text="named", memory_id="1-1")) == "1-1"
    assert store.add_many([obs(A, "auto"), obs(A, "auto2")]) == ["1-2", "1-3"]


def test_a_record_keeps_its_seq_among_older_memories(store):
    store.add_many([obs(A, f"m {i}") for i in range(4)])
    store.forget(A, ["1-1"])
    assert store.add(MemoryRecord(agent_id=A, text="back in place", memory_id="1-1", seq=1)) == "1-1"
    assert [(r.memory_id, r.seq) for r in store.all(A)] == [("1-0", 0), ("1-1", 1), ("1-2", 2), ("1-3", 3)]
    assert store.all(A)[1].text == "back in place"
    with pytest.raises(ValueError, match="seq 2"):
        store.add(MemoryRecord(agent_id=A, text="taken", memory_id="x", seq=2))
    assert store.add(obs(A, "next")) == "1-4"


# -- the commit point: pending_changes, commit, restore ----------------------------------

CONFIG = MemoryConfig(backend="inprocess", embedder="hashing", consolidation_similarity=0.95,
                      forget_after_rounds=2, forget_importance_below=0.3, forget_access_below=1)


def committed_round(s: MemoryStore) -> None:
    """Round 1 of an agent's life: memories written, then committed."""
    s.add_many([obs(A, "watched alien and loved it", 0.6, created=1), obs(A, "a dull advert", 0.1, created=1),
                obs(A, "searched for space films", 0.3, created=1), obs(B, "watched heat", 0.7, created=1),
                obs(B, "a dull advert", 0.1, created=1), obs(C, "rated up 4 stars", 0.5, created=1)])
    s.commit()


def round_changes(s: MemoryStore, now: int) -> None:
    """What a round does to memory: retrieval touches, new memories, consolidation of
    repeats (some of them the agent's latest memories), forgetting."""
    s.retrieve_many([(A, "space films", 2), (B, "heat", 1)], now=now)
    s.add_many([obs(A, "watched alien and loved it", 0.7, created=now), obs(B, f"round {now} memory", 0.4, created=now),
                obs(C, "rated up 4 stars", 0.5, created=now), obs(D, f"first memory in round {now}", 0.9, created=now)])
    MemoryPipeline(s, CONFIG).maintain([A, B, C, D], now)


def state(s: MemoryStore) -> list[tuple]:
    """Every field of every memory of agents A-D (embeddings byte for byte), and the id
    each agent's next memory would get."""
    rows = [(r.agent_id, r.memory_id, r.seq, r.text, r.kind, r.importance, r.created_round,
             r.last_access_round, r.access_count, tuple(sorted(r.extra.items())), r.embedding.tobytes())
            for a in (A, B, C, D) for r in s.all(a)]
    return rows + [s.pending_changes().next_seq]


def test_round_changes_cover_every_kind_of_change(store):
    committed_round(store)
    round_changes(store, now=4)
    delta = store.pending_changes()
    assert isinstance(delta, MemoryDelta)
    assert {r.kind for r in delta.records} == {"observation", "insight"}
    if delta.full:  # the whole store, nothing to build on
        assert delta.touched == delta.deleted == () and len(delta.records) == store.count()
    else:  # what changed since the commit
        assert {r.memory_id for r in delta.records} == {"1-0", "2-2", "3-0", "4-0"}
        assert [m for _, m, _, _ in delta.touched] == ["1-2", "2-0"]
        assert delta.deleted == ((1, "1-0"), (1, "1-1"), (1, "1-3"), (2, "2-1"), (3, "3-0"), (3, "3-1"))
    ids = {r.memory_id: r for r in store.all(A) + store.all(C)}
    assert ids["1-0"].kind == "insight" and ids["3-0"].kind == "insight"  # in the place of the first
    assert "1-1" not in ids  # the dull advert, forgotten
    assert store.pending_changes().next_seq == {A: 4, C: 2}  # their latest memories merged away


@pytest.mark.parametrize("kill", ["before-commit", "after-commit", "during-commit"])
def test_restore_gives_exactly_the_committed_state(store_kind, tmp_path, request, kill):
    """Kill the process before, during or after the commit of a round whose delta the
    checkpoint holds; a fresh store plus `restore(delta)` is that round's state, with none
    of the uncommitted round after it (touches, consolidations, forgetting, new memories)."""
    opener = Opener(store_kind, tmp_path, request)
    s = opener.open()
    committed_round(s)
    round_changes(s, now=4)
    delta = s.pending_changes()  # goes into the checkpoint
    expected = state(s)
    if kill == "after-commit":
        s.commit()
    elif kill == "during-commit" and isinstance(s, ChromaMemory):
        s.collection = DiesAfter(s.collection, calls=2)  # deletes and upserts written, updates not
        with pytest.raises(Killed):
            s.commit()
        s.collection = s.collection.inner
    round_changes(s, now=5)  # the next round, never committed
    s.add(obs(B, "an interview, never committed", 0.6, created=5))
    s.retrieve_many([(A, "alien", 3), (C, "stars", 1)], now=6)
    assert state(s) != expected
    s.close()

    fresh = opener.open()
    if store_kind != "inprocess":  # chroma alone lacks (some of) the delta, or the next ids
        assert state(fresh) != expected
    fresh.restore(delta)
    assert state(fresh) == expected
    assert fresh.pending_changes().touched == ()
    fresh.restore(delta)  # idempotent
    assert state(fresh) == expected
    # the run goes on as if never interrupted: the same ids, and the same state next time
    assert fresh.add(obs(A, "after resume")) == "1-4"
    assert fresh.add(obs(C, "after resume")) == "3-2"
    fresh.close()
    if store_kind != "inprocess":
        again = opener.open()
        again.restore(delta)
        assert state(again) == expected
        again.close()


def test_restore_on_a_used_store_drops_what_was_not_committed(store):
    committed_round(store)
    round_changes(store, now=4)
    delta = store.pending_changes()
    expected = state(store)
    store.commit()
    round_changes(store, now=5)
    store.add(obs(D, "never committed"))
    store.restore(delta)
    assert state(store) == expected


class Killed(Exception):
    pass


class DiesAfter:
    """A chroma collection whose process dies after `calls` write calls."""

    def __init__(self, inner, calls: int):
        self.inner, self.left = inner, calls

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name not in ("add", "upsert", "update", "delete"):
            return attr

        def write(*args, **kwargs):
            if self.left == 0:
                raise Killed(name)
            self.left -= 1
            return attr(*args, **kwargs)

        return write


def test_nothing_is_durable_before_commit(store_kind, tmp_path, request):
    opener = Opener(store_kind, tmp_path, request)
    s = opener.open()
    committed_round(s)
    committed = state(s)
    delta = s.pending_changes()
    round_changes(s, now=4)
    s.close()
    fresh = opener.open()
    if store_kind == "inprocess":
        assert fresh.count() == 0
        fresh.restore(delta)
    assert state(fresh) == committed
    fresh.close()
