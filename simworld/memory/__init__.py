"""Agent memory: records, stores (in-process and chromadb), retrieval and the pipeline.

A leaf layer: it knows nothing of agents, worlds, recommenders or LLMs. chromadb is
imported only when a chroma store is opened.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from simworld.memory.config import MemoryConfig, RetrievalConfig
from simworld.memory.index import Query, RetrievalRequest
from simworld.memory.pipeline import (
    Consolidation, MaintenanceReport, MemoryPipeline, consolidate, drift_taste, forgettable,
    heuristic_importance, importance_from_scale, novelty, reflection_records, should_reflect,
    since_last_reflection,
)
from simworld.memory.records import (
    MEMORY_KINDS, MemoryDelta, MemoryKind, MemoryRecord, ScoredMemory, memory_id_for,
)
from simworld.memory.store import InProcessMemory, MemoryStore

if TYPE_CHECKING:
    from simworld.embedding import Embedder
    from simworld.memory.chroma import ChromaMemory


def __getattr__(name: str):
    if name == "ChromaMemory":  # lazy: keeps chromadb out of imports that do not need it
        from simworld.memory.chroma import ChromaMemory

        return ChromaMemory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _collection_name(base: str, run_id: str | None) -> str:
    if not run_id:
        return base
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{base}-{run_id}")[:200].strip("-._")


def open_memory(
    config: MemoryConfig,
    run_dir: str | Path | None = None,
    embedder: "Embedder | None" = None,
    run_id: str | None = None,
) -> MemoryStore:
    """The store a scenario's `memory:` section asks for.

    `inprocess`: an `InProcessMemory`. `chroma` without `server`: an embedded persistent
    store in ``run_dir/memory`` (reopening the same run folder gives the memories of its
    last commit).
    `chroma` with `server`: the collection ``{config.collection}-{run_id}`` on that server.
    The embedder is built from `config.embedder` when not given.
    """
    if embedder is None:
        from simworld.embedding import make_embedder

        embedder = make_embedder(config.embedder)
    if config.backend == "inprocess":
        return InProcessMemory(embedder, config.retrieval)
    from simworld.memory.chroma import ChromaMemory

    kwargs = dict(retrieval=config.retrieval, write_batch_size=config.write_batch_size)
    if config.server:
        return ChromaMemory.server(config.server, embedder,
                                   collection=_collection_name(config.collection, run_id), **kwargs)
    if run_dir is None:
        raise ValueError("an embedded chroma memory needs the run folder (run_dir)")
    return ChromaMemory.persistent(Path(run_dir) / "memory", embedder,
                                   collection=config.collection, **kwargs)


__all__ = [
    "ChromaMemory", "Consolidation", "InProcessMemory", "MEMORY_KINDS", "MaintenanceReport",
    "MemoryConfig", "MemoryDelta", "MemoryKind", "MemoryPipeline", "MemoryRecord", "MemoryStore",
    "Query", "RetrievalConfig", "RetrievalRequest", "ScoredMemory", "consolidate", "drift_taste",
    "forgettable", "heuristic_importance", "importance_from_scale", "memory_id_for", "novelty",
    "open_memory", "reflection_records", "should_reflect", "since_last_reflection",
]
