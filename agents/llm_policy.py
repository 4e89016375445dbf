"""LLMPolicy: decisions by a language model, as typed JSON, validated; never guessed.

Each page is one structured call answered as a `PageDecision`. The answer is validated
against the page (only ids shown, ratings in half stars); a failure is sent back once with
the validation message, and a second failure hands the decision to the rule policy, recorded
as policy=fallback with the reason. Unparseable output is never mapped to a default item.
`VoicePolicy` is the hybrid in which the rule model chooses and the LLM voices the feelings.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from simworld.agents.actions import (
    Action, BrowseAction, DecisionMeta, IdleAction, PageDecision, SearchAction, Watch, watches_of,
)
from simworld.agents.observation import Observation
from simworld.agents.prompting import few_shot_messages, fit_to_budget, item_lines, system_message, template
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
VOICE_TOKENS = 32  # one sentence of under 12 words; a longer answer is cut to its first sentence
VOICE_WORDS = 16  # a line longer than this rambles: the template speaks instead
RATING_WORDS = ((4.5, "you loved it"), (4.0, "you really liked it"), (3.5, "you liked it"),
                (3.0, "it was just okay"), (2.5, "it was a bit disappointing"), (1.5, "you disliked it"),
                (0.0, "you hated it"))
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def rating_words(rating: float) -> str:
    """A rating as the feeling it stands for: a small model copies the numbers it is shown."""
    return next(words for floor, words in RATING_WORDS if rating >= floor)


def voice_request(item: Item, rating: float) -> str:
    genres = ", ".join(g.lower() for g in item.genres[:2]) or "film"
    return f"{item.label} ({genres}): {rating_words(rating)}"


def voice_messages(item: Item, rating: float) -> list[dict[str, str]]:
    """One film's voice prompt: instructions and worked examples (the same for every call), then the
    film with its rating in words. Free text, one film a call: under a JSON grammar, or asked for
    several lines at once, the 135M model wrote ratings ("2.5 star"), titles and its persona."""
    return few_shot_messages("voice", voice_request(item, rating))


def first_sentence(text: str) -> str:
    """The answer's first line, unquoted, cut after its first sentence."""
    line = text.strip().split("\n", 1)[0].strip().strip('"').strip()
    end = _SENTENCE_END.search(line)
    return line[:end.end()] if end else line


@lru_cache(maxsize=1)
def _example_lines() -> frozenset[str]:
    return frozenset(m["content"].lower() for m in few_shot_messages("voice", "")[1:] if m["role"] == "assistant")


def voice_line_flags(text: str, item: Item, rating: float, speaker: str) -> set[str]:
    """What makes a voiced line read worse than the template: `voice_flags` (contradicts its rating,
    short, numbers, only the title, the speaker), "long" (over VOICE_WORDS) and "copied" (a
    worked example word for word)."""
    from simworld.text_realism import voice_flags

    flags = voice_flags(text, rating, item.title, speaker)
    if len(text.split()) > VOICE_WORDS:
        flags.add("long")
    if text.lower() in _example_lines():
        flags.add("copied")
    return flags


def gate_feelings(lines: list[str], films: list[tuple[Item, float]], templates: list[str],
                  speaker: str) -> tuple[list[str], dict[int, set[str]]]:
    """Each voiced line that reads worse than the template (`voice_line_flags`) is replaced by the
    template line. Returns the lines and, by item id, why each replaced one was."""
    kept, replaced = [], {}
    for text, (item, rating), template_line in zip(lines, films, templates):
        flags = voice_line_flags(text, item, rating, speaker)
        if flags:
            replaced[item.item_id] = flags
        kept.append(template_line if flags else text)
    return kept, replaced


def voice_seed(agent_id: int, round_no: int, item_id: int) -> int:
    """A seed per line: agents voicing the same film at the same rating should not all say the same."""
    return (agent_id * 1_000_003 + round_no * 7_919 + item_id) % 2**31


class VoicePolicy:
    """Hybrid: the calibrated rule model chooses and rates; the LLM writes the feelings, and the
    rule model's template lines stay wherever the LLM's read worse (`gate_feelings`). A decision
    with replaced lines gets a fallback row naming the items whose lines the templates wrote
    (`voice_gate_reason`); it is policy=fallback when none of the model's lines was kept."""

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
        films = [(obs.catalog.get(w.item_id), w.rating) for w in watches]
        answers = await asyncio.gather(*(self._line(obs, item, rating, tally) for item, rating in films))
        lines, replaced = gate_feelings([a or "" for a in answers], films, [w.feeling for w in watches],
                                        obs.persona.name)
        for (item, _), answer in zip(films, answers):
            if answer is None:
                replaced[item.item_id] = {"unusable"}
        action = _with_feelings(action, lines)
        policy = "fallback" if len(replaced) == len(watches) else "hybrid"
        meta = DecisionMeta(policy=policy, latency_ms=(time.perf_counter() - started) * 1000,
                            prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens,
                            fallback_reason=voice_gate_reason(replaced) if replaced else None)
        return replace(action, meta=meta)

    async def _line(self, obs: Observation, item: Item, rating: float, tally: _Tally) -> str | None:
        line, usage = await voice_line(self.model, item, rating, obs.agent_id, obs.round)
        tally.add(usage)
        return line


async def voice_line(model: LanguageModel, item: Item, rating: float, agent_id: int,
                     round_no: int) -> tuple[str | None, LLMUsage]:
    """The model's line for one film (its first sentence), with what the call cost; None when the
    answer was unusable (invalid, or cut off by VOICE_TOKENS before its first sentence ended)."""
    try:
        response = await model.complete(LLMRequest(
            messages=voice_messages(item, rating), purpose="voice", agent_id=agent_id, round=round_no,
            max_tokens=VOICE_TOKENS, seed=voice_seed(agent_id, round_no, item.item_id)))
    except LLMOutputError as exc:
        return None, exc.usage
    line = first_sentence(response.text)
    if not _SENTENCE_END.search(line) and response.usage.completion_tokens >= VOICE_TOKENS:
        return None, response.usage
    return line, response.usage


VOICE_GATE = "voice gate: template line for "


def voice_gate_reason(replaced: dict[int, set[str]]) -> str:
    """The fallback row's text: "voice gate: template line for item 12 (numeric, short); item 40 (title)"."""
    return VOICE_GATE + "; ".join(f"item {i} ({', '.join(sorted(f))})" for i, f in replaced.items())


def voice_gated_items(reason: str | None) -> dict[int, list[str]]:
    """The items (and flags) a fallback row's text says the templates voiced; {} for other rows."""
    if not reason or not reason.startswith(VOICE_GATE):
        return {}
    out = {}
    for part in reason[len(VOICE_GATE):].split("; "):
        head, _, flags = part.partition(" (")
        out[int(head.removeprefix("item "))] = flags.rstrip(")").split(", ")
    return out


def _memories(memories: list[str]) -> str:
    return "\n".join(f"- {m}" for m in memories) if memories else "- nothing yet"


def _with_feelings(action: Action, feelings: list[str]) -> Action:
    """The first len(feelings) watches (in the order of `watches_of`) get the LLM's lines; the rest keep theirs."""
    it = iter(feelings)

    def voiced(decision: PageDecision) -> PageDecision:
        return decision.model_copy(update={"watches": [w.model_copy(update={"feeling": next(it, w.feeling)})
                                                       for w in decision.watches]})

    if isinstance(action, BrowseAction):
        action = replace(action, pages=tuple((shown, voiced(d)) for shown, d in action.pages))
    elif isinstance(action, SearchAction):
        action = replace(action, decision=voiced(action.decision))
    else:
        return action
    if action.discovered is not None:  # films found outside the platform come last, as in watches_of
        shown, decision = action.discovered
        action = replace(action, discovered=(shown, voiced(decision)))
    return action
