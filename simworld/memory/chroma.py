"""`ChromaMemory`: the in-process index for retrieval, chromadb for durability.

Why this shape (measured with chromadb 1.5 on a 2-core machine, see
benchmarks/bench_memory.py): a metadata-filtered chroma query costs tens of
milliseconds and every write call tens of milliseconds however few rows it carries, so
querying or writing chroma once per agent per round cannot serve 1,000 agents. Instead
every memory lives in a numpy index in this process (exact scoring, microseconds per
agent) and chroma is written once per round, at the run's commit point: `commit()`
writes the round's `pending_changes()` (new and rewritten memories, forgotten ids,
access statistics touched by retrieval) in a few batched calls (split at the client's
max batch size). Chroma is written nowhere else, so it never runs ahead of the run's
checkpoint, which keeps the same delta: `restore(delta)` on a freshly opened store
rewrites it idempotently, whether the crash came before, during or after that write.
Opening a store rebuilds the index from the collection, so `resume` and a viewer in
another process see the same memories. On a server (`ChromaMemory.server`) the same
collection serves many processes or machines; each process reads it when it opens
(`reload()` re-reads it).

One collection holds all agents; each row's metadata carries agent_id (an int), seq,
kind, importance, created_round, last_access_round, access_count and the record's
`extra` fields prefixed with ``x_``. Its HNSW index uses inner-product space: for the
unit vectors every `Embedder` returns that is cosine distance, so chroma's own query API
(e.g. from a notebook) works on the same data, and unlike chroma's cosine space it gives
the vectors back bit for bit (cosine space re-normalises them, which would make a
resumed run's scores differ from an uninterrupted one's in the last bits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from simworld.embedding import Embedder
from simworld.errors import SimworldError
from simworld.memory.config import RetrievalConfig, parse_server_url
from simworld.memory.index import IndexedMemory
from simworld.memory.records import MemoryDelta, MemoryRecord

SCHEMA_VERSION = 2  # 2: agent_id is an int, inner-product space, written only at commit points
EXTRA_PREFIX = "x_"
_READ_PAGE = 5000


def _settings():
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False)


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _metadata(rec: MemoryRecord) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "agent_id": rec.agent_id, "seq": rec.seq, "kind": rec.kind, "importance": rec.importance,
        "created_round": rec.created_round, "last_access_round": rec.last_access_round,
        "access_count": rec.access_count,
    }
    for key, value in rec.extra.items():
        meta[EXTRA_PREFIX + key] = value
    return meta


def _record(memory_id: str, meta: dict, text: str | None, embedding) -> MemoryRecord:
    return MemoryRecord(
        agent_id=int(meta["agent_id"]), text=text or "", kind=meta["kind"],
        importance=float(meta["importance"]), created_round=int(meta["created_round"]),
        last_access_round=int(meta["last_access_round"]), access_count=int(meta["access_count"]),
        embedding=np.asarray(embedding, dtype=np.float32), memory_id=memory_id, seq=int(meta["seq"]),
        extra={k[len(EXTRA_PREFIX):]: v for k, v in meta.items() if k.startswith(EXTRA_PREFIX)},
    )


class ChromaMemory(IndexedMemory):
    """A `MemoryStore` held in process and written to a chromadb collection at each commit.

    Build it with `ChromaMemory.persistent(path, embedder)` (embedded store in a folder)
    or `ChromaMemory.server(url, embedder)` (a `chroma run` server), or pass any chromadb
    client. Writes reach chroma only in `commit()` and `restore()`; reads never wait for
    chroma.
    """

    _full_deltas = False  # chroma holds the previous commit: a delta is the changes since

    def __init__(
        self,
        client: Any,
        embedder: Embedder,
        *,
        retrieval: RetrievalConfig | None = None,
        collection: str = "simworld-memories",
        write_batch_size: int = 4096,
    ):
        super().__init__(embedder, retrieval)
        self.client = client
        self.collection_name = collection
        try:
            limit = int(client.get_max_batch_size())
        except Exception:  # pragma: no cover - a client without the pre-flight call
            limit = -1
        if limit <= 0:  # unknown: chroma's documented SQLite limit
            limit = 5461
        self.write_batch_size = max(1, min(write_batch_size, limit))
        self._embedder_name = type(embedder).__name__
        self.collection = self._open_collection()
        self.reload()

    # -- construction --------------------------------------------------------------------
    @classmethod
    def persistent(cls, path: str | Path, embedder: Embedder, **kwargs) -> "ChromaMemory":
        """An embedded persistent store in the folder `path` (created if missing)."""
        import chromadb

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        return cls(chromadb.PersistentClient(path=str(path), settings=_settings()), embedder, **kwargs)

    @classmethod
    def server(cls, url: str, embedder: Embedder, **kwargs) -> "ChromaMemory":
        """A store on the chromadb server at `url` (e.g. http://127.0.0.1:8000)."""
        import chromadb

        try:
            host, port, ssl = parse_server_url(url)
        except ValueError as exc:
            raise SimworldError(str(exc)) from None
        try:
            client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=_settings())
            client.heartbeat()
        except Exception as exc:
            raise SimworldError(f"cannot reach the chroma server at {url}: {exc}") from exc
        return cls(client, embedder, **kwargs)

    def _open_collection(self):
        wanted = {"simworld_memory": SCHEMA_VERSION, "embedder": self._embedder_name, "dim": self.dim}
        coll = self.client.get_or_create_collection(
            self.collection_name, metadata=wanted, configuration={"hnsw": {"space": "ip"}},
            embedding_function=None,
        )
        have = dict(coll.metadata or {})
        if have.get("simworld_memory") != SCHEMA_VERSION:
            raise SimworldError(
                f"chroma collection {self.collection_name!r} is not a simworld memory store of "
                f"schema {SCHEMA_VERSION} (it says {have.get('simworld_memory')!r})"
            )
        if have.get("embedder") != self._embedder_name or have.get("dim") != self.dim:
            raise SimworldError(
                f"the memories in {self.collection_name!r} were embedded with {have.get('embedder')} "
                f"({have.get('dim')}-d), not {self._embedder_name} ({self.dim}-d): use the run's embedder"
            )
        return coll

    # -- reading chroma back -------------------------------------------------------------
    def reload(self) -> None:
        """Rebuild the in-process index from the collection (drops uncommitted changes)."""
        self._check_open()
        self._agents.clear()
        self._changed.clear()
        self._version += 1
        records: list[MemoryRecord] = []
        total = self.collection.count()
        offset = 0
        while offset < total:
            got = self.collection.get(limit=_READ_PAGE, offset=offset,
                                      include=["embeddings", "metadatas", "documents"])
            if not got["ids"]:
                break
            records.extend(map(_record, got["ids"], got["metadatas"], got["documents"], got["embeddings"]))
            offset += len(got["ids"])
        records.sort(key=lambda r: (r.agent_id, r.seq))
        for rec in records:
            self._index(rec.agent_id).insert(rec, rec.embedding, rec.memory_id, rec.seq)

    # -- writing a committed delta -------------------------------------------------------
    def restore(self, delta: MemoryDelta | None) -> None:
        if self._changed:  # uncommitted changes: start again from what chroma holds
            self.reload()
        super().restore(delta)

    def _write(self, delta: MemoryDelta) -> None:
        """Deletes, then new and rewritten memories (upserts), then access statistics; each
        as few calls as the batch size allows. Idempotent."""
        size = self.write_batch_size
        deleted = [mid for _, mid in delta.deleted]
        if delta.full:  # the delta is the whole store: nothing else, no stale field, may stay
            deleted = self.collection.get(include=[])["ids"]
        for batch in _chunks(deleted, size):
            self.collection.delete(ids=list(batch))
        for batch in _chunks(delta.records, size):
            self.collection.upsert(
                ids=[r.memory_id for r in batch], embeddings=np.stack([r.embedding for r in batch]),
                metadatas=[_metadata(r) for r in batch], documents=[r.text for r in batch],
            )
        touched = [rec for rec in map(self._get, delta.touched) if rec is not None]
        for batch in _chunks(touched, size):
            self.collection.update(ids=[r.memory_id for r in batch], metadatas=[_metadata(r) for r in batch])

    def _get(self, touched: tuple[int, str, int, int]) -> MemoryRecord | None:
        idx = self._agents.get(touched[0])
        row = None if idx is None else idx.pos.get(touched[1])
        return None if row is None else idx.record(row)
