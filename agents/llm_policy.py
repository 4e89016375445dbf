"""LLMPolicy: decisions by a language model, as typed JSON, validated; never guessed.

Each page is one structured call answered as a `PageDecision`. The answer is validated
against the page (only ids shown, ratings in half stars); a failure is sent back once with
the validation message, and a second failure hands the decision to the rule policy, recorded
as policy=fallback with the reason. Unparseable output is never mapped to a default item.
`VoicePolicy` is the hybrid in which the rule model chooses and the LLM voices the feelings.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from simworld.agents.actions import (
    Action, BrowseAction, DecisionMeta, IdleAction, PageDecision, SearchAction, Watch, watches_of,
)
from simworld.agents.observation import Observation
from simworld.agents.prompting import fit_to_budget, fixed_first_messages, item_lines, system_message, template
from simworld.agents.rule_policy import RulePolicy
from simworld.catalog import Item
from simworld.llm import LanguageModel, LLMOutputError, LLMRequest, LLMUsage


class SearchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=2, max_length=80)


class Feelings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feelings: list[str] = Field(description="one line per film, same order")


FEELING_CHARS = 72  # a bound in the grammar too: a small model otherwise rambles to max_tokens

# Per-call schemas: the page's ids as an enum and the exact counts, so that a model decoding
# under a JSON-schema grammar (the embedded one) cannot name a film that is not on the page.
@lru_cache(maxsize=4096)
def page_schema(ids: tuple[int, ...], max_watches: int) -> type[BaseModel]:
    watch = create_model("Watch", __base__=Watch, item_id=(Literal[ids], ...),  # type: ignore[valid-type]
                         importance=(int, Field(ge=1, le=10, description="how memorable, 1 (not) to 10 (very)")),
                         feeling=(str, Field(min_length=3, max_length=FEELING_CHARS,
                                             description="one line, in the user's voice")))
    return create_model("PageDecision", __base__=PageDecision, __doc__=PageDecision.__doc__,
                        watches=(list[watch], Field(default_factory=list, max_length=max_watches)))


class Insights(BaseModel):
    model_config = ConfigDict(extra="forbid")
    insights: list[str] = Field(min_length=1, max_length=3, description="1 to 3 first-person sentences")


@lru_cache(maxsize=64)
def feelings_schema(n: int) -> type[Feelings]:
    line = Annotated[str, StringConstraints(min_length=3, max_length=FEELING_CHARS)]
    return create_model("Feelings", __base__=Feelings,
                        feelings=(list[line], Field(min_length=n, max_length=n,
                                                    description="one line per film, same order")))


class InterviewAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str = Field(min_length=2, max_length=400, description="one to three sentences, in character")


async def interview_agent(model: LanguageModel, persona, memories: tuple[str, ...], question: str,
                          round_no: int) -> str:
    """An in-character answer to a researcher's question (asked between rounds: run it on the
    world's loop)."""
    prompt = fit_to_budget(lambda mems, _: template("interview").format(memories=_memories(mems), question=question),
                           memories, 1200)
    response = await model.complete(LLMRequest(
        messages=[system_message(persona), {"role": "user", "content": prompt}], response_model=InterviewAnswer,
        purpose="interview", agent_id=persona.agent_id, round=round_no))
    return response.parsed.answer.strip()


class InvalidDecision(ValueError):
    """A schema-valid answer that contradicts the page (unknown id, rating off the scale)."""


class _Tally:
    """The tokens of every call a decision made, answered or failed (they are all in the ledger)."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def add(self, usage: LLMUsage) -> None:
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens


def check_page_decision(decision: PageDecision, page: tuple[Item, ...], max_watches: int) -> PageDecision:
    shown = {item.item_id for item in page}
    seen: set[int] = set()
    watches = []
    for w in decision.watches:
        if w.item_id not in shown:
            raise InvalidDecision(f"item_id {w.item_id} is not on this page; use only ids {sorted(shown)}")
        if w.item_id in seen:
            raise InvalidDecision(f"item_id {w.item_id} is listed twice")
        seen.add(w.item_id)
        watches.append(w.model_copy(update={"rating": round(w.rating * 2) / 2, "feeling": w.feeling.strip()[:200]}))
    if len(watches) > max_watches:
        raise InvalidDecision(f"at most {max_watches} films per page, got {len(watches)}")
    return decision.model_copy(update={"watches": watches})


class LLMPolicy:
    name = "llm"

    def __init__(self, model: LanguageModel, fallback: RulePolicy, prompt_budget_tokens: int = 1200):
        self.model = model
        self.fallback = fallback
        self.budget = prompt_budget_tokens

    async def decide(self, obs: Observation) -> Action:
        started = time.perf_counter()
        tally = _Tally()
        spec = self.fallback.spec
        try:
            roll = obs.rng.random()
            if roll < spec.idle_rate:
                action: Action = IdleAction()
            elif roll < spec.idle_rate + spec.search_rate * 2 * obs.persona.curiosity or not obs.pages:
                action = await self._search(obs, tally)
            else:
                action = await self._browse(obs, tally)
            policy, reason = "llm", None
        except (LLMOutputError, InvalidDecision) as exc:
            action = self.fallback.decide_now(obs)
            policy, reason = "fallback", f"{type(exc).__name__}: {exc}"[:300]
        meta = DecisionMeta(policy=policy, latency_ms=(time.perf_counter() - started) * 1000,
                            prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens,
                            fallback_reason=reason)
        return replace(action, meta=meta)

    async def judge(self, obs: Observation, page: tuple[Item, ...]) -> tuple[PageDecision, str]:
        """One page judged on its own (the fidelity trials): the decision and who made it,
        "llm", or "fallback" when the model's answers were invalid twice."""
        try:
            return await self._judge(obs, page, False, _Tally()), "llm"
        except (LLMOutputError, InvalidDecision):
            return self.fallback.judge_page(obs, page, pages_seen=0, allow_next=False), "fallback"

    async def reflect(self, persona, memories: list[str], round_no: int) -> tuple[str, ...]:
        """1-3 insights about the agent's tastes from its recent memories (the memory pipeline
        asks when their importance passes the threshold). Raises LLMOutputError on bad output."""
        prompt = fit_to_budget(lambda mems, _: template("reflect").format(round=round_no, memories=_memories(mems)),
                               tuple(memories), self.budget)
        messages = [system_message(persona), {"role": "user", "content": prompt}]
        response = await self.model.complete(LLMRequest(messages=messages, response_model=Insights,
                                                        purpose="reflect", round=round_no,
                                                        agent_id=persona.agent_id))
        insights = tuple(text.strip()[:300] for text in response.parsed.insights if text.strip())
        if not insights:
            raise LLMOutputError(response.text, "no insight in the answer")
        return insights

    async def _browse(self, obs: Observation, tally: _Tally) -> BrowseAction:
        pages = []
        for index, page in enumerate(obs.pages):
            decision = await self._judge(obs, page, index + 1 < len(obs.pages), tally)
            pages.append((tuple(i.item_id for i in page), decision))
            if decision.then == "leave":
                break
        return BrowseAction(pages=tuple(pages))

    async def _search(self, obs: Observation, tally: _Tally) -> SearchAction:
        prompt = fit_to_budget(lambda mems, _: template("search_query").format(
            round=obs.round, memories=_memories(mems)), obs.memories, self.budget)
        answer = await self._ask(obs, prompt, SearchQuery, "search", tally)
        results = tuple(obs.search(answer.query, max(len(obs.pages[0]) if obs.pages else 10, 1)))
        page = tuple(obs.catalog.get(i) for i in results)
        decision = await self._judge(obs, page, False, tally) if page else PageDecision()
        return SearchAction(query=answer.query, results=results, decision=decision)

    async def _judge(self, obs: Observation, page: tuple[Item, ...], allow_next: bool, tally: _Tally) -> PageDecision:
        max_watches = self.fallback.spec.max_watches_per_page
        injected = " ".join(obs.extra.get("injected", ())) if obs.extra else ""
        prompt = fit_to_budget(lambda mems, desc: template("browse_page").format(
            round=obs.round, injected=f"News: {injected}\n" if injected else "", memories=_memories(mems),
            items=item_lines(page, desc), max_watches=max_watches), obs.memories, self.budget)

        def check(decision: PageDecision) -> PageDecision:
            plain = PageDecision.model_validate(decision.model_dump())  # drop the per-page subclass
            return check_page_decision(plain, page, max_watches)

        schema = page_schema(tuple(i.item_id for i in page), max_watches)
        decision = await self._ask(obs, prompt, schema, "decide", tally, check)
        return decision if allow_next else decision.model_copy(update={"then": "leave"})

    async def _ask(self, obs: Observation, prompt: str, schema: type[BaseModel], purpose: str, tally: _Tally,
                   check=None):
        """One structured call; on invalid output, one more with the error; then raise."""
        messages = [system_message(obs.persona), {"role": "user", "content": prompt}]
        last_error: Exception | None = None
        for attempt in range(2):
            if last_error is not None:
                messages = messages + [{"role": "user", "content":
                                        f"Your answer was invalid: {last_error}. Answer again with valid JSON."}]
            try:
                response = await self.model.complete(LLMRequest(
                    messages=messages, response_model=schema, purpose=purpose, agent_id=obs.agent_id,
                    round=obs.round))
                tally.add(response.usage)
                parsed = response.parsed
                return check(parsed) if check else parsed
            except LLMOutputError as exc:
                tally.add(exc.usage)  # the failed attempt was paid for too
                last_error = exc
            except InvalidDecision as exc:
                last_error = exc
        assert last_error is not None
        raise last_error


VOICED_FILMS = 2  # films per decision whose feelings the LLM writes; later ones keep the rule model's line


class VoicePolicy:
    """Hybrid: the calibrated rule model chooses and rates; the LLM writes the feelings."""

    name = "hybrid"

    def __init__(self, model: LanguageModel, rule: RulePolicy):
        self.model = model
        self.rule = rule

    async def decide(self, obs: Observation) -> Action:
        started = time.perf_counter()
        action = self.rule.decide_now(obs)
        watches = watches_of(action)[:VOICED_FILMS]
        tally = _Tally()
        if not watches:
            return replace(action, meta=DecisionMeta(policy="rule", latency_ms=(time.perf_counter() - started) * 1000))
        lines = "\n".join(f"- {obs.catalog.get(w.item_id).label}: {w.rating:g} stars" for w in watches)
        messages = fixed_first_messages(obs.persona, "voice", watched=lines)
        policy, reason = "hybrid", None
        try:
            response = await self.model.complete(LLMRequest(
                messages=messages, response_model=feelings_schema(len(watches)), purpose="voice",
                agent_id=obs.agent_id, round=obs.round))
            tally.add(response.usage)
            feelings = [f.strip()[:200] for f in response.parsed.feelings]
            if len(feelings) < len(watches) or any(not f for f in feelings[:len(watches)]):
                raise InvalidDecision(f"expected {len(watches)} feelings, got {len(feelings)}")
            action = _with_feelings(action, feelings[:len(watches)])
        except (LLMOutputError, InvalidDecision) as exc:
            if isinstance(exc, LLMOutputError):
                tally.add(exc.usage)
            policy, reason = "fallback", f"{type(exc).__name__}: {exc}"[:300]  # keep the rule model's lines
        meta = DecisionMeta(policy=policy, latency_ms=(time.perf_counter() - started) * 1000,
                            prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens,
                            fallback_reason=reason)
        return replace(action, meta=meta)


def _memories(memories: list[str]) -> str:
    return "\n".join(f"- {m}" for m in memories) if memories else "- nothing yet"


def _with_feelings(action: Action, feelings: list[str]) -> Action:
    """The first len(feelings) watches get the LLM's lines, in order; the rest keep theirs."""
    it = iter(feelings)

    def voiced(decision: PageDecision) -> PageDecision:
        return decision.model_copy(update={"watches": [w.model_copy(update={"feeling": next(it, w.feeling)})
                                                       for w in decision.watches]})

    if isinstance(action, BrowseAction):
        return replace(action, pages=tuple((shown, voiced(d)) for shown, d in action.pages))
    if isinstance(action, SearchAction):
        return replace(action, decision=voiced(action.decision))
    return action
