"""The in-process memory index: per-agent numpy columns, exact scored retrieval.

`IndexedMemory` implements the whole `MemoryStore` protocol in memory, including the
change tracking behind `pending_changes` / `commit` / `restore`; `InProcessMemory` is it
as is (its delta is the whole store), `ChromaMemory` writes each committed delta to a
chromadb collection (`_write`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar, Iterable, Sequence, Union

import numpy as np

from simworld.embedding import Embedder
from simworld.memory.config import RetrievalConfig
from simworld.memory.records import MemoryDelta, MemoryRecord, ScoredMemory, check_agent_id, memory_id_for

#: A retrieval query: a text (embedded by the store) or a vector of the embedder's dimension.
Query = Union[str, np.ndarray]
#: One request of `retrieve_many`: (agent_id, query, k); k None means `RetrievalConfig.k`.
RetrievalRequest = tuple[int, Query, Union[int, None]]

_COLUMNS = ("emb", "importance", "created", "last_access", "access", "seqs")
_TOUCHED, _ADDED, _DELETED = 0, 1, 2  # how a memory changed since the last commit


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

    __slots__ = ("agent_id", "dim", "n", "next_seq", "texts", "kinds", "extras", "ids", "pos") + _COLUMNS

    def __init__(self, agent_id: int, dim: int, capacity: int = 16):
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

    def grow(self, need: int) -> None:
        cap = self.emb.shape[0]
        if need <= cap:
            return
        new_cap = max(need, cap * 2)
        for name in _COLUMNS:
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

    def seq_taken(self, seq: int) -> bool:
        row = int(np.searchsorted(self.seqs[: self.n], seq))
        return row < self.n and int(self.seqs[row]) == seq

    def insert(self, rec: MemoryRecord, vec: np.ndarray, mid: str, seq: int) -> None:
        """Put a memory at its place in seq order (at the end, unless it keeps an older seq)."""
        n = self.n
        self.grow(n + 1)
        row = n if n == 0 or seq > self.seqs[n - 1] else int(np.searchsorted(self.seqs[:n], seq))
        if row < n:  # shift the younger rows down by one
            for name in _COLUMNS:
                col = getattr(self, name)
                col[row + 1: n + 1] = col[row:n].copy()
        self.emb[row] = vec
        self.importance[row] = rec.importance
        self.created[row] = rec.created_round
        self.last_access[row] = rec.last_access_round
        self.access[row] = rec.access_count
        self.seqs[row] = seq
        self.ids.insert(row, mid)
        self.texts.insert(row, rec.text)
        self.kinds.insert(row, rec.kind)
        self.extras.insert(row, dict(rec.extra))
        self.n = n + 1
        if row == n:
            self.pos[mid] = row
        else:
            self.pos = {m: r for r, m in enumerate(self.ids)}
        self.next_seq = max(self.next_seq, seq + 1)

    def remove(self, memory_ids: Iterable[str]) -> list[str]:
        drop = sorted({self.pos[m] for m in memory_ids if m in self.pos})
        if not drop:
            return []
        removed = [self.ids[r] for r in drop]
        keep = np.ones(self.n, dtype=bool)
        keep[drop] = False
        for name in _COLUMNS:
            setattr(self, name, getattr(self, name)[: self.n][keep].copy())
        kept = np.flatnonzero(keep).tolist()
        self.ids = [self.ids[r] for r in kept]
        self.texts = [self.texts[r] for r in kept]
        self.kinds = [self.kinds[r] for r in kept]
        self.extras = [self.extras[r] for r in kept]
        self.n = len(kept)
        self.pos = {mid: r for r, mid in enumerate(self.ids)}
        return removed

    def implied_next_seq(self) -> int:
        """The next seq a store rebuilt from these rows alone would assume."""
        return int(self.seqs[self.n - 1]) + 1 if self.n else 0

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

    Every change (a new memory, a forgotten one, access statistics a retrieval touched) is
    tracked until `commit()`; `pending_changes()` gives it as a `MemoryDelta`. This class
    keeps nothing outside the process, so its delta is the whole store (`full`) and
    `restore` of it rebuilds the store exactly. Single-threaded: call it from one thread
    (the world's step) at a time.
    """

    #: Whether `pending_changes` is the whole store (nothing durable to build on).
    _full_deltas: ClassVar[bool] = True

    def __init__(self, embedder: Embedder, retrieval: RetrievalConfig | None = None):
        self.embedder = embedder
        self.retrieval = retrieval or RetrievalConfig()
        self.dim = int(embedder.dim)
        self._agents: dict[int, _AgentIndex] = {}
        self._closed = False
        # (agent_id, memory_id) -> the strongest change since the last commit (_TOUCHED,
        # _ADDED or _DELETED: a memory forgotten, and maybe written again under its id)
        self._changed: dict[tuple[int, str], int] = {}
        self._version = 0  # grows with every change: `pending_changes` caches per version
        self._delta: tuple[int, MemoryDelta] | None = None

    def _index(self, agent_id: int) -> _AgentIndex:
        idx = self._agents.get(agent_id)
        if idx is None:
            idx = self._agents[agent_id] = _AgentIndex(agent_id, self.dim)
        return idx

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this memory store is closed")

    def _mark(self, agent_id: int, memory_ids: Iterable[str], change: int) -> None:
        changed = self._changed
        for mid in memory_ids:
            key = (agent_id, mid)
            changed[key] = max(change, changed.get(key, _TOUCHED))
        self._version += 1

    # -- writing -------------------------------------------------------------------------
    def add(self, record: MemoryRecord) -> str:
        """Store one memory; returns its memory_id. Embeds the text if it has no embedding."""
        return self.add_many([record])[0]

    def add_many(self, records: Sequence[MemoryRecord]) -> list[str]:
        """Store a batch (one embedder call for all texts without embeddings); returns ids in order.

        A record with a `memory_id` keeps it, and its `seq` too when that is >= 0 (its row
        then sits among the older memories, in seq order)."""
        self._check_open()
        records = list(records)
        missing = [i for i, r in enumerate(records) if r.embedding is None]
        vectors: dict[int, np.ndarray] = {}
        if missing:
            embedded = np.asarray(self.embedder.embed([records[i].text for i in missing]), dtype=np.float32)
            for i, vec in zip(missing, embedded):
                vectors[i] = vec
        named: set[tuple[int, str]] = set()
        for i, rec in enumerate(records):
            vec = vectors[i] if i in vectors else rec.embedding
            if vec.shape != (self.dim,):
                raise ValueError(f"embedding of {rec.text[:40]!r} has shape {vec.shape}, expected ({self.dim},)")
            if rec.memory_id:
                idx = self._agents.get(rec.agent_id)
                if idx is not None and rec.memory_id in idx.pos:
                    raise ValueError(f"memory id {rec.memory_id!r} already exists")
                if (rec.agent_id, rec.memory_id) in named:
                    raise ValueError(f"memory id {rec.memory_id!r} appears twice in one batch")
                named.add((rec.agent_id, rec.memory_id))
                if rec.seq >= 0 and idx is not None and idx.seq_taken(rec.seq):
                    raise ValueError(f"seq {rec.seq} of agent {rec.agent_id} is taken")
        per_agent: dict[int, int] = defaultdict(int)
        for rec in records:
            per_agent[rec.agent_id] += 1
        for agent_id, extra_rows in per_agent.items():  # grow each agent's columns once
            idx = self._index(agent_id)
            idx.grow(idx.n + extra_rows)
        ids: list[str] = []
        added: dict[int, list[str]] = defaultdict(list)
        for i, rec in enumerate(records):
            idx = self._index(rec.agent_id)
            if rec.memory_id:
                mid, seq = rec.memory_id, rec.seq if rec.seq >= 0 else idx.next_seq
            else:
                mid, seq = idx.new_id()
            idx.insert(rec, vectors[i] if i in vectors else rec.embedding, mid, seq)
            ids.append(mid)
            added[rec.agent_id].append(mid)
        for agent_id, mids in added.items():
            self._mark(agent_id, mids, _ADDED)
        return ids

    def forget(self, agent_id: int, memory_ids: Iterable[str]) -> int:
        """Remove the given memories of one agent (unknown ids are ignored); returns how many."""
        self._check_open()
        idx = self._agents.get(check_agent_id(agent_id))
        if idx is None:
            return 0
        removed = idx.remove(memory_ids)
        if removed:
            self._mark(idx.agent_id, removed, _DELETED)
        return len(removed)

    # -- the commit point ----------------------------------------------------------------
    def pending_changes(self) -> MemoryDelta:
        """Everything changed since the last commit (the whole store when nothing of it is
        durable), as plain data to keep with a checkpoint. Cheap to call twice."""
        if self._delta is not None and self._delta[0] == self._version:
            return self._delta[1]
        gaps = {a: idx.next_seq for a, idx in sorted(self._agents.items())
                if idx.next_seq != idx.implied_next_seq()}
        if self._full_deltas:
            records = tuple(idx.record(r) for _, idx in sorted(self._agents.items()) for r in range(idx.n))
            delta = MemoryDelta(records=records, next_seq=gaps, full=True)
        else:
            records, touched, deleted = [], [], []
            for (agent_id, mid), change in self._changed.items():
                idx = self._agents[agent_id]
                row = idx.pos.get(mid)
                if change == _DELETED:  # a rewritten memory is deleted first: no stale field stays
                    deleted.append((agent_id, mid))
                if row is None:
                    continue
                if change == _TOUCHED:
                    touched.append((agent_id, mid, int(idx.last_access[row]), int(idx.access[row])))
                else:
                    records.append(idx.record(row))
            records.sort(key=lambda r: (r.agent_id, r.seq))
            delta = MemoryDelta(records=tuple(records), touched=tuple(sorted(touched)),
                                deleted=tuple(sorted(deleted)), next_seq=gaps)
        self._delta = (self._version, delta)
        return delta

    def commit(self) -> None:
        """Make `pending_changes()` durable (nothing to write in process) and start a new delta.

        Call it only once the delta is kept with the checkpoint that commits the round."""
        self._check_open()
        delta = self.pending_changes()
        if len(delta):
            self._write(delta)
        self._changed.clear()
        self._version += 1

    def restore(self, delta: MemoryDelta | None) -> None:
        """Put the store back to the state of the commit that `delta` (from `pending_changes`,
        kept with a checkpoint) made; None: nothing was ever committed, so the store is
        emptied. Meant for a freshly opened store; changes since the last commit are dropped.

        Idempotent: it does not matter whether that delta was written before, in part or
        not at all."""
        self._check_open()
        if delta is None:
            delta = MemoryDelta(full=True)
        if delta.full:
            self._agents.clear()
        deleted: dict[int, list[str]] = defaultdict(list)
        for agent_id, mid in delta.deleted:
            deleted[agent_id].append(mid)
        for rec in delta.records:  # a rewritten memory replaces the one with its id
            deleted[rec.agent_id].append(rec.memory_id)
        for agent_id, mids in deleted.items():
            if agent_id in self._agents:
                self._agents[agent_id].remove(mids)
        for rec in delta.records:
            self._index(rec.agent_id).insert(rec, rec.embedding, rec.memory_id, rec.seq)
        for agent_id, mid, last_access, access in delta.touched:
            idx = self._agents.get(agent_id)
            row = None if idx is None else idx.pos.get(mid)
            if row is not None:
                idx.last_access[row], idx.access[row] = last_access, access
        for agent_id in delta.next_seq:
            self._index(agent_id)
        for agent_id, idx in self._agents.items():
            idx.next_seq = delta.next_seq.get(agent_id, idx.implied_next_seq())
        if len(delta) or delta.full:
            self._write(delta)
        self._changed.clear()
        self._version += 1

    def _write(self, delta: MemoryDelta) -> None:
        """Write a committed delta where the store keeps its memories (nowhere in process)."""

    def close(self) -> None:
        """Release the store; it cannot be used afterwards. Uncommitted changes are dropped."""
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------
    def all(self, agent_id: int) -> list[MemoryRecord]:
        """All memories of an agent, oldest first (with embeddings)."""
        idx = self._agents.get(check_agent_id(agent_id))
        if idx is None:
            return []
        return [idx.record(r) for r in range(idx.n)]

    def count(self, agent_id: int | None = None) -> int:
        """How many memories one agent (or, with None, every agent) holds."""
        if agent_id is None:
            return sum(idx.n for idx in self._agents.values())
        idx = self._agents.get(check_agent_id(agent_id))
        return 0 if idx is None else idx.n

    def agent_ids(self) -> list[int]:
        """Agents holding at least one memory, sorted."""
        return sorted(a for a, idx in self._agents.items() if idx.n)

    def retrieve(self, agent_id: int, query: Query, k: int | None = None, now: int = 0, *,
                 touch: bool | None = None) -> list[ScoredMemory]:
        """The agent's top-k memories for a query text or vector, best first."""
        return self.retrieve_many([(agent_id, query, k)], now, touch=touch)[0]

    def retrieve_many(self, requests: Sequence[RetrievalRequest], now: int, *,
                      touch: bool | None = None) -> list[list[ScoredMemory]]:
        """Answer a whole round of requests; all text queries are embedded in one call.

        Every request is scored against the state before this call; then, if `touch`
        (None: the configured `touch_on_retrieve`), the returned memories are marked
        accessed at `now`. `touch=False` reads without any side effect.
        """
        self._check_open()
        requests = [(check_agent_id(a), q, self.retrieval.k if k is None else int(k)) for a, q, k in requests]
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
        touch = cfg.touch_on_retrieve if touch is None else touch
        results: list[list[ScoredMemory]] = []
        touched: dict[int, list[int]] = defaultdict(list)
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
            if touch:
                touched[agent_id].extend(rows)
        for agent_id, rows in touched.items():
            idx = self._agents[agent_id]
            arr = np.asarray(rows, dtype=np.int64)
            np.add.at(idx.access, arr, 1)
            idx.last_access[arr] = np.maximum(idx.last_access[arr], now)
            self._mark(agent_id, [idx.ids[r] for r in sorted(set(rows))], _TOUCHED)
        return results
