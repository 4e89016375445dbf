"""The memory record and the scored result of a retrieval."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Union, get_args

import numpy as np

MemoryKind = Literal["observation", "insight", "reflection", "interview"]
MEMORY_KINDS: tuple[str, ...] = get_args(MemoryKind)

#: Values allowed in `MemoryRecord.extra`: what a chromadb metadata field can hold.
ExtraValue = Union[str, int, float, bool]


def memory_id_for(agent_id: str, seq: int) -> str:
    """The deterministic id of an agent's `seq`-th memory (0-based, never reused)."""
    return f"{agent_id}-{seq}"


@dataclass(frozen=True, eq=False)
class MemoryRecord:
    """One memory of one agent.

    Build a new record with only `agent_id`, `text`, `kind`, `importance` and
    `created_round` (plus `embedding` if you have it, and `extra`); the store assigns
    `memory_id` (``f"{agent_id}-{seq}"``, deterministic), `seq`, and starts the access
    statistics at `last_access_round = created_round`, `access_count = 0`. Records that a
    store returns carry the values it holds, including access statistics at the time of
    the call. Records are immutable; the store keeps the mutable state.
    """

    agent_id: str
    text: str
    kind: MemoryKind = "observation"
    importance: float = 0.5
    created_round: int = 0
    last_access_round: int | None = None
    access_count: int = 0
    embedding: np.ndarray | None = field(default=None, repr=False)
    extra: dict[str, ExtraValue] = field(default_factory=dict)
    memory_id: str = ""
    seq: int = -1

    def __post_init__(self) -> None:
        object.__setattr__(self, "agent_id", str(self.agent_id))
        if self.kind not in MEMORY_KINDS:
            raise ValueError(f"memory kind must be one of {MEMORY_KINDS}, not {self.kind!r}")
        imp = float(self.importance)
        if not (0.0 <= imp <= 1.0) or math.isnan(imp):
            raise ValueError(f"importance must lie in [0, 1], not {self.importance!r}")
        object.__setattr__(self, "importance", imp)
        if self.last_access_round is None:
            object.__setattr__(self, "last_access_round", int(self.created_round))
        for key, value in self.extra.items():
            if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
                raise ValueError(
                    f"extra metadata must map str to str/int/float/bool, got {key!r}: {value!r}"
                )
        if self.embedding is not None:
            vec = np.asarray(self.embedding, dtype=np.float32)
            if vec.ndim != 1:
                raise ValueError("embedding must be a 1-d vector")
            object.__setattr__(self, "embedding", vec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemoryRecord):
            return NotImplemented
        same_vec = (self.embedding is None and other.embedding is None) or (
            self.embedding is not None
            and other.embedding is not None
            and np.array_equal(self.embedding, other.embedding)
        )
        return same_vec and self._key() == other._key()

    def _key(self) -> tuple:
        return (
            self.agent_id, self.text, self.kind, self.importance, self.created_round,
            self.last_access_round, self.access_count, tuple(sorted(self.extra.items())),
            self.memory_id, self.seq,
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class ScoredMemory:
    """A retrieved memory with its score and the three normalised components in [0, 1].

    `score = w_recency * recency + w_importance * importance + w_relevance * relevance`.
    `record` shows the access statistics from before this retrieval touched it.
    """

    record: MemoryRecord
    score: float
    recency: float
    importance: float
    relevance: float

    @property
    def memory_id(self) -> str:
        return self.record.memory_id

    @property
    def text(self) -> str:
        return self.record.text
