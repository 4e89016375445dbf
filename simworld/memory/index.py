"""The in-process memory index: per-agent numpy columns, exact scored retrieval.

`IndexedMemory` implements the whole `MemoryStore` protocol in memory; `InProcessMemory`
is it as is, `ChromaMemory` adds a chromadb mirror through the `_on_*` hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence, Union

import numpy as np

from simworld.embedding import Embedder
from simworld.memory.config import RetrievalConfig
from simworld.memory.records import MemoryRecord, ScoredMemory, memory_id_for

#: A retrieval query: a text (embedded by the store) or a vector of the embedder's dimension.
Query = Union[str, np.ndarray]
#: One request of `retrieve_many`: (agent_id, query, k); k None means `RetrievalConfig.k`.
RetrievalRequest = tuple[str, Query, Union[int, None]]


def _minmax(values: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1]; a constant vector maps to zeros."""
    lo = values.min()
    span = values.max() - lo
    if span <= 0:
        return np.zeros(values.shape[0], dtype=np.float64)
    return (values - lo) / span


@dataclass
class _Scored:
    rows: np.ndarray
    score: np.ndarray
    recency: np.ndarray
    importance: np.ndarray
    relevance: np.ndarray


class _AgentIndex:
    """One agent's memories as columns; rows stay in seq order (oldest first)."""

    __slots__ = (
        "agent_id", "dim", "n", "next_seq", "emb", "importance", "created", "last_access",
        "access", "seqs", "ids", "texts", "kinds", "extras", "pos",
    )

    def __init__(self, agent_id: str, dim: int, capacity: int = 16):
        self.agent_id = agent_id
        self.dim = dim
        self.n = 0
        self.next_seq = 0
        self.emb = np.zeros((capacity, dim), dtype=np.float32)
        self.importance = np.zeros(capacity, dtype=np.float64)
        self.created = np.zeros(capacity, dtype=np.int64)
        self.last_access = np.zeros(capacity, dtype=np.int64)
        self.access = np.zeros(capacity, dtype=np.int64)
        self.seqs = np.zeros(capacity, dtype=np.int64)
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.kinds: list[str] = []
        self.extras: list[dict] = []
        self.pos: dict[str, int] = {}

    def _grow(self, need: int) -> None:
        cap = self.emb.shape[0]
        if need <= cap:
            return
        new_cap = max(need, cap * 2)
        for name in ("emb", "importance", "created", "last_access", "access", "seqs"):
            old = getattr(self, name)
            new = np.zeros((new_cap,) + old.shape[1:], dtype=old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def new_id(self) -> tuple[str, int]:
        seq = self.next_seq
        mid = memory_id_for(self.agent_id, seq)
        while mid in self.pos:  # a caller-chosen id took it: skip, deterministically
            seq += 1
            mid = memory_id_for(self.agent_id, seq)
        return mid, seq

    def append(self, rec: MemoryRecord, vec: np.ndarray, mid: str, seq: int) -> None:
        row = self.n
        self._grow(row + 1)
        self.emb[row] = vec
        self.importance[row] = rec.importance
        self.created[row] = rec.created_round
        self.last_access[row] = rec.last_access_round
        self.access[row] = rec.access_count
        self.seqs[row] = seq
        self.ids.append(mid)
        self.texts.append(rec.text)
        self.kinds.append(rec.kind)
        self.extras.append(dict(rec.extra))
        self.pos[mid] = row
        self.n = row + 1
        self.next_seq = max(self.next_seq, seq + 1)

    def remove(self, memory_ids: Iterable[str]) -> list[str]:
        drop = sorted({self.pos[m] for m in memory_ids if m in self.pos})
        if not drop:
            return []
        removed = [self.ids[r] for r in drop]
        keep = np.ones(self.n, dtype=bool)
        keep[drop] = False
        for name in ("emb", "importance", "created", "last_access", "access", "seqs"):
            setattr(self, name, getattr(self, name)[: self.n][keep].copy())
        kept = np.flatnonzero(keep).tolist()
        self.ids = [self.ids[r] for r in kept]
        self.texts = [self.texts[r] for r in kept]
        self.kinds = [self.kinds[r] for r in kept]
        self.extras = [self.extras[r] for r in kept]
        self.n = len(kept)
        self.pos = {mid: r for r, mid in enumerate(self.ids)}
        return removed

    def record(self, row: int) -> MemoryRecord:
        # Built without re-running validation: every field came from a validated record.
        rec = object.__new__(MemoryRecord)
        set_ = object.__setattr__
        set_(rec, "agent_id", self.agent_id)
        set_(rec, "text", self.texts[row])
        set_(rec, "kind", self.kinds[row])
        set_(rec, "importance", float(self.importance[row]))
        set_(rec, "created_round", int(self.created[row]))
        set_(rec, "last_access_round", int(self.last_access[row]))
        set_(rec, "access_count", int(self.access[row]))
        set_(rec, "embedding", self.emb[row].copy())
        set_(rec, "extra", dict(self.extras[row]))
        set_(rec, "memory_id", self.ids[row])
        set_(rec, "seq", int(self.seqs[row]))
        return rec

    def score(self, query: np.ndarray, k: int, now: int, cfg: RetrievalConfig) -> _Scored:
        n = self.n
        if cfg.w_relevance > 0:
            # einsum, not `@`: a per-agent gemv through a multi-threaded BLAS stalls for
            # milliseconds on a loaded machine (measured), and einsum is single-threaded
            # and bit-for-bit repeatable.
            relevance = _minmax(np.einsum("ij,j->i", self.emb[:n], query).astype(np.float64))
        else:
            relevance = np.zeros(n)
        if cfg.w_recency > 0:
            age = np.maximum(now - self.last_access[:n], 0)
            recency = _minmax(np.power(cfg.decay, age, dtype=np.float64))
        else:
            recency = np.zeros(n)
        importance = _minmax(self.importance[:n]) if cfg.w_importance > 0 else np.zeros(n)
        score = cfg.w_recency * recency + cfg.w_importance * importance + cfg.w_relevance * relevance
        if k >= n:
            rows = np.argsort(-score, kind="stable")
        else:
            kth = np.partition(score, n - k)[n - k]
            cand = np.flatnonzero(score >= kth)  # ascending rows, ties included
            rows = cand[np.argsort(-score[cand], kind="stable")][:k]
        return _Scored(rows, score[rows], recency[rows], importance[rows], relevance[rows])


class IndexedMemory:
    """A complete `MemoryStore` held in this process (exact retrieval, numpy only).

    Single-threaded: call it from one thread (the world's step) at a time.
    """

    def __init__(self, embedder: Embedder, retrieval: RetrievalConfig | None = None):
        self.embedder = embedder
        self.retrieval = retrieval or RetrievalConfig()
        self.dim = int(embedder.dim)
        self._agents: dict[str, _AgentIndex] = {}
        self._closed = False

    # -- hooks for a durable mirror ------------------------------------------------------
    def _on_added(self, agent_id: str, memory_ids: list[str]) -> None:
        """Called after memories were appended to the index."""

    def _on_touched(self, agent_id: str, memory_ids: list[str]) -> None:
        """Called after a retrieval changed access statistics."""

    def _on_forgotten(self, agent_id: str, memory_ids: list[str]) -> None:
        """Called after memories left the index."""

    # -- writing -------------------------------------------------------------------------
    def _index(self, agent_id: str) -> _AgentIndex:
        idx = self._agents.get(agent_id)
        if idx is None:
            idx = self._agents[agent_id] = _AgentIndex(agent_id, self.dim)
        return idx

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this memory store is closed")

    def add(self, record: MemoryRecord) -> str:
        """Store one memory; returns its memory_id. Embeds the text if it has no embedding."""
        return self.add_many([record])[0]

    def add_many(self, records: Sequence[MemoryRecord]) -> list[str]:
        """Store a batch (one embedder call for all texts without embeddings); returns ids in order."""
        self._check_open()
        records = list(records)
        missing = [i for i, r in enumerate(records) if r.embedding is None]
        vectors: dict[int, np.ndarray] = {}
        if missing:
            embedded = np.asarray(self.embedder.embed([records[i].text for i in missing]), dtype=np.float32)
            for i, vec in zip(missing, embedded):
                vectors[i] = vec
        for i, rec in enumerate(records):
            vec = vectors[i] if i in vectors else rec.embedding
            if vec.shape != (self.dim,):
                raise ValueError(f"embedding of {rec.text[:40]!r} has shape {vec.shape}, expected ({self.dim},)")
            if rec.memory_id:
                idx = self._agents.get(rec.agent_id)
                if idx is not None and rec.memory_id in idx.pos:
                    raise ValueError(f"memory id {rec.memory_id!r} already exists")
                if any(r.memory_id == rec.memory_id for r in records[:i]):
                    raise ValueError(f"memory id {rec.memory_id!r} appears twice in one batch")
        ids: list[str] = []
        added: dict[str, list[str]] = {}
        per_agent: dict[str, int] = {}
        for rec in records:
            per_agent[rec.agent_id] = per_agent.get(rec.agent_id, 0) + 1
        for agent_id, extra_rows in per_agent.items():  # grow each agent's columns once
            idx = self._index(agent_id)
            idx._grow(idx.n + extra_rows)
        for i, rec in enumerate(records):
            idx = self._index(rec.agent_id)
            if rec.memory_id:
                mid, seq = rec.memory_id, max(idx.next_seq, 0)
            else:
                mid, seq = idx.new_id()
            vec = vectors[i] if i in vectors else rec.embedding
            idx.append(rec, vec, mid, seq)
            ids.append(mid)
            added.setdefault(rec.agent_id, []).append(mid)
        for agent_id, mids in added.items():
            self._on_added(agent_id, mids)
        return ids

    def forget(self, agent_id: str, memory_ids: Iterable[str]) -> int:
        """Remove the given memories of one agent (unknown ids are ignored); returns how many."""
        self._check_open()
        idx = self._agents.get(str(agent_id))
        if idx is None:
            return 0
        removed = idx.remove(memory_ids)
        if removed:
            self._on_forgotten(idx.agent_id, removed)
        return len(removed)

    def flush(self) -> None:
        """Make pending writes durable (nothing to do in process)."""

    def close(self) -> None:
        """Flush and release resources; the store cannot be used afterwards."""
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------
    def all(self, agent_id: str) -> list[MemoryRecord]:
        """All memories of an agent, oldest first (with embeddings)."""
        idx = self._agents.get(str(agent_id))
        if idx is None:
            return []
        return [idx.record(r) for r in range(idx.n)]

    def count(self, agent_id: str | None = None) -> int:
        """How many memories one agent (or, with None, every agent) holds."""
        if agent_id is None:
            return sum(idx.n for idx in self._agents.values())
        idx = self._agents.get(str(agent_id))
        return 0 if idx is None else idx.n

    def agent_ids(self) -> list[str]:
        """Agents holding at least one memory, sorted."""
        return sorted(a for a, idx in self._agents.items() if idx.n)

    def retrieve(self, agent_id: str, query: Query, k: int | None = None, now: int = 0) -> list[ScoredMemory]:
        """The agent's top-k memories for a query text or vector, best first."""
        return self.retrieve_many([(agent_id, query, k)], now)[0]

    def retrieve_many(self, requests: Sequence[RetrievalRequest], now: int) -> list[list[ScoredMemory]]:
        """Answer a whole round of requests; all text queries are embedded in one call.

        Every request is scored against the state before this call; then, if
        `touch_on_retrieve`, the returned memories are marked accessed at `now`.
        """
        self._check_open()
        requests = [(str(a), q, self.retrieval.k if k is None else int(k)) for a, q, k in requests]
        text_pos = [i for i, (_, q, _) in enumerate(requests) if isinstance(q, str)]
        vectors: list[np.ndarray | None] = [None] * len(requests)
        if text_pos:
            need = [i for i in text_pos if self.count(requests[i][0])]
            if need:
                # agents shown the same page ask the same question: embed each text once
                unique = list(dict.fromkeys(requests[i][1] for i in need))
                embedded = np.asarray(self.embedder.embed(unique), dtype=np.float32)
                by_text = dict(zip(unique, embedded))
                for i in need:
                    vectors[i] = by_text[requests[i][1]]
        cfg = self.retrieval
        results: list[list[ScoredMemory]] = []
        touched: dict[str, list[int]] = {}
        for i, (agent_id, query, k) in enumerate(requests):
            idx = self._agents.get(agent_id)
            if idx is None or idx.n == 0 or k <= 0:
                results.append([])
                continue
            vec = vectors[i] if vectors[i] is not None else np.asarray(query, dtype=np.float32)
            if vec.shape != (self.dim,):
                raise ValueError(f"query vector has shape {vec.shape}, expected ({self.dim},)")
            s = idx.score(vec, k, now, cfg)
            rows = s.rows.tolist()
            results.append([
                ScoredMemory(idx.record(r), float(sc), float(rc), float(im), float(rv))
                for r, sc, rc, im, rv in zip(rows, s.score.tolist(), s.recency.tolist(),
                                             s.importance.tolist(), s.relevance.tolist())
            ])
            if cfg.touch_on_retrieve:
                touched.setdefault(agent_id, []).extend(rows)
        for agent_id, rows in touched.items():
            idx = self._agents[agent_id]
            arr = np.asarray(rows, dtype=np.int64)
            np.add.at(idx.access, arr, 1)
            idx.last_access[arr] = np.maximum(idx.last_access[arr], now)
            self._on_touched(agent_id, [idx.ids[r] for r in sorted(set(rows))])
        return results
