"""Typed, frozen configuration of the memory layer (the scenario's `memory:` section)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def parse_server_url(url: str) -> tuple[str, int, bool]:
    """(host, port, ssl) of a chroma server URL like http://127.0.0.1:8000; ValueError otherwise."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"a memory server must be a URL like http://127.0.0.1:8000, not {url!r}")
    ssl = parsed.scheme == "https"
    return parsed.hostname, parsed.port or (443 if ssl else 8000), ssl


class RetrievalConfig(BaseModel):
    """How memories are ranked for a query (Generative Agents' retrieval function).

    ``score = w_recency * recency + w_importance * importance + w_relevance * relevance``
    where, over the agent's memories, each component is min-max normalised to [0, 1]:
    ``recency = decay ** (now - last_access_round)``, ``importance`` is the record's
    importance and ``relevance`` is the cosine similarity of memory and query embeddings.
    A component that is equal for all of an agent's memories normalises to 0.
    Ties are broken by age: the older memory (smaller seq) first.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    k: int = Field(5, ge=1, description="Memories retrieved per query when the caller gives no k.")
    w_recency: float = Field(1.0, ge=0.0, description="Weight of the recency component.")
    w_importance: float = Field(1.0, ge=0.0, description="Weight of the importance component.")
    w_relevance: float = Field(1.0, ge=0.0, description="Weight of the relevance component.")
    decay: float = Field(
        0.95, gt=0.0, le=1.0,
        description="Recency decay per round since the memory was last accessed (1 = no decay).",
    )
    touch_on_retrieve: bool = Field(
        True,
        description="A retrieved memory counts as accessed: its last_access_round becomes "
        "`now` and its access_count grows by one (keeps it fresh and safe from forgetting).",
    )

    @model_validator(mode="after")
    def _some_weight(self) -> "RetrievalConfig":
        if self.w_recency + self.w_importance + self.w_relevance <= 0:
            raise ValueError("at least one of w_recency, w_importance, w_relevance must be > 0")
        return self


class MemoryConfig(BaseModel):
    """Where memories live, how they are embedded and ranked, and the pipeline constants."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    backend: Literal["chroma", "inprocess"] = Field(
        "chroma",
        description="`chroma`: durable chromadb store (in the run folder, or on `server`) "
        "mirrored by an in-process index, written once per round; `inprocess`: numpy only, "
        "kept whole in each round's checkpoint (for small runs).",
    )
    server: str | None = Field(
        None,
        description="URL of a chromadb server, e.g. http://127.0.0.1:8000. Unset: an "
        "embedded persistent store in the run folder's memory/ directory.",
    )
    collection: str = Field(
        "simworld-memories",
        description="Chroma collection name (on a server, the run id is appended so runs do not mix).",
    )
    embedder: Literal["minilm", "hashing"] = Field(
        "minilm",
        description="`minilm`: all-MiniLM-L6-v2 from an installed package; "
        "`hashing`: a model-free bag-of-words hash (tests, quick runs).",
    )
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)

    reflection_threshold: float = Field(
        5.0, gt=0.0,
        description="An agent reflects once the summed importance (each in [0, 1]) of the "
        "memories written since its last reflection reaches this value.",
    )
    reflection_drift: float = Field(
        0.3, ge=0.0, le=1.0,
        description="How far a rule agent's reflection moves its taste toward the genres of what "
        "it rated well since the last reflection (0: reflection changes nothing).",
    )
    consolidation_similarity: float = Field(
        0.9, ge=-1.0, le=1.0,
        description="Memories of one agent whose embeddings have cosine >= this are merged "
        "into one long-term insight.",
    )
    consolidation_bonus: float = Field(
        0.1, ge=0.0, le=1.0,
        description="Importance added to a consolidated memory per merged duplicate (capped at 1).",
    )
    forget_after_rounds: int = Field(
        20, ge=0,
        description="Only memories created more than this many rounds ago can be forgotten.",
    )
    forget_importance_below: float = Field(
        0.3, ge=0.0, le=1.0,
        description="...and only if their importance is below this...",
    )
    forget_access_below: int = Field(
        2, ge=0,
        description="...and they were retrieved fewer than this many times. "
        "Insights and reflections are never forgotten.",
    )
    write_batch_size: int = Field(
        4096, ge=1,
        description="Rows per chromadb write call (capped at the client's max batch size).",
    )

    @field_validator("server")
    @classmethod
    def _check_server(cls, value: str | None) -> str | None:
        if value is not None:
            parse_server_url(value)
        return value

    @field_validator("collection")
    @classmethod
    def _check_collection(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,100}[A-Za-z0-9]", value):
            raise ValueError(
                "collection must be 3-102 characters of letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit"
            )
        return value
