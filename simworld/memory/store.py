"""The `MemoryStore` protocol every memory backend implements (and the contract tests check)."""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence, runtime_checkable

from simworld.memory.index import IndexedMemory, Query, RetrievalRequest
from simworld.memory.records import MemoryRecord, ScoredMemory


@runtime_checkable
class MemoryStore(Protocol):
    """Long-term memories of many agents, ranked by recency, importance and relevance.

    Agent ids are strings (other values are converted with `str`). Writes are visible to
    reads at once; `flush()` makes them durable where the backend persists anything
    (`add_many` and `close` flush too). Rounds (`now`, `created_round`) are integers.
    """

    def add(self, record: MemoryRecord) -> str:
        """Store one memory; returns its memory_id."""
        ...

    def add_many(self, records: Sequence[MemoryRecord]) -> list[str]:
        """Store a batch: one embedder call for every text without an embedding."""
        ...

    def retrieve(self, agent_id: str, query: Query, k: int | None = None, now: int = 0) -> list[ScoredMemory]:
        """The agent's top-k memories for a query text or vector, best first."""
        ...

    def retrieve_many(self, requests: Sequence[RetrievalRequest], now: int) -> list[list[ScoredMemory]]:
        """A whole round of (agent_id, query, k) requests at once; queries embedded in one batch."""
        ...

    def all(self, agent_id: str) -> list[MemoryRecord]:
        """Every memory of the agent, oldest first."""
        ...

    def forget(self, agent_id: str, memory_ids: Iterable[str]) -> int:
        """Remove memories by id; returns how many were removed."""
        ...

    def flush(self) -> None:
        """Make pending writes (adds, forgets, access statistics) durable."""
        ...

    def close(self) -> None:
        """Flush and release the store."""
        ...


class InProcessMemory(IndexedMemory):
    """Exact numpy store held in this process; nothing persists. For tests and quick runs."""


__all__ = ["MemoryStore", "InProcessMemory"]
