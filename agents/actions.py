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


# Films a user found outside the platform (friends, TV, cinemas: the rule policy's discovery
# channel) and what they did with them: (item ids weighed, decision), judged like a page.
Discovery = tuple[tuple[int, ...], PageDecision]


@dataclass(frozen=True)
class BrowseAction:
    pages: tuple[tuple[tuple[int, ...], PageDecision], ...]  # (item ids shown, decision) per page seen
    meta: DecisionMeta = field(default_factory=DecisionMeta)
    discovered: Discovery | None = None
    kind: Literal["browse"] = "browse"


@dataclass(frozen=True)
class SearchAction:
    query: str
    results: tuple[int, ...]
    decision: PageDecision
    meta: DecisionMeta = field(default_factory=DecisionMeta)
    discovered: Discovery | None = None
    kind: Literal["search"] = "search"


@dataclass(frozen=True)
class IdleAction:
    meta: DecisionMeta = field(default_factory=DecisionMeta)
    kind: Literal["idle"] = "idle"


Action = Union[BrowseAction, SearchAction, IdleAction]


# -- the social side (simworld/social): decided and applied by the social stages ----------------

@dataclass(frozen=True)
class Utterance:
    """One message of a chat, with the catalog films it names."""

    speaker: int
    listener: int
    text: str
    mentions: tuple[int, ...] = ()
    done: bool = False  # the speaker ends the chat with this message
    meta: DecisionMeta = field(default_factory=DecisionMeta)


@dataclass(frozen=True)
class ChatAction:
    """A chat with a friend, turn by turn (each speaker is its own agent)."""

    thread_id: int
    partner: int
    turns: tuple[Utterance, ...]
    meta: DecisionMeta = field(default_factory=DecisionMeta)
    kind: Literal["chat"] = "chat"


@dataclass(frozen=True)
class PostAction:
    """A post to one's followers about a film; with `parent_id`, a repost of that post."""

    post_id: int
    item_id: int
    text: str
    audience: tuple[int, ...]  # the followers it reaches
    verdict: float = 0.0  # the author's view of the film, -1 (hated) .. +1 (loved)
    parent_id: int | None = None
    meta: DecisionMeta = field(default_factory=DecisionMeta)
    kind: Literal["post"] = "post"


@dataclass(frozen=True)
class ReadFeedAction:
    """A visit to the feed: the posts read, in feed order, and what the reader did with them."""

    post_ids: tuple[int, ...]
    liked: tuple[int, ...] = ()  # post ids
    meta: DecisionMeta = field(default_factory=DecisionMeta)
    kind: Literal["read_feed"] = "read_feed"


@dataclass(frozen=True)
class FollowAction:
    target: int
    follow: bool  # False: unfollow
    meta: DecisionMeta = field(default_factory=DecisionMeta)
    kind: Literal["follow"] = "follow"


SocialAction = Union[ChatAction, PostAction, ReadFeedAction, FollowAction]


def watches_of(action: Action) -> list[Watch]:
    """The action's watches in the order they happened: its pages' (or search results'), then
    those of the films found outside the platform."""
    if isinstance(action, BrowseAction):
        watches = [w for _, page in action.pages for w in page.watches]
    elif isinstance(action, SearchAction):
        watches = list(action.decision.watches)
    else:
        return []
    return watches + list(action.discovered[1].watches) if action.discovered is not None else watches
