"""ChromaMemory specifics: persistence (resume, another process), batching, durability of
access statistics, the factory. Server mode is covered in test_memory_contract.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("chromadb")

from simworld.embedding import HashingEmbedder  # noqa: E402
from simworld.errors import SimworldError  # noqa: E402
from simworld.memory import (  # noqa: E402
    ChromaMemory, InProcessMemory, MemoryConfig, MemoryRecord, RetrievalConfig, open_memory,
)

E = HashingEmbedder(dim=64)


def fresh_clients() -> None:
    """Drop chromadb's per-path client cache so a reopen really reads the folder again."""
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


def fill(store) -> None:
    store.add_many([MemoryRecord(agent_id=a, text=f"{a} watched film {i} about {topic}",
                                 importance=(i % 4) / 4, created_round=i, extra={"item_id": i})
                    for a in ("u1", "u2") for i, topic in enumerate(["space", "love", "war", "space war", "food"])])


def snapshot(store):
    """Every field of every record; embeddings apart, since chroma may re-normalise them in
    float32 (differences of ~3e-8)."""
    records = [(r.memory_id, r.text, r.kind, r.importance, r.created_round, r.last_access_round,
                r.access_count, tuple(sorted(r.extra.items())), r.seq)
               for a in ("u1", "u2") for r in store.all(a)]
    embeddings = np.stack([r.embedding for a in ("u1", "u2") for r in store.all(a)])
    return records, embeddings


def test_reopen_restores_memories_and_retrieval(tmp_path):
    path = tmp_path / "memory"
    store = ChromaMemory.persistent(path, E, retrieval=RetrievalConfig(touch_on_retrieve=True))
    fill(store)
    store.retrieve_many([("u1", "space", 2), ("u2", "war", 1)], now=6)  # touches: durable on close
    store.forget("u2", ["u2-4"])
    store.add(MemoryRecord(agent_id="u2", text="u2 single add, flushed by close", created_round=7))
    before, before_emb = snapshot(store)
    look = RetrievalConfig(touch_on_retrieve=False)
    store.retrieval = look
    requests = [("u1", "space war", 3), ("u2", "film", 5)]
    probe = [[(s.memory_id, s.score) for s in r] for r in store.retrieve_many(requests, now=9)]
    store.close()

    fresh_clients()
    again = ChromaMemory.persistent(path, E, retrieval=look)
    after, after_emb = snapshot(again)
    assert after == before
    np.testing.assert_allclose(after_emb, before_emb, atol=1e-6)
    assert again.count("u2") == 5 and again.all("u2")[-1].memory_id == "u2-5"
    got = [[(s.memory_id, s.score) for s in r] for r in again.retrieve_many(requests, now=9)]
    assert [[m for m, _ in r] for r in got] == [[m for m, _ in r] for r in probe]
    for r_got, r_probe in zip(got, probe):
        assert [s for _, s in r_got] == pytest.approx([s for _, s in r_probe])
    assert again.add(MemoryRecord(agent_id="u1", text="next")) == "u1-5"  # seq continues
    again.close()


def test_access_statistics_are_durable_after_flush(tmp_path):
    path = tmp_path / "memory"
    store = ChromaMemory.persistent(path, E)
    fill(store)
    assert store.pending() == 0  # add_many flushed
    store.retrieve("u1", "space", k=2, now=5)
    assert store.pending() == 2
    store.flush()
    assert store.pending() == 0
    stats = {r.memory_id: (r.access_count, r.last_access_round) for r in store.all("u1")}
    fresh_clients()
    reopened = ChromaMemory.persistent(path, E)
    assert {r.memory_id: (r.access_count, r.last_access_round) for r in reopened.all("u1")} == stats
    assert sorted(v for v in stats.values() if v[0]) == [(1, 5), (1, 5)]


def test_writes_split_at_the_batch_size(tmp_path):
    store = ChromaMemory.persistent(tmp_path / "memory", E, write_batch_size=3)
    calls = {"add": [], "update": [], "delete": []}
    coll = store.collection

    class Spy:
        def __getattr__(self, name):
            attr = getattr(coll, name)
            if name in calls:
                def wrapped(*args, **kwargs):
                    calls[name].append(len(kwargs["ids"]))
                    return attr(*args, **kwargs)
                return wrapped
            return attr

    store.collection = Spy()
    store.add_many([MemoryRecord(agent_id="a", text=f"m {i}") for i in range(10)])
    assert calls["add"] == [3, 3, 3, 1]
    touched = {s.memory_id for s in store.retrieve("a", "m", k=4, now=1)}
    store.forget("a", ["a-0", "a-1"])
    store.flush()
    assert calls["delete"] == [2]
    assert sum(calls["update"]) == len(touched - {"a-0", "a-1"})
    assert all(n <= 3 for n in calls["update"])
    assert coll.count() == 8


def test_added_then_forgotten_before_flush_never_reaches_chroma(tmp_path):
    store = ChromaMemory.persistent(tmp_path / "memory", E)
    store.add(MemoryRecord(agent_id="a", text="fleeting"))
    store.forget("a", ["a-0"])
    store.flush()
    assert store.collection.count() == 0 and store.pending() == 0


def test_another_process_sees_the_same_memories(tmp_path):
    path = tmp_path / "memory"
    store = ChromaMemory.persistent(path, E)
    fill(store)
    expected = [r.memory_id for r in store.all("u1")]
    top = [s.memory_id for s in store.retrieve("u2", "space war", k=3, now=9)]
    store.close()
    code = textwrap.dedent(f"""
        import json, sys
        from simworld.embedding import HashingEmbedder
        from simworld.memory import ChromaMemory, RetrievalConfig
        s = ChromaMemory.persistent(sys.argv[1], HashingEmbedder(dim=64))
        print(json.dumps({{"ids": [r.memory_id for r in s.all("u1")],
                          "extra": s.all("u1")[2].extra, "count": s.count()}}))
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


def test_open_memory_factory(tmp_path):
    inproc = open_memory(MemoryConfig(backend="inprocess", embedder="hashing"))
    assert isinstance(inproc, InProcessMemory)
    chroma = open_memory(MemoryConfig(embedder="hashing"), run_dir=tmp_path / "run-1", embedder=E)
    assert isinstance(chroma, ChromaMemory)
    chroma.add(MemoryRecord(agent_id="a", text="hello"))
    chroma.close()
    assert (tmp_path / "run-1" / "memory").is_dir()
    with pytest.raises(ValueError):
        open_memory(MemoryConfig(embedder="hashing"), embedder=E)
    with pytest.raises(ValueError):
        MemoryConfig(server="localhost:8000")
    with pytest.raises(ValueError):
        MemoryConfig(backend="redis")


def test_unreachable_server_is_a_clear_error():
    from simworld.memory.testing import free_port

    with pytest.raises(SimworldError, match="cannot reach the chroma server"):
        ChromaMemory.server(f"http://127.0.0.1:{free_port()}", E)


def test_query_vectors_need_no_embedder_call(tmp_path):
    store = ChromaMemory.persistent(tmp_path / "memory", E)
    fill(store)
    store.embedder = None  # any embed call would fail now
    q = E.embed(["space"])[0]
    assert len(store.retrieve_many([("u1", q, 2), ("u2", np.asarray(q), 2)], now=3)[1]) == 2
