"""The memory pipeline in the spirit of RecAgent and Generative Agents, as pure pieces.

Observations enter as short memories with an importance in [0, 1] (`heuristic_importance`
for rule agents; an LLM's own 1-10 answer, part of its structured decision, through
`importance_from_scale` for LLM agents); near-duplicates are consolidated into long-term
insights (`consolidate`); once the importance written since the last reflection passes
a threshold the agent reflects (`should_reflect`, `reflection_records`); old unimportant,
unused memories are forgotten (`forgettable`). Nothing here calls an LLM or knows about
agents: callers pass records. Everything is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from simworld.memory.config import MemoryConfig
from simworld.memory.records import MemoryRecord

if TYPE_CHECKING:
    from simworld.memory.store import MemoryStore

PROTECTED_KINDS: tuple[str, ...] = ("insight", "reflection")


# -- importance -------------------------------------------------------------------------

def novelty(vector: np.ndarray, existing: np.ndarray | Sequence[np.ndarray]) -> float:
    """1 - the highest cosine similarity to the agent's existing memory vectors (1 when none)."""
    mat = np.asarray(existing, dtype=np.float32)
    if mat.size == 0:
        return 1.0
    mat = mat.reshape(-1, np.asarray(vector).shape[-1])
    best = float(np.max(mat @ np.asarray(vector, dtype=np.float32)))
    return float(np.clip(1.0 - best, 0.0, 1.0))


def heuristic_importance(
    *,
    rating: float | None = None,
    rating_min: float = 0.5,
    rating_max: float = 5.0,
    novelty: float = 0.0,
    base: float = 0.2,
    w_extremity: float = 0.5,
    w_novelty: float = 0.3,
) -> float:
    """Importance in [0, 1] without an LLM, for rule agents.

    ``base + w_extremity * extremity + w_novelty * novelty``, clipped to [0, 1], where
    extremity is how far the rating lies from the middle of the scale (0 at the middle,
    1 at either end; 0 without a rating) and novelty is in [0, 1] (see `novelty`).
    A 5-star or 0.5-star rating of something new scores 1.0; a middling rating of
    something familiar scores `base`.
    """
    extremity = 0.0
    if rating is not None:
        mid = (rating_min + rating_max) / 2.0
        half = (rating_max - rating_min) / 2.0
        extremity = min(abs(float(rating) - mid) / half, 1.0) if half > 0 else 0.0
    value = base + w_extremity * extremity + w_novelty * float(np.clip(novelty, 0.0, 1.0))
    return float(np.clip(value, 0.0, 1.0))


def importance_from_scale(value: float, lo: float = 1.0, hi: float = 10.0) -> float:
    """Map an LLM's poignancy score on [lo, hi] (Generative Agents: 1-10) to [0, 1], clamped."""
    return float(np.clip((float(value) - lo) / (hi - lo), 0.0, 1.0))


# -- reflection -------------------------------------------------------------------------

def since_last_reflection(records: Sequence[MemoryRecord]) -> list[MemoryRecord]:
    """The records written after the agent's latest reflection (all of them if none)."""
    ordered = sorted(records, key=lambda r: r.seq)
    last = max((i for i, r in enumerate(ordered) if r.kind == "reflection"), default=-1)
    return [r for r in ordered[last + 1:] if r.kind != "reflection"]


def should_reflect(records_since_last_reflection: Iterable[MemoryRecord | float], threshold: float) -> bool:
    """True once the summed importance of the memories since the last reflection reaches
    `threshold` (records or plain importance values)."""
    total = math.fsum(r.importance if isinstance(r, MemoryRecord) else float(r)
                      for r in records_since_last_reflection)
    return total >= threshold - 1e-9  # 0.3 + 0.3 + 0.3 + 0.1 reaches 1.0


def reflection_records(
    agent_id: int, insights: Sequence[str], now: int, importance: float = 0.8,
    extra: dict | None = None,
) -> list[MemoryRecord]:
    """Records for the 1-3 insights an agent wrote when it reflected (kind "reflection")."""
    return [
        MemoryRecord(agent_id=agent_id, text=text, kind="reflection", importance=importance,
                     created_round=now, extra=dict(extra or {}))
        for text in insights if text.strip()
    ]


def drift_taste(taste: np.ndarray, vectors: np.ndarray, weights: Sequence[float], rate: float) -> np.ndarray:
    """A rule agent's reflection: move its unit taste vector towards the weighted mean of
    memory vectors (negative weights push away), by `rate` in [0, 1]; returns a unit vector."""
    taste = np.asarray(taste, dtype=np.float32)
    vecs = np.asarray(vectors, dtype=np.float32).reshape(-1, taste.shape[0])
    w = np.asarray(weights, dtype=np.float32)
    if vecs.shape[0] == 0 or not np.any(w):
        return taste
    pull = w @ vecs
    norm = np.linalg.norm(pull)
    if norm == 0:
        return taste
    moved = (1.0 - rate) * taste + rate * (pull / norm)
    mnorm = np.linalg.norm(moved)
    return taste if mnorm == 0 else (moved / mnorm).astype(np.float32)


# -- consolidation ----------------------------------------------------------------------

@dataclass(frozen=True)
class Consolidation:
    """What consolidation decided for one agent: add `merged`, forget `removed`."""

    merged: list[MemoryRecord] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.merged)


def consolidate(
    records: Sequence[MemoryRecord],
    threshold: float,
    bonus: float = 0.1,
    kinds: tuple[str, ...] = ("observation", "insight"),
    min_group: int = 2,
) -> Consolidation:
    """Merge one agent's near-duplicate memories into long-term insights.

    Leader clustering in seq order: each not-yet-grouped memory of `kinds` gathers every
    later ungrouped one whose cosine similarity to it is >= `threshold`. A group of at
    least `min_group` becomes one record of kind "insight" with the text and embedding of
    its most important member (the latest on ties), importance ``max + bonus * (size-1)``
    (capped at 1), the earliest created_round, the latest last_access_round, the summed
    access_count, and ``extra["merged_count"]`` = how many original memories it stands for.

    The insight takes the place of the group's leader, its oldest member: its memory_id
    and seq. So it is no new memory: it sits where its group began, and counts toward the
    next reflection only if that memory did (an insight of memories an agent already
    reflected on does not make it reflect, or pull its taste, again). `removed` lists
    every member, the leader too (the store forgets them, then adds the insight under
    the leader's id). The records need embeddings (as `MemoryStore.all` returns them).
    """
    pool = sorted((r for r in records if r.kind in kinds), key=lambda r: r.seq)
    if len(pool) < min_group:
        return Consolidation()
    if any(r.embedding is None for r in pool):
        raise ValueError("consolidate needs records with embeddings (use MemoryStore.all)")
    mat = np.stack([r.embedding for r in pool]).astype(np.float32)
    sim = mat @ mat.T
    grouped = np.zeros(len(pool), dtype=bool)
    merged: list[MemoryRecord] = []
    removed: list[str] = []
    for i in range(len(pool)):
        if grouped[i]:
            continue
        members = [i] + [j for j in range(i + 1, len(pool)) if not grouped[j] and sim[i, j] >= threshold]
        if len(members) < min_group:
            continue
        grouped[members] = True
        group = [pool[j] for j in members]
        rep = max(group, key=lambda r: (r.importance, r.seq))
        count = sum(int(r.extra.get("merged_count", 1)) for r in group)
        extra = dict(rep.extra)
        extra["merged_count"] = count
        merged.append(MemoryRecord(
            agent_id=rep.agent_id, text=rep.text, kind="insight",
            memory_id=pool[i].memory_id, seq=pool[i].seq,
            importance=min(1.0, max(r.importance for r in group) + bonus * (len(group) - 1)),
            created_round=min(r.created_round for r in group),
            last_access_round=max(r.last_access_round for r in group),
            access_count=sum(r.access_count for r in group),
            embedding=rep.embedding, extra=extra,
        ))
        removed.extend(r.memory_id for r in group)
    return Consolidation(merged, removed)


# -- forgetting -------------------------------------------------------------------------

def forgettable(
    records: Sequence[MemoryRecord],
    now: int,
    *,
    after_rounds: int,
    importance_below: float,
    access_below: int,
    protected_kinds: tuple[str, ...] = PROTECTED_KINDS,
) -> list[str]:
    """Ids of memories to forget: created more than `after_rounds` rounds before `now`,
    importance < `importance_below` and access_count < `access_below`; never a kind in
    `protected_kinds` (insights and reflections). In seq order."""
    return [
        r.memory_id for r in sorted(records, key=lambda r: r.seq)
        if r.kind not in protected_kinds
        and now - r.created_round > after_rounds
        and r.importance < importance_below
        and r.access_count < access_below
    ]


# -- the pipeline over a store ----------------------------------------------------------

@dataclass(frozen=True)
class MaintenanceReport:
    """What `MemoryPipeline.maintain` did in a round."""

    consolidated: int = 0  # original memories merged away
    insights: int = 0  # consolidated insights written
    forgotten: int = 0


class MemoryPipeline:
    """Consolidation, forgetting and the reflection trigger applied to a store with the
    constants of a `MemoryConfig`. The store is any `MemoryStore`."""

    def __init__(self, store: "MemoryStore", config: MemoryConfig | None = None):
        self.store = store
        self.config = config or MemoryConfig()

    def should_reflect(self, agent_id: int) -> bool:
        """Whether the agent's importance since its last reflection reached the threshold."""
        return should_reflect(since_last_reflection(self.store.all(agent_id)),
                              self.config.reflection_threshold)

    def maintain(self, agent_ids: Iterable[int], now: int) -> MaintenanceReport:
        """Consolidate then forget for each agent (sorted); all insights go to the store in
        one `add_many`."""
        cfg = self.config
        new: list[MemoryRecord] = []
        consolidated = forgotten = 0
        for agent_id in sorted(set(agent_ids)):
            records = self.store.all(agent_id)
            plan = consolidate(records, cfg.consolidation_similarity, cfg.consolidation_bonus)
            if plan:
                consolidated += self.store.forget(agent_id, plan.removed)
                new.extend(plan.merged)
                gone = set(plan.removed)
                records = [r for r in records if r.memory_id not in gone]
            drop = forgettable(records, now, after_rounds=cfg.forget_after_rounds,
                               importance_below=cfg.forget_importance_below,
                               access_below=cfg.forget_access_below)
            if drop:
                forgotten += self.store.forget(agent_id, drop)
        if new:
            self.store.add_many(new)
        return MaintenanceReport(consolidated, len(new), forgotten)
