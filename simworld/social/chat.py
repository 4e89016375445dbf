"""Chats turn by turn, and the speakers that write them.

`run_chat` alternates two participants. Each message is written by the speaker's own
`Speaker` (templates, or one LLM call per message with the speaker's persona, memories and
recent watches), and the films it names are resolved to catalog ids. A chat ends when a
speaker marks its message as the last (from the second message on: the friend always
answers) or at `max_turns`.

An LLM message that does not fit its schema is asked for once more with the error; a second
failure lets the template speaker write that message, recorded as policy=fallback (house
rule 6: never a silent default).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simworld.agents.actions import DecisionMeta, Utterance
from simworld.agents.prompting import system_message
from simworld.catalog import Catalog
from simworld.population import Persona
from simworld.social.mentions import TitleMatcher
from simworld.social.state import DiaryEntry

MESSAGE_CHARS = 200


@dataclass(frozen=True)
class Participant:
    """What a speaker knows about itself (never the other's mind)."""

    agent_id: int
    persona: Persona
    taste: np.ndarray
    watched: Mapping[int, float]  # item id -> its rating
    diary: tuple[DiaryEntry, ...] = ()  # recent watches with the feelings written then
    memories: tuple[str, ...] = ()  # retrieved memories (LLM speakers)

    @property
    def name(self) -> str:
        return self.persona.name

    @property
    def first_name(self) -> str:
        return self.persona.name.split()[0]


@dataclass(frozen=True)
class TurnContext:
    me: Participant
    other: Participant  # speakers use only its name
    turns: tuple[Utterance, ...]  # the chat so far
    intents: tuple[str | None, ...]  # what each message did (template speakers), None for LLM ones
    number: int  # this message's position, 0-based
    max_turns: int
    round: int
    rng: np.random.Generator  # the chat's own stream
    end_chance: float = 0.3


@dataclass(frozen=True)
class Reply:
    text: str
    done: bool = False
    intent: str | None = None
    meta: DecisionMeta = field(default_factory=DecisionMeta)


class Speaker(Protocol):
    name: str

    async def say(self, ctx: TurnContext) -> Reply: ...


class ChatReply(BaseModel):
    """The JSON an LLM speaker answers with."""

    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=2, max_length=MESSAGE_CHARS, description="your next message, 1-2 sentences")
    done: bool = Field(description="true if this message ends the chat")


class PostReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    post: str = Field(min_length=5, max_length=MESSAGE_CHARS, description="the post, 1-2 sentences")


CHAT_PROMPT = """You are texting your friend {other} about films.
Films you watched lately:
{diary}
What you remember:
{memories}
The chat so far:
{transcript}
Write your next message to {other_first}: one or two short sentences in your own voice. Name films by their titles. Set "done" to true to say goodbye and end the chat."""

POST_PROMPT = """You watched {title} ({genres}) and rated it {rating:g}/5. You noted: "{feeling}"
Write a short post about it for the people who follow you: one or two sentences in your own voice, naming the film."""


def _diary_lines(me: Participant, catalog: Catalog) -> str:
    lines = [f"- {catalog.get(e.item_id).label}: you rated it {e.rating:g}/5. {e.feeling}".strip()
             for e in reversed(me.diary) if e.item_id in catalog]
    return "\n".join(lines[:4]) or "- nothing lately"


def _transcript(ctx: TurnContext, names: Mapping[int, str]) -> str:
    if not ctx.turns:
        return "(you start the chat)"
    return "\n".join(f"{names[t.speaker]}: {t.text}" for t in ctx.turns)


class LLMSpeaker:
    """One LLM call per message, as the speaker (its persona, memories and watches)."""

    name = "llm"

    def __init__(self, llm: Any, catalog: Catalog, fallback: Speaker):
        self.llm = llm
        self.catalog = catalog
        self.fallback = fallback

    async def say(self, ctx: TurnContext) -> Reply:
        from simworld.llm import LLMOutputError, LLMRequest

        started = time.perf_counter()
        names = {ctx.me.agent_id: "You", ctx.other.agent_id: ctx.other.first_name}
        prompt = CHAT_PROMPT.format(
            other=ctx.other.name, other_first=ctx.other.first_name, diary=_diary_lines(ctx.me, self.catalog),
            memories="\n".join(f"- {m}" for m in ctx.me.memories[-5:]) or "- nothing special",
            transcript=_transcript(ctx, names))
        messages = [system_message(ctx.me.persona), {"role": "user", "content": prompt}]
        prompt_tokens = completion_tokens = 0
        error: Exception | None = None
        for _attempt in range(2):
            if error is not None:
                messages = messages + [{"role": "user", "content": f"Your answer was invalid: {error}. "
                                        "Answer again with valid JSON."}]
            try:
                response = await self.llm.complete(LLMRequest(
                    messages=messages, response_model=ChatReply, purpose="chat", agent_id=ctx.me.agent_id,
                    round=ctx.round))
            except LLMOutputError as exc:
                prompt_tokens += exc.usage.prompt_tokens
                completion_tokens += exc.usage.completion_tokens
                error = exc
                continue
            prompt_tokens += response.usage.prompt_tokens
            completion_tokens += response.usage.completion_tokens
            reply: ChatReply = response.parsed
            text = " ".join(reply.message.split())
            meta = DecisionMeta(policy="llm", latency_ms=(time.perf_counter() - started) * 1000,
                                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            return Reply(text, done=reply.done, meta=meta)
        fallback = await self.fallback.say(ctx)
        meta = DecisionMeta(policy="fallback", latency_ms=(time.perf_counter() - started) * 1000,
                            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                            fallback_reason=f"{type(error).__name__}: {error}"[:300])
        return Reply(fallback.text, done=fallback.done, intent=fallback.intent, meta=meta)

    async def write_post(self, me: Participant, entry: DiaryEntry, round_no: int) -> tuple[str, DecisionMeta] | None:
        """A post about a film the speaker watched, or None when the LLM fails twice."""
        from simworld.llm import LLMOutputError, LLMRequest

        started = time.perf_counter()
        item = self.catalog.get(entry.item_id)
        prompt = POST_PROMPT.format(title=item.label, genres=", ".join(item.genres), rating=entry.rating,
                                    feeling=entry.feeling)
        messages = [system_message(me.persona), {"role": "user", "content": prompt}]
        tokens = [0, 0]
        for _attempt in range(2):
            try:
                response = await self.llm.complete(LLMRequest(messages=messages, response_model=PostReply,
                                                              purpose="post", agent_id=me.agent_id, round=round_no))
            except LLMOutputError as exc:
                tokens[0] += exc.usage.prompt_tokens
                tokens[1] += exc.usage.completion_tokens
                messages = messages + [{"role": "user", "content": f"Your answer was invalid: {exc}. "
                                        "Answer again with valid JSON."}]
                continue
            tokens[0] += response.usage.prompt_tokens
            tokens[1] += response.usage.completion_tokens
            return " ".join(response.parsed.post.split()), DecisionMeta(
                policy="llm", latency_ms=(time.perf_counter() - started) * 1000, prompt_tokens=tokens[0],
                completion_tokens=tokens[1])
        return None


async def run_chat(a: Participant, b: Participant, speakers: Mapping[int, Speaker], *, max_turns: int,
                   round_no: int, rng: np.random.Generator, matcher: TitleMatcher,
                   end_chance: float = 0.3) -> tuple[Utterance, ...]:
    """The messages of one chat that `a` starts with `b`, alternating, each by its own speaker."""
    turns: list[Utterance] = []
    intents: list[str | None] = []
    names = frozenset(w for p in (a, b) for w in p.name.split())
    for number in range(max_turns):
        me, other = (a, b) if number % 2 == 0 else (b, a)
        ctx = TurnContext(me=me, other=other, turns=tuple(turns), intents=tuple(intents), number=number,
                          max_turns=max_turns, round=round_no, rng=rng, end_chance=end_chance)
        reply = await speakers[me.agent_id].say(ctx)
        known = frozenset(me.watched) | {e.item_id for e in me.diary}
        mentions = tuple(matcher.ids(reply.text, prefer=known, names=names))
        done = reply.done and number >= 1  # the friend always answers the opening message
        turns.append(Utterance(me.agent_id, other.agent_id, reply.text[:MESSAGE_CHARS * 2], mentions, done,
                               reply.meta))
        intents.append(reply.intent)
        if done:
            break
    return tuple(turns)
