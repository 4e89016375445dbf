"""The `MemoryStore` protocol every memory backend implements (and the contract tests check)."""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence, runtime_checkable

from simworld.memory.index import IndexedMemory, Query, RetrievalRequest
from simworld.memory.records import MemoryDelta, MemoryRecord, ScoredMemory


@runtime_checkable
class MemoryStore(Protocol):
    """Long-term memories of many agents, ranked by recency, importance and relevance.

    Agent ids are ints. Writes are visible to reads at once. Rounds (`now`,
    `created_round`) are integers.

    Durability follows the run's commit point: every change since the last `commit()` is
    `pending_changes()`, a plain-data `MemoryDelta` the caller keeps with its checkpoint;
    `commit()` then writes that delta where the backend keeps memories. After a crash,
    a freshly opened store plus `restore(delta)` of the last checkpoint's delta is exactly
    the committed state, however much of that delta had been written. Nothing is written
    outside `commit()` and `restore()`; `close()` drops uncommitted changes.
    """

    def add(self, record: MemoryRecord) -> str:
        """Store one memory; returns its memory_id."""
        ...

    def add_many(self, records: Sequence[MemoryRecord]) -> list[str]:
        """Store a batch: one embedder call for every text without an embedding."""
        ...

    def retrieve(self, agent_id: int, query: Query, k: int | None = None, now: int = 0, *,
                 touch: bool | None = None) -> list[ScoredMemory]:
        """The agent's top-k memories for a query text or vector, best first; `touch=False`
        leaves access statistics as they were (None: as the retrieval config says)."""
        ...

    def retrieve_many(self, requests: Sequence[RetrievalRequest], now: int, *,
                      touch: bool | None = None) -> list[list[ScoredMemory]]:
        """A whole round of (agent_id, query, k) requests at once; queries embedded in one batch."""
        ...

    def all(self, agent_id: int) -> list[MemoryRecord]:
        """Every memory of the agent, oldest first."""
        ...

    def forget(self, agent_id: int, memory_ids: Iterable[str]) -> int:
        """Remove memories by id; returns how many were removed."""
        ...

    def pending_changes(self) -> MemoryDelta:
        """The changes since the last commit, as plain data for the checkpoint."""
        ...

    def commit(self) -> None:
        """Write `pending_changes()` durably (after the checkpoint holding it is written)."""
        ...

    def restore(self, delta: MemoryDelta | None) -> None:
        """On a freshly opened store: re-apply the last committed delta (idempotent); None
        (no commit yet) empties the store."""
        ...

    def close(self) -> None:
        """Release the store; uncommitted changes are dropped."""
        ...


class InProcessMemory(IndexedMemory):
    """Exact numpy store held in this process; nothing persists, so its `pending_changes()`
    is the whole store, and a checkpoint that keeps it restores it exactly. For tests and
    small runs (every checkpoint carries every memory)."""


__all__ = ["MemoryStore", "InProcessMemory"]
