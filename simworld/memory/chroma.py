"""`ChromaMemory`: the in-process index for retrieval, chromadb for durability.

Why this shape (measured with chromadb 1.5 on a 2-core machine, see
benchmarks/bench_memory.py): a metadata-filtered chroma query costs tens of
milliseconds and every write call tens of milliseconds however few rows it carries, so
querying or writing chroma once per agent per round cannot serve 1,000 agents. Instead
every memory lives in a numpy index in this process (exact scoring, microseconds per
agent) and chroma is a write-behind mirror: all changes since the last `flush()` (new
memories, forgotten ids, access statistics touched by retrieval) go to one collection in
a few batched calls (split at the client's max batch size). Opening a store rebuilds the
index from the collection, so `resume` and a viewer in another process see the same
memories. On a server (`ChromaMemory.server`) the same collection serves many processes
or machines; each process reads it when it opens (`reload()` re-reads it).

One collection holds all agents; each row's metadata carries agent_id, seq, kind,
importance, created_round, last_access_round, access_count and the record's `extra`
fields prefixed with ``x_``. Its HNSW index uses cosine space, so chroma's own query API
(e.g. from a notebook) works on the same data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlparse

import numpy as np

from simworld.embedding import Embedder
from simworld.errors import SimworldError
from simworld.memory.config import RetrievalConfig
from simworld.memory.index import IndexedMemory
from simworld.memory.records import MemoryRecord

SCHEMA_VERSION = 1
EXTRA_PREFIX = "x_"
_CORE_KEYS = ("agent_id", "seq", "kind", "importance", "created_round", "last_access_round", "access_count")
_READ_PAGE = 5000


def _settings():
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False)


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class ChromaMemory(IndexedMemory):
    """A `MemoryStore` held in process and mirrored to a chromadb collection.

    Build it with `ChromaMemory.persistent(path, embedder)` (embedded store in a folder)
    or `ChromaMemory.server(url, embedder)` (a `chroma run` server), or pass any chromadb
    client. Writes reach chroma on `flush()`, at the end of every `add_many`, and on
    `close()`; reads never wait for chroma.
    """

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
        self._pending_add: dict[str, str] = {}  # memory_id -> agent_id, insertion order
        self._pending_delete: list[str] = []
        self._dirty: dict[str, str] = {}  # memory_id -> agent_id
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

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise SimworldError(f"memory server must be a URL like http://127.0.0.1:8000, not {url!r}")
        port = parsed.port or (443 if parsed.scheme == "https" else 8000)
        try:
            client = chromadb.HttpClient(host=parsed.hostname, port=port, ssl=parsed.scheme == "https",
                                         settings=_settings())
            client.heartbeat()
        except Exception as exc:
            raise SimworldError(f"cannot reach the chroma server at {url}: {exc}") from exc
        return cls(client, embedder, **kwargs)

    def _open_collection(self):
        wanted = {"simworld_memory": SCHEMA_VERSION, "embedder": self._embedder_name, "dim": self.dim}
        coll = self.client.get_or_create_collection(
            self.collection_name, metadata=wanted, configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )
        have = dict(coll.metadata or {})
        if have.get("simworld_memory") != SCHEMA_VERSION:
            raise SimworldError(f"chroma collection {self.collection_name!r} is not a simworld memory store")
        if have.get("embedder") != self._embedder_name or have.get("dim") != self.dim:
            raise SimworldError(
                f"the memories in {self.collection_name!r} were embedded with {have.get('embedder')} "
                f"({have.get('dim')}-d), not {self._embedder_name} ({self.dim}-d): use the run's embedder"
            )
        return coll

    # -- reading chroma back -------------------------------------------------------------
    def reload(self) -> None:
        """Rebuild the in-process index from the collection (drops unflushed changes)."""
        self._agents.clear()
        self._pending_add.clear()
        self._pending_delete.clear()
        self._dirty.clear()
        rows: list[tuple[str, int, str, dict, str, np.ndarray]] = []
        total = self.collection.count()
        offset = 0
        while offset < total:
            got = self.collection.get(limit=_READ_PAGE, offset=offset,
                                      include=["embeddings", "metadatas", "documents"])
            ids = got["ids"]
            if not ids:
                break
            embs = got["embeddings"]
            for mid, meta, doc, emb in zip(ids, got["metadatas"], got["documents"], embs):
                rows.append((str(meta["agent_id"]), int(meta["seq"]), mid, meta, doc, emb))
            offset += len(ids)
        rows.sort(key=lambda r: (r[0], r[1]))
        for agent_id, seq, mid, meta, doc, emb in rows:
            extra = {k[len(EXTRA_PREFIX):]: v for k, v in meta.items() if k.startswith(EXTRA_PREFIX)}
            rec = MemoryRecord(
                agent_id=agent_id, text=doc or "", kind=meta["kind"], importance=float(meta["importance"]),
                created_round=int(meta["created_round"]), last_access_round=int(meta["last_access_round"]),
                access_count=int(meta["access_count"]), extra=extra,
            )
            self._index(agent_id).append(rec, np.asarray(emb, dtype=np.float32), mid, seq)

    # -- hooks: queue changes for the next flush -----------------------------------------
    def _on_added(self, agent_id: str, memory_ids: list[str]) -> None:
        for mid in memory_ids:
            self._pending_add[mid] = agent_id

    def _on_touched(self, agent_id: str, memory_ids: list[str]) -> None:
        for mid in memory_ids:
            if mid not in self._pending_add:
                self._dirty[mid] = agent_id

    def _on_forgotten(self, agent_id: str, memory_ids: list[str]) -> None:
        for mid in memory_ids:
            self._dirty.pop(mid, None)
            if self._pending_add.pop(mid, None) is None:
                self._pending_delete.append(mid)

    def add_many(self, records: Sequence[MemoryRecord]) -> list[str]:
        ids = super().add_many(records)
        self.flush()
        return ids

    def pending(self) -> int:
        """How many changes wait for the next flush."""
        return len(self._pending_add) + len(self._pending_delete) + len(self._dirty)

    def _metadata(self, agent_id: str, row: int) -> dict:
        idx = self._agents[agent_id]
        meta: dict[str, Any] = {
            "agent_id": agent_id, "seq": int(idx.seqs[row]), "kind": idx.kinds[row],
            "importance": float(idx.importance[row]), "created_round": int(idx.created[row]),
            "last_access_round": int(idx.last_access[row]), "access_count": int(idx.access[row]),
        }
        for key, value in idx.extras[row].items():
            meta[EXTRA_PREFIX + key] = value
        return meta

    def flush(self) -> None:
        """Write every queued change to chroma: deletes, then adds, then access statistics,
        each as few calls as the batch size allows."""
        if self._closed:
            return
        size = self.write_batch_size
        if self._pending_delete:
            for batch in _chunks(self._pending_delete, size):
                self.collection.delete(ids=list(batch))
            self._pending_delete = []
        if self._pending_add:
            items = list(self._pending_add.items())
            for batch in _chunks(items, size):
                ids, embs, metas, docs = [], [], [], []
                for mid, agent_id in batch:
                    idx = self._agents[agent_id]
                    row = idx.pos[mid]
                    ids.append(mid)
                    embs.append(idx.emb[row])
                    metas.append(self._metadata(agent_id, row))
                    docs.append(idx.texts[row])
                self.collection.add(ids=ids, embeddings=np.stack(embs), metadatas=metas, documents=docs)
                for mid in ids:
                    del self._pending_add[mid]
        if self._dirty:
            items = [(m, a) for m, a in self._dirty.items() if m in self._agents[a].pos]
            for batch in _chunks(items, size):
                self.collection.update(
                    ids=[m for m, _ in batch],
                    metadatas=[self._metadata(a, self._agents[a].pos[m]) for m, a in batch],
                )
            self._dirty.clear()

    def close(self) -> None:
        """Flush; the chromadb client stays usable by others."""
        if not self._closed:
            self.flush()
            self._closed = True
