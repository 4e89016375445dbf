"""ChromaMemory specifics: persistence (resume, another process), one batched write per
commit and none elsewhere, bit-exact round trips, the factory. Server mode and restore
after a crash are covered in test_memory_contract.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import chromadb
import numpy as np
import pytest
from chromadb.api.client import SharedSystemClient

from simworld.embedding import HashingEmbedder
from simworld.errors import SimworldError
from simworld.memory import (
    ChromaMemory, InProcessMemory, MemoryConfig, MemoryRecord, RetrievalConfig, open_memory,
)
from simworld.memory.chroma import _settings
from simworld.memory.testing import free_port

E = HashingEmbedder(dim=64)
U1, U2 = 1, 2


def fresh_clients() -> None:
    """Drop chromadb's per-path client cache so a reopen really reads the folder again."""
    SharedSystemClient.clear_system_cache()


def fill(store) -> None:
    store.add_many([MemoryRecord(agent_id=a, text=f"{a} watched film {i} about {topic}",
                                 importance=(i % 4) / 4, created_round=i, extra={"item_id": i})
                    for a in (U1, U2) for i, topic in enumerate(["space", "love", "war", "space war", "food"])])


def snapshot(store):
    """Every field of every record, embeddings byte for byte."""
    return [(r.memory_id, r.text, r.kind, r.importance, r.created_round, r.last_access_round,
             r.access_count, tuple(sorted(r.extra.items())), r.seq, r.embedding.tobytes())
            for a in (U1, U2) for r in store.all(a)]


class Spy:
    """A chroma collection that counts write calls (and their rows) by method."""

    def __init__(self, coll):
        self.coll = coll
        self.calls: dict[str, list[int]] = {"add": [], "upsert": [], "update": [], "delete": []}

    def __getattr__(self, name):
        attr = getattr(self.coll, name)
        if name not in self.calls:
            return attr

        def wrapped(*args, **kwargs):
            self.calls[name].append(len(kwargs["ids"]))
            return attr(*args, **kwargs)

        return wrapped


def test_reopen_gives_the_committed_memories_and_retrieval(tmp_path):
    path = tmp_path / "memory"
    store = ChromaMemory.persistent(path, E, retrieval=RetrievalConfig(touch_on_retrieve=True))
    fill(store)
    store.retrieve_many([(U1, "space", 2), (U2, "war", 1)], now=6)
    store.forget(U2, ["2-4"])
    store.add(MemoryRecord(agent_id=U2, text="u2 single add", created_round=7))
    store.commit()
    before = snapshot(store)
    requests = [(U1, "space war", 3), (U2, "film", 5)]
    probe = [[(s.memory_id, s.score) for s in r] for r in store.retrieve_many(requests, now=9, touch=False)]
    store.close()

    fresh_clients()
    again = ChromaMemory.persistent(path, E)
    assert snapshot(again) == before  # embeddings too: inner-product space keeps them exact
    assert again.count(U2) == 5 and again.all(U2)[-1].memory_id == "2-5"
    assert [[(s.memory_id, s.score) for s in r] for r in again.retrieve_many(requests, now=9, touch=False)] == probe
    assert again.add(MemoryRecord(agent_id=U1, text="next")) == "1-5"  # seq continues
    again.close()


def test_access_statistics_are_durable_after_commit(tmp_path):
    path = tmp_path / "memory"
    store = ChromaMemory.persistent(path, E)
    fill(store)
    store.commit()
    assert len(store.pending_changes()) == 0
    store.retrieve(U1, "space", k=2, now=5)
    assert len(store.pending_changes().touched) == 2
    store.commit()
    assert len(store.pending_changes()) == 0
    stats = {r.memory_id: (r.access_count, r.last_access_round) for r in store.all(U1)}
    fresh_clients()
    reopened = ChromaMemory.persistent(path, E)
    assert {r.memory_id: (r.access_count, r.last_access_round) for r in reopened.all(U1)} == stats
    assert sorted(v for v in stats.values() if v[0]) == [(1, 5), (1, 5)]


def test_chroma_is_written_only_at_commit_in_one_call_per_kind(tmp_path):
    store = ChromaMemory.persistent(tmp_path / "memory", E)
    fill(store)
    store.commit()
    spy = store.collection = Spy(store.collection)
    store.retrieve_many([(U1, "space", 2), (U2, "love", 2)], now=6)
    store.add_many([MemoryRecord(agent_id=a, text=f"round 6 memory of {a}", created_round=6) for a in (U1, U2)])
    store.add(MemoryRecord(agent_id=U1, text="an interview", kind="interview", created_round=6))
    store.forget(U2, ["2-0"])
    assert spy.calls == {"add": [], "upsert": [], "update": [], "delete": []}
    store.commit()
    assert {k: len(v) for k, v in spy.calls.items()} == {"add": 0, "upsert": 1, "update": 1, "delete": 1}
    assert spy.calls["upsert"] == [3] and spy.calls["delete"] == [1]
    store.retrieve(U1, "anything", k=1, now=7)
    store.close()  # uncommitted: dropped, not written
    assert sum(map(len, spy.calls.values())) == 3


def test_writes_split_at_the_batch_size(tmp_path):
    store = ChromaMemory.persistent(tmp_path / "memory", E, write_batch_size=3)
    spy = store.collection = Spy(store.collection)
    store.add_many([MemoryRecord(agent_id=1, text=f"m {i}") for i in range(10)])
    store.commit()
    assert spy.calls["upsert"] == [3, 3, 3, 1]
    touched = {s.memory_id for s in store.retrieve(1, "m", k=4, now=1)}
    store.forget(1, ["1-0", "1-1"])
    store.commit()
    assert spy.calls["delete"] == [2]
    assert sum(spy.calls["update"]) == len(touched - {"1-0", "1-1"})
    assert all(n <= 3 for n in spy.calls["update"])
    assert spy.coll.count() == 8


def test_added_then_forgotten_before_commit_never_reaches_chroma(tmp_path):
    store = ChromaMemory.persistent(tmp_path / "memory", E)
    store.add(MemoryRecord(agent_id=1, text="fleeting"))
    store.forget(1, ["1-0"])
    store.commit()
    assert store.collection.count() == 0 and len(store.pending_changes()) == 0


def test_a_rewritten_memory_keeps_no_stale_fields(tmp_path):
    """A consolidated insight takes its leader's id; fields only the leader had must go
    (chroma's upsert alone would keep them)."""
    path = tmp_path / "memory"
    store = ChromaMemory.persistent(path, E)
    store.add(MemoryRecord(agent_id=1, text="watched alien", extra={"item_id": 3, "rating": 5.0}))
    store.commit()
    store.forget(1, ["1-0"])
    store.add(MemoryRecord(agent_id=1, text="watched alien", kind="insight", memory_id="1-0", seq=0,
                           extra={"merged_count": 2}))
    store.commit()
    fresh_clients()
    (rec,) = ChromaMemory.persistent(path, E).all(1)
    assert (rec.kind, rec.extra) == ("insight", {"merged_count": 2})


def test_agent_id_is_stored_as_an_int(tmp_path):
    store = ChromaMemory.persistent(tmp_path / "memory", E)
    fill(store)
    store.commit()
    metas = store.collection.get(include=["metadatas"])["metadatas"]
    assert {m["agent_id"] for m in metas} == {1, 2} and all(type(m["agent_id"]) is int for m in metas)
    assert len(store.collection.get(where={"agent_id": 2})["ids"]) == 5


def test_another_process_sees_the_same_memories(tmp_path):
    path = tmp_path / "memory"
    store = ChromaMemory.persistent(path, E)
    fill(store)
    store.commit()
    expected = [r.memory_id for r in store.all(U1)]
    top = [s.memory_id for s in store.retrieve(U2, "space war", k=3, now=9)]
    store.close()
    code = textwrap.dedent("""
        import json, sys
        from simworld.embedding import HashingEmbedder
        from simworld.memory import ChromaMemory
        s = ChromaMemory.persistent(sys.argv[1], HashingEmbedder(dim=64))
        print(json.dumps({"ids": [r.memory_id for r in s.all(1)],
                          "extra": s.all(1)[2].extra, "count": s.count()}))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         timeout=240, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"ids": expected, "extra": {"item_id": 2}, "count": 10}
    assert len(top) == 3


def test_reopen_with_another_embedder_is_a_clear_error(tmp_path):
    path = tmp_path / "memory"
    ChromaMemory.persistent(path, E).close()
    fresh_clients()
    with pytest.raises(SimworldError, match="embedded with HashingEmbedder"):
        ChromaMemory.persistent(path, HashingEmbedder(dim=32))


def test_a_store_of_another_schema_is_a_clear_error(tmp_path):
    client = chromadb.PersistentClient(path=str(tmp_path / "memory"), settings=_settings())
    client.create_collection("simworld-memories", metadata={"simworld_memory": 1, "embedder": "HashingEmbedder",
                                                            "dim": 64}, embedding_function=None)
    with pytest.raises(SimworldError, match="schema 2"):
        ChromaMemory(client, E)


def test_open_memory_factory(tmp_path):
    inproc = open_memory(MemoryConfig(backend="inprocess", embedder="hashing"))
    assert isinstance(inproc, InProcessMemory)
    chroma = open_memory(MemoryConfig(embedder="hashing"), run_dir=tmp_path / "run-1", embedder=E)
    assert isinstance(chroma, ChromaMemory)
    chroma.add(MemoryRecord(agent_id=1, text="hello"))
    chroma.close()
    assert (tmp_path / "run-1" / "memory").is_dir()
    with pytest.raises(ValueError):
        open_memory(MemoryConfig(embedder="hashing"), embedder=E)
    with pytest.raises(ValueError, match="a memory server must be a URL"):
        MemoryConfig(server="localhost:8000")
    with pytest.raises(ValueError):
        MemoryConfig(backend="redis")


def test_bad_or_unreachable_server_is_a_clear_error():
    with pytest.raises(SimworldError, match="a memory server must be a URL"):
        ChromaMemory.server("localhost:8000", E)
    with pytest.raises(SimworldError, match="cannot reach the chroma server"):
        ChromaMemory.server(f"http://127.0.0.1:{free_port()}", E)


def test_query_vectors_need_no_embedder_call(tmp_path):
    store = ChromaMemory.persistent(tmp_path / "memory", E)
    fill(store)
    store.embedder = None  # any embed call would fail now
    q = E.embed(["space"])[0]
    assert len(store.retrieve_many([(U1, q, 2), (U2, np.asarray(q), 2)], now=3)[1]) == 2
