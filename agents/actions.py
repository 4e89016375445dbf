"""Typed actions. A policy returns one Action per active agent per round; the world applies it.

The pydantic models double as the JSON schemas an LLM must answer with (see agents/llm_policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

PolicyName = Literal["rule", "llm", "fallback", "hybrid"]


class Watch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: int
    rating: float = Field(ge=0.5, le=5.0, description="0.5 to 5 stars, in halves")
    feeling: str = Field(max_length=200, description="one line, in the user's voice")
    importance: int | None = Field(None, ge=1, le=10, description="how memorable this was, 1 (not) to 10 (very)")


class PageDecision(BaseModel):
    """What the user did with one page: watched some items, then opened the next page or left."""

    model_config = ConfigDict(extra="forbid")
    watches: list[Watch] = Field(default_factory=list)
    then: Literal["next_page", "leave"] = "leave"


@dataclass(frozen=True)
class DecisionMeta:
    """How a decision was made: by whom, how long it took, what it cost, why it fell back."""

    policy: PolicyName = "rule"
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallback_reason: str | None = None


@dataclass(frozen=True)
class BrowseAction:
    pages: tuple[tuple[tuple[int, ...], PageDecision], ...]  # (item ids shown, decision) per page seen
    meta: DecisionMeta = field(default_factory=DecisionMeta)
    kind: Literal["browse"] = "browse"


@dataclass(frozen=True)
class SearchAction:
    query: str
    results: tuple[int, ...]
    decision: PageDecision
    meta: DecisionMeta = field(default_factory=DecisionMeta)
    kind: Literal["search"] = "search"


@dataclass(frozen=True)
class IdleAction:
    meta: DecisionMeta = field(default_factory=DecisionMeta)
    kind: Literal["idle"] = "idle"


Action = Union[BrowseAction, SearchAction, IdleAction]


def watches_of(action: Action) -> list[Watch]:
    if isinstance(action, BrowseAction):
        return [w for _, page in action.pages for w in page.watches]
    if isinstance(action, SearchAction):
        return list(action.decision.watches)
    return []
