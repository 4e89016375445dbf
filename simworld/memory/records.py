"""The memory record, the scored result of a retrieval, and the delta of a commit."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Union, get_args

import numpy as np

MemoryKind = Literal["observation", "insight", "reflection", "interview"]
MEMORY_KINDS: tuple[str, ...] = get_args(MemoryKind)

#: Values allowed in `MemoryRecord.extra`: what a chromadb metadata field can hold.
ExtraValue = Union[str, int, float, bool]


def storable_float(value: float) -> float:
    """`value` to 15 significant digits. chromadb keeps metadata floats to about 16, which
    changes one float in ten in its last bit; 15 digits always come back bit for bit, so a
    store reopened from chroma scores exactly as the one that wrote it."""
    return float(f"{value:.15g}")


def check_agent_id(agent_id: object) -> int:
    """An agent id as the int it must be; a str (or bool, or float) is a caller's bug."""
    if isinstance(agent_id, (bool, np.bool_)) or not isinstance(agent_id, (int, np.integer)):
        raise TypeError(f"agent ids are ints, not {type(agent_id).__name__} ({agent_id!r})")
    return int(agent_id)


def memory_id_for(agent_id: int, seq: int) -> str:
    """The deterministic id of an agent's `seq`-th memory (0-based, never reused)."""
    return f"{agent_id}-{seq}"


@dataclass(frozen=True, eq=False)
class MemoryRecord:
    """One memory of one agent.

    Build a new record with `agent_id`, `text`, `kind`, `importance` and `created_round`
    (plus `embedding` if you have it, and `extra`; floats are kept to 15 significant
    digits, see `storable_float`); the store assigns `memory_id`
    (``f"{agent_id}-{seq}"``, deterministic) and `seq`, and starts the access statistics
    at `last_access_round = created_round`, `access_count = 0`. A record given a
    `memory_id` (and a `seq` >= 0) keeps them: that is how a consolidated insight takes the
    place of the memory it grew from. Records that a store returns carry the values it
    holds, including access statistics at the time of the call. Records are immutable;
    the store keeps the mutable state.
    """

    agent_id: int
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
        object.__setattr__(self, "agent_id", check_agent_id(self.agent_id))
        if self.kind not in MEMORY_KINDS:
            raise ValueError(f"memory kind must be one of {MEMORY_KINDS}, not {self.kind!r}")
        imp = float(self.importance)
        if not (0.0 <= imp <= 1.0) or math.isnan(imp):
            raise ValueError(f"importance must lie in [0, 1], not {self.importance!r}")
        object.__setattr__(self, "importance", storable_float(imp))
        if self.last_access_round is None:
            object.__setattr__(self, "last_access_round", int(self.created_round))
        extra = {}
        for key, value in self.extra.items():
            if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
                raise ValueError(
                    f"extra metadata must map str to str/int/float/bool, got {key!r}: {value!r}"
                )
            extra[key] = storable_float(value) if type(value) is float else value
        object.__setattr__(self, "extra", extra)
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


@dataclass(frozen=True, eq=False)
class MemoryDelta:
    """What a store changed since its last commit, as plain data (it goes into a checkpoint).

    `records`: memories added or rewritten (a consolidated insight takes the id of the
    memory it grew from), complete with embeddings and access statistics. `touched`:
    ``(agent_id, memory_id, last_access_round, access_count)`` of memories only a retrieval
    changed. `deleted`: ``(agent_id, memory_id)`` of memories forgotten since the commit
    (a rewritten memory is in `deleted` and in `records`: deletes are applied first).
    `next_seq`: each agent whose next memory number is not its largest seq + 1 (its latest
    memories were forgotten or merged away), so ids are never reused after a restore.
    `full`: the delta is the whole store, not changes on top of the previous commit (a
    store that keeps nothing itself, like `InProcessMemory`).

    Applying a delta is idempotent: deleting a missing id or rewriting a record twice
    leaves the same state.
    """

    records: tuple[MemoryRecord, ...] = ()
    touched: tuple[tuple[int, str, int, int], ...] = ()
    deleted: tuple[tuple[int, str], ...] = ()
    next_seq: dict[int, int] = field(default_factory=dict)
    full: bool = False

    def __len__(self) -> int:
        return len(self.records) + len(self.touched) + len(self.deleted)
