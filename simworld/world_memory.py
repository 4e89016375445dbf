"""The round's use of agent memory (the glue between `SimWorld` and `simworld.memory`).

Before decide, every active agent retrieves its top-k memories for the page it is about to
see, in one batched call. In apply, what each agent did becomes memories, written in one
`add_many` per round. Then agents whose recent memories are important enough reflect (an LLM
agent writes 1-3 insights; a rule agent's taste moves toward what it rated well), and the
pipeline consolidates repeats and forgets old unimportant memories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simworld.catalog import Catalog, Item
from simworld.memory import (
    MemoryConfig, MemoryPipeline, MemoryRecord, MemoryStore, drift_taste, heuristic_importance,
    importance_from_scale, reflection_records, since_last_reflection,
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


def watch_memory(item: Item, rating: float, feeling: str, round_no: int, taste: np.ndarray,
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
    return MemoryRecord(agent_id="", text=text, importance=importance, created_round=round_no,
                        extra={"item_id": item.item_id, "rating": float(rating)})


def search_memory(query: str, round_no: int) -> MemoryRecord:
    return MemoryRecord(agent_id="", text=f"Round {round_no}: searched the catalog for \"{query}\".",
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
        """Top-k memory texts per agent for its query, in one batched retrieval."""
        ids = sorted(queries)
        k = self.config.retrieval.k
        results = self.store.retrieve_many([(str(a), queries[a], k) for a in ids], now=now)
        return {a: tuple(s.text for s in found) for a, found in zip(ids, results)}

    def peek(self, agent_id: int, query: str, now: int) -> tuple[str, ...]:
        """Top-k memory texts for a query without marking them accessed (an interview that
        must leave the agent as it was)."""
        saved = self.store.retrieval
        self.store.retrieval = saved.model_copy(update={"touch_on_retrieve": False})
        try:
            found = self.store.retrieve(str(agent_id), query, self.config.retrieval.k, now)
        finally:
            self.store.retrieval = saved
        return tuple(s.text for s in found)

    def texts(self, agent_id: int) -> list[str]:
        """Everything the agent remembers, oldest first (observations, insights, reflections)."""
        return [f"[{r.kind}, round {r.created_round}, importance {r.importance:.2f}] {r.text}"
                for r in self.store.all(str(agent_id))]

    # -- apply
    def remember(self, records: dict[int, list[MemoryRecord]]) -> None:
        """Write the round's new memories (agent id -> records) in one batch, in agent order."""
        batch = [MemoryRecord(agent_id=str(a), text=r.text, kind=r.kind, importance=r.importance,
                              created_round=r.created_round, extra=r.extra)
                 for a in sorted(records) for r in records[a]]
        if batch:
            self.store.add_many(batch)

    def note(self, agent_id: int, text: str, *, kind: str, importance: float, round_no: int) -> None:
        """One memory written now, outside the round (e.g. a remembered interview), and flushed."""
        self.remember({agent_id: [MemoryRecord(agent_id="", text=text, kind=kind, importance=importance,
                                               created_round=round_no)]})
        self.flush()

    def due_for_reflection(self, agent_ids: list[int]) -> list[int]:
        return [a for a in sorted(agent_ids) if self.pipeline.should_reflect(str(a))]

    def recent(self, agent_id: int) -> list[MemoryRecord]:
        """The memories written since the agent last reflected, oldest first."""
        return since_last_reflection(self.store.all(str(agent_id)))

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
        records = [r for refl in sorted(reflections, key=lambda x: x.agent_id)
                   for r in reflection_records(str(refl.agent_id), refl.insights, round_no, REFLECTION_IMPORTANCE)]
        if records:
            self.store.add_many(records)

    def maintain(self, agent_ids: list[int], now: int):
        """Consolidate repeats and forget old, unimportant, unused memories."""
        return self.pipeline.maintain([str(a) for a in agent_ids], now)

    # -- durability
    def forget_after(self, round_no: int, agent_ids: list[int]) -> int:
        """Drop memories written after `round_no` (a resumed run replays that round)."""
        dropped = 0
        for agent_id in agent_ids:
            late = [r.memory_id for r in self.store.all(str(agent_id)) if r.created_round > round_no]
            if late:
                dropped += self.store.forget(str(agent_id), late)
        return dropped

    def flush(self) -> None:
        self.store.flush()

    def close(self) -> None:
        self.store.close()
