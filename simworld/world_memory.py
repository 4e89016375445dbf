"""The round's use of agent memory (the glue between `SimWorld` and `simworld.memory`).

Before decide, every active agent retrieves its top-k memories for the page it is about to
see, in one batched call. In apply, what each agent did becomes memories, written in one
`add_many` per round. Then agents whose recent memories are important enough reflect (an LLM
agent writes 1-3 insights; a rule agent's taste moves toward what it rated well), and the
pipeline consolidates repeats and forgets old unimportant memories.

Durability follows the round's commit point. At the end of a round the Simulation keeps
`pending_changes()` (everything the round did to memory, as plain data) in the checkpoint,
writes the checkpoint, and only then calls `commit()`, which writes that delta to the store.
On resume it opens the store, loads the checkpoint and calls `restore(delta)`: the memories
are exactly those of the committed round, whenever the previous process died.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simworld.catalog import Catalog, Item
from simworld.memory import (
    MaintenanceReport, MemoryConfig, MemoryDelta, MemoryKind, MemoryPipeline, MemoryRecord,
    MemoryStore, drift_taste, heuristic_importance, importance_from_scale, reflection_records,
    since_last_reflection,
)

REFLECTION_IMPORTANCE = 0.8


@dataclass(frozen=True)
class Reflection:
    """What reflecting did to one agent: its new taste (rule agents) and the insights written."""

    agent_id: int
    insights: tuple[str, ...]
    taste: np.ndarray | None = None


def page_query(pages: tuple[tuple[Item, ...], ...]) -> str:
    """What the agent is about to look at, as text to match memories against."""
    if not pages:
        return "looking for a film to watch"
    return "; ".join(f"{item.label} [{'/'.join(item.genres)}]" for item in pages[0])


def watch_memory(agent_id: int, item: Item, rating: float, feeling: str, round_no: int, taste: np.ndarray,
                 genre_row: np.ndarray, llm_importance: int | None) -> MemoryRecord:
    """One watched film as a memory. Importance: the LLM's own 1-10 score when it gave one,
    otherwise how extreme the rating was and how far the film lies from the agent's taste."""
    if llm_importance is not None:
        importance = importance_from_scale(llm_importance)
    else:
        norm = float(np.linalg.norm(genre_row))
        similarity = float(taste @ genre_row) / norm if norm else 0.0
        importance = heuristic_importance(rating=rating, novelty=1.0 - max(0.0, similarity))
    text = f"Round {round_no}: watched {item.label} ({', '.join(item.genres)}), rated {rating:g}/5. {feeling}".strip()
    return MemoryRecord(agent_id=agent_id, text=text, importance=importance, created_round=round_no,
                        extra={"item_id": item.item_id, "rating": float(rating)})


def search_memory(agent_id: int, query: str, round_no: int) -> MemoryRecord:
    """One catalog search as a memory."""
    return MemoryRecord(agent_id=agent_id, text=f"Round {round_no}: searched the catalog for \"{query}\".",
                        importance=0.3, created_round=round_no)


class WorldMemory:
    """Agent memories for one run: a `MemoryStore` plus the pipeline constants."""

    def __init__(self, store: MemoryStore, config: MemoryConfig, catalog: Catalog):
        self.store = store
        self.config = config
        self.catalog = catalog
        self.pipeline = MemoryPipeline(store, config)

    # -- before decide
    def recall(self, queries: dict[int, str], now: int) -> dict[int, tuple[str, ...]]:
        """Top-k memory texts per agent for its query, in one batched retrieval (the
        memories returned count as accessed, as the retrieval config says)."""
        ids = sorted(queries)
        k = self.config.retrieval.k
        results = self.store.retrieve_many([(a, queries[a], k) for a in ids], now=now)
        return {a: tuple(s.text for s in found) for a, found in zip(ids, results)}

    def peek(self, agent_id: int, query: str, now: int) -> tuple[str, ...]:
        """Top-k memory texts for a query without marking them accessed (an interview that
        must leave the agent as it was)."""
        found = self.store.retrieve(agent_id, query, self.config.retrieval.k, now, touch=False)
        return tuple(s.text for s in found)

    def texts(self, agent_id: int) -> list[str]:
        """Everything the agent remembers, oldest first (observations, insights, reflections)."""
        return [f"[{r.kind}, round {r.created_round}, importance {r.importance:.2f}] {r.text}"
                for r in self.store.all(agent_id)]

    # -- apply
    def remember(self, records: dict[int, list[MemoryRecord]]) -> None:
        """Write the round's new memories (agent id -> that agent's records) in one batch,
        in agent order."""
        batch = []
        for agent_id in sorted(records):
            for record in records[agent_id]:
                if record.agent_id != agent_id:
                    raise ValueError(f"a memory of agent {record.agent_id} is filed under agent {agent_id}")
                batch.append(record)
        if batch:
            self.store.add_many(batch)

    def note(self, agent_id: int, text: str, *, kind: MemoryKind, importance: float, round_no: int) -> None:
        """One memory written outside the round (e.g. a remembered interview); like the
        round's memories it becomes durable at the next commit."""
        self.store.add(MemoryRecord(agent_id=agent_id, text=text, kind=kind, importance=importance,
                                    created_round=round_no))

    def due_for_reflection(self, agent_ids: list[int]) -> list[int]:
        """The agents (sorted) whose importance since their last reflection reached the threshold."""
        return [a for a in sorted(agent_ids) if self.pipeline.should_reflect(a)]

    def recent(self, agent_id: int) -> list[MemoryRecord]:
        """The memories written since the agent last reflected, oldest first."""
        return since_last_reflection(self.store.all(agent_id))

    def rule_reflection(self, agent_id: int, taste: np.ndarray, round_no: int) -> Reflection:
        """A rule agent's reflection: its taste moves toward the genres of the films it rated
        well (and away from those it disliked), weighted by importance."""
        rows, weights = [], []
        for record in self.recent(agent_id):
            item_id, rating = record.extra.get("item_id"), record.extra.get("rating")
            if item_id is None or rating is None or int(item_id) not in self.catalog:
                continue
            rows.append(self.catalog.genre_matrix[self.catalog.row(int(item_id))])
            weights.append(record.importance * (float(rating) - 3.0) / 2.0)
        new_taste = taste
        if rows:
            new_taste = drift_taste(taste, np.stack(rows), weights, self.config.reflection_drift).astype(taste.dtype)
        top = [self.catalog.genres[i] for i in np.argsort(-new_taste)[:2] if new_taste[i] > 0]
        insight = (f"Looking back on round {round_no}, I enjoy {' and '.join(top)} films most."
                   if top else f"Looking back on round {round_no}, nothing has stood out yet.")
        return Reflection(agent_id, (insight,), new_taste)

    def write_reflections(self, reflections: list[Reflection], round_no: int) -> None:
        """The reflections' insights as memories of kind "reflection", in one batch."""
        records = [r for refl in sorted(reflections, key=lambda x: x.agent_id)
                   for r in reflection_records(refl.agent_id, refl.insights, round_no, REFLECTION_IMPORTANCE)]
        if records:
            self.store.add_many(records)

    def maintain(self, agent_ids: list[int], now: int) -> MaintenanceReport:
        """Consolidate repeats and forget old, unimportant, unused memories."""
        return self.pipeline.maintain(agent_ids, now)

    # -- the commit point
    def pending_changes(self) -> MemoryDelta:
        """What memory changed since the last commit, as plain data: keep it in the round's
        checkpoint (then call `commit`)."""
        return self.store.pending_changes()

    def commit(self) -> None:
        """Write the delta that `pending_changes()` gave to the store. Call it only after the
        checkpoint holding that delta is written: the store must never run ahead of it."""
        self.store.commit()

    def restore(self, delta: MemoryDelta | None) -> None:
        """On resume, right after opening: put memory back exactly to the checkpoint that
        kept `delta`, whether its commit was written in full, in part or not at all (None:
        the run has no checkpoint yet, so it has no memories)."""
        self.store.restore(delta)

    def close(self) -> None:
        """Release the store; changes since the last commit are dropped (their round did not commit)."""
        self.store.close()
