"""The simulated seeker: decisions by rule (the knobs), words by templates or an LLM.

What the seeker does in a turn (reveal constraints, answer or deflect a question, accept,
turn down, push back, give up) is decided by `Seeker` from its knobs and its hidden need,
with its own random streams, so every knob has a measurable, reproducible effect. How it
says it is a `Voice`: `TemplateVoice` (no LLM) or `LLMVoice` (the scenario's model; a
failed call falls back to the template and is marked in the turn). Then the leak guard,
and last the surface style (chit-chat, lower case, typos), which draws from a stream of its
own so that two style settings give the same dialogue apart from the surface.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence

import numpy as np
from pydantic import BaseModel

from simworld.catalog import Catalog
from simworld.crs.config import Knobs
from simworld.crs.leak import LeakGuard
from simworld.crs.need import Constraint, InformationNeed
from simworld.crs.records import Turn
from simworld.crs.text import add_typos, lower_case, mark_mentions, mentions, render, sentences
from simworld.population import Persona
from simworld.streams import Streams

Act = Literal["request", "answer", "deflect", "reject", "pushback", "accept", "give_up"]

GENRE_WORDS = {
    "Action": "action movie", "Adventure": "adventure movie", "Animation": "animated movie",
    "Children": "family movie", "Comedy": "comedy", "Crime": "crime movie", "Documentary": "documentary",
    "Drama": "drama", "Fantasy": "fantasy movie", "Film-Noir": "film noir", "Horror": "horror movie",
    "Musical": "musical", "Mystery": "mystery", "Romance": "romance", "Sci-Fi": "sci-fi movie",
    "Thriller": "thriller", "War": "war movie", "Western": "western",
}
DECADE_WORDS = {1920: "twenties", 1930: "thirties", 1940: "forties", 1950: "fifties", 1960: "sixties",
                1970: "seventies", 1980: "eighties", 1990: "nineties"}
GREETINGS = ("Hi!", "Hello!", "Hey there.", "Hi, how are you?", "Good evening!")
CHIT_CHAT_OPENERS = ("Haha,", "Oh,", "Well,", "Hmm,", "Lol,")
CHIT_CHAT_CLOSERS = ("Thanks!", "Thank you :)", "lol", "Hope you're having a good day!", "haha")
CHIT_CHAT = GREETINGS + CHIT_CHAT_OPENERS + CHIT_CHAT_CLOSERS

# What a question of the CRS is about, by its words (first match wins).
_QUESTION_KINDS = (
    ("similar_to", re.compile(r"\b(liked|loved|enjoyed|favou?rite|similar|recently watched)\b")),
    ("era", re.compile(r"\b(recent|older|old|new|newer|decade|year|era|classic|when)\b")),
    ("mood", re.compile(r"\b(mood|feel|light|intense|vibe)\b")),
    ("genre", re.compile(r"\b(genre|kind|type|sort)\b")),
)


def question_kind(text: str) -> str | None:
    low = text.lower()
    for kind, pattern in _QUESTION_KINDS:
        if pattern.search(low):
            return kind
    return None


def clause(c: Constraint, rng: np.random.Generator) -> str:
    """How a seeker words one constraint ('a comedy', 'from the 90s', 'something like @42')."""
    if c.kind == "genre":
        word = GENRE_WORDS.get(c.value, c.value.lower())
        article = "an" if word[0] in "aeiou" else "a"
        return _pick(rng, (f"{article} {word}", f"{article} good {word}", f"something in the {c.value.lower()} genre"))
    if c.kind == "era":
        decade = int(c.value)
        options = [f"from the {decade}s", f"something made in the {decade}s"]
        if 1930 <= decade <= 1990:  # '20s' would not say which, and nobody says '10s'
            options.append(f"from the {decade % 100:02d}s")
        if decade in DECADE_WORDS:
            options.append(f"from the {DECADE_WORDS[decade]}")
        if decade >= 2010:
            options.append(f"something fairly recent, from the {decade}s")
        if decade < 1970:
            options.append(f"an old classic from the {decade}s")
        return _pick(rng, options)
    if c.kind == "mood":
        return _pick(rng, (f"something {c.value}", f"something really {c.value}", f"a {c.value} one"))
    return _pick(rng, (f"something like @{c.value}", f"similar to @{c.value}", f"in the vein of @{c.value}"))


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


# -- what the seeker wants to say, and the voices that say it -----------------------------------

@dataclass(frozen=True)
class Intent:
    act: Act
    new: tuple[Constraint, ...] = ()  # constraints revealed now
    repeat: Constraint | None = None  # a constraint said before (push-back, 'like I said')
    item: int | None = None  # the film accepted or turned down
    elaborate: int = 0  # extra sentences (verbosity)
    vague: bool = False  # an opening request with nothing revealed (ambiguity)


class Voice(Protocol):
    name: str

    async def say(self, intent: Intent, persona: Persona, history: Sequence[Turn],
                  rng: np.random.Generator) -> tuple[str, str]:
        """The words of `intent` (films as @<id>), and how they were written ('template', 'llm', ...)."""


class TemplateVoice:
    name = "template"

    async def say(self, intent: Intent, persona: Persona, history: Sequence[Turn],
                  rng: np.random.Generator) -> tuple[str, str]:
        return self.words(intent, persona, rng), "template"

    def words(self, intent: Intent, persona: Persona, rng: np.random.Generator) -> str:
        new = [clause(c, rng) for c in intent.new]
        act = intent.act
        if act == "request":
            if intent.vague or not new:
                main = [_pick(rng, ("I'm looking for a movie to watch tonight.", "Can you recommend me a movie?",
                                    "I need something to watch.", "Any good movie suggestions?",
                                    "What should I watch tonight?", "I want to see a movie but I'm not sure what."))]
            else:
                head = _pick(rng, ("I'm looking for", "I'd like to watch", "Can you suggest", "I want to see",
                                   "Looking for", "Do you know"))
                end = "?" if head in ("Can you suggest", "Do you know") else "."
                main = [f"{head} {new[0]}{end}"] + self._more(new[1:], rng)
        elif act == "answer":
            if new:
                first = _pick(rng, ("I'd say {c}.", "{C}, I think.", "Maybe {c}.", "Hmm, {c}.",
                                    "I'm in the mood for {c}.", "{C} would be nice."))
                main = [first.format(c=new[0], C=_cap(new[0]))] + self._more(new[1:], rng)
            elif intent.repeat is not None:
                main = [f"Like I said, {clause(intent.repeat, rng)}."]
            else:
                main = [_pick(rng, ("I told you everything I know.", "That's all I can think of."))]
        elif act == "deflect":
            main = [_pick(rng, ("I'm not sure.", "I don't really know, just show me something.",
                                "Hard to say. Surprise me!", "Whatever you think is good.",
                                "No idea, what would you suggest?", "I don't mind."))]
        elif act == "reject":
            mention = f"@{intent.item}" if intent.item is not None else "that"
            main = [_pick(rng, ("Hmm, I don't think that's for me.", "Not really my thing.",
                                "That doesn't sound like what I want.", "I'm not feeling that one.",
                                "Nah, something else please.", f"I'm not sure about {mention}."))]
            main += [f"I'd prefer {new[0]}."] + self._more(new[1:], rng) if new else []
        elif act == "pushback":
            main = [_pick(rng, ("No, that's not what I asked for.", "That's not it at all.",
                                "You're not listening to me.", "Come on, that's nothing like what I said."))]
            if intent.repeat is not None:
                main.append(f"I said {clause(intent.repeat, rng)}.")
            main += [f"And {new[0]}."] + self._more(new[1:], rng) if new else []
        elif act == "accept":
            m = f"@{intent.item}"
            main = [_pick(rng, (f"Oh, {m} sounds great! I'll watch it.", f"Perfect, {m} it is.",
                                f"I haven't seen {m}, that sounds like what I want.",
                                f"Great, I'll check out {m}.", f"Yes! {m} looks perfect."))]
        else:  # give_up
            main = [_pick(rng, ("I don't think this is working, thanks anyway.",
                                "Never mind, I'll find something myself.", "I'll look somewhere else, bye.",
                                "Forget it, thanks for trying."))]
        extra = [self._elaboration(slot, persona, rng) for slot in range(intent.elaborate)]
        return " ".join(main + extra)

    @staticmethod
    def _more(rest: Sequence[str], rng: np.random.Generator) -> list[str]:
        forms = ("Preferably {c}.", "Maybe {c}.", "Ideally {c}.", "{C}, if possible.", "Also {c}.")
        return [_pick(rng, forms).format(c=c, C=_cap(c)) for c in rest]

    @staticmethod
    def _elaboration(slot: int, persona: Persona, rng: np.random.Generator) -> str:
        if slot == 0:
            job = persona.occupation
            article = "an" if job[0] in "aeiou" else "a"
            return _pick(rng, (f"I'm {article} {job} and it's been a long week.",
                               f"I work as {article} {job}, so I need something to unwind.",
                               f"I'm {article} {job} and I finally have a free evening."))
        if slot == 1:
            return _pick(rng, ("I'll watch it with my partner.", "My friends are coming over tonight.",
                               "I want something for the weekend.", "I'm watching alone tonight.",
                               "It's movie night with my family."))
        liked = persona.top_genres(2)
        if not liked:
            return "I watch a bit of everything."
        words = " and ".join(GENRE_WORDS.get(g, g.lower()).split()[0] for g in liked)
        return _pick(rng, (f"I usually like {words}.", f"I've been watching a lot of {words} lately.",
                           f"Normally I go for {words}."))


class Persuasion(BaseModel):
    score: Literal[0, 1, 2]


class LLMVoice:
    """The scenario's LLM words the seeker's intent (free text, no JSON: a 135M model writes
    a sentence far better than it fills a schema), cut to one sentence plus one per extra
    sentence the verbosity asked for. A failed call falls back to the template. A constraint
    the seeker decided to reveal that the model left out is added as a short template sentence
    (voice 'llm+template'), so the knobs keep their effect whatever the model writes."""

    name = "llm"

    def __init__(self, llm, catalog: Catalog, temperature: float | None = None):
        self.llm = llm
        self.catalog = catalog
        self.temperature = temperature
        self.template = TemplateVoice()

    def prompt(self, intent: Intent, persona: Persona, history: Sequence[Turn],
               rng: np.random.Generator) -> list[dict[str, str]]:
        length = ("in one short sentence" if intent.elaborate == 0 else
                  "in two or three sentences" if intent.elaborate < 3 else "in three or four sentences")
        said = "\n".join(f"{'You' if t.role == 'seeker' else 'Recommender'}: {render(t.text, self.catalog)}"
                         for t in history[-6:]) or "(nothing yet)"
        wants = ", ".join(render(clause(c, rng), self.catalog) for c in intent.new)
        title = render(f"@{intent.item}", self.catalog) if intent.item is not None else "that film"
        instruction = {
            "request": (f"ask for a movie recommendation and say you want {wants}" if wants and not intent.vague
                        else "ask for a movie recommendation without saying what kind"),
            "answer": (f"answer the recommender: you want {wants}" if wants else
                       f"say again that you want {render(clause(intent.repeat, rng), self.catalog)}"
                       if intent.repeat else "say you have nothing to add"),
            "deflect": "say you are not sure and let the recommender choose",
            "reject": f"politely turn down {title}" + (f" and say you would prefer {wants}" if wants else ""),
            "pushback": f"complain that {title} is not what you asked for" + (
                f"; you said you want {render(clause(intent.repeat, rng), self.catalog)}" if intent.repeat else ""),
            "accept": f"happily accept {title} and say you will watch it",
            "give_up": "give up politely and say goodbye",
        }[intent.act]
        system = (f"You are {persona.describe()} You are chatting with a movie recommender to find a film to "
                  f"watch. Write only your next message, in the first person, {length}.")
        return [{"role": "system", "content": system},
                {"role": "user", "content": f"The conversation so far:\n{said}\n\nYour next message should "
                                            f"{instruction}."}]

    async def say(self, intent: Intent, persona: Persona, history: Sequence[Turn],
                  rng: np.random.Generator) -> tuple[str, str]:
        from simworld.llm import LLMError, LLMRequest

        words_rng = np.random.Generator(np.random.PCG64(int(rng.integers(2**63))))
        try:
            reply = await self.llm.complete(LLMRequest(
                messages=self.prompt(intent, persona, history, words_rng), purpose="crs_seeker",
                agent_id=persona.agent_id, temperature=self.temperature,
                max_tokens=40 + 30 * intent.elaborate))
        except LLMError:
            return self.template.words(intent, persona, rng), "template-fallback"
        text = clean_llm_text(reply.text, max_sentences=1 + intent.elaborate)
        if not text:
            return self.template.words(intent, persona, rng), "template-fallback"
        text = mark_mentions(text, self.catalog)
        if intent.act == "accept" and intent.item is not None and intent.item not in mentions(text):
            text = f"{text} (@{intent.item})"
        left_out = [c for c in intent.new if not said(c, text)]
        if left_out:
            text += " " + " ".join(f"{_cap(clause(c, rng))}." for c in left_out)
            return text, "llm+template"
        return text, "llm"


def said(c: Constraint, text: str) -> bool:
    """Whether a text states a constraint (its genre, decade, mood word, or the film's mention)."""
    low = text.lower()
    if c.kind == "genre":
        return c.value.lower() in low or GENRE_WORDS.get(c.value, c.value).split()[0].lower() in low
    if c.kind == "era":
        decade = int(c.value)
        words = (str(decade), f"{decade % 100:02d}s", DECADE_WORDS.get(decade, str(decade)))
        return any(w in low for w in words)
    if c.kind == "mood":
        return c.value.lower() in low
    return f"@{c.value}" in text


def clean_llm_text(text: str, max_sentences: int = 4) -> str:
    """A model's message without quotes, speaker labels or a run-on tail."""
    t = " ".join(text.replace("\n", " ").split()).strip().strip('"').strip()
    t = re.sub(r"^(you|seeker|user|me)\s*:\s*", "", t, flags=re.I)
    return " ".join(sentences(t)[:max_sentences])


# -- the seeker -----------------------------------------------------------------------------------

@dataclass
class SeekerState:
    pending: list[Constraint]
    disclosed: list[Constraint] = field(default_factory=list)
    patience_left: int = 0
    satisfaction: float = 0.5
    rejected: list[int] = field(default_factory=list)
    accepted: int | None = None
    done: bool = False


@dataclass(frozen=True)
class Move:
    """The seeker's turn, ready to record."""

    act: Act
    text: str
    disclosed: tuple[Constraint, ...]
    accepted: int | None
    rejected: tuple[int, ...]
    satisfaction: float
    patience_left: int
    constraints_disclosed: int
    leaks: int
    voice: str
    judged: int | None = None  # rule persuasiveness (0-2) of the CRS turn it answers, if that recommended


class Seeker:
    """One seeker in one dialogue. Its three streams: decisions, words, surface style."""

    def __init__(self, persona: Persona, need: InformationNeed, knobs: Knobs, catalog: Catalog,
                 streams: Streams, index: int, voice: Voice, guard: LeakGuard):
        self.persona, self.need, self.knobs, self.catalog = persona, need, knobs, catalog
        self.voice, self.guard = voice, guard
        self.decide_rng = streams.generator("crs_seeker", index, 0)
        self.words_rng = streams.generator("crs_seeker", index, 1)
        self.style_rng = streams.generator("crs_seeker", index, 2)
        self.state = SeekerState(pending=list(need.constraints), patience_left=int(knobs.patience))
        self.turns = 0

    # -- decisions --------------------------------------------------------------------------------
    def _how_many(self) -> int:
        d = self.knobs.disclosure
        return int(math.floor(d)) + int(self.decide_rng.random() < d - math.floor(d))

    def _reveal(self, n: int, prefer: str | None = None) -> tuple[Constraint, ...]:
        pending = self.state.pending
        if prefer is not None:
            pending.sort(key=lambda c: c.kind != prefer)  # stable: the asked-for kind first
        out = tuple(pending[:n])
        del pending[:n]
        self.state.disclosed.extend(out)
        return out

    def _elaborate(self) -> int:
        return sum(int(self.decide_rng.random() < self.knobs.verbosity) for _ in range(3))

    async def open(self) -> Move:
        """The first request: vague with chance `ambiguity`, else at least one constraint."""
        vague = self.decide_rng.random() < self.knobs.ambiguity
        n = self._how_many()
        new = () if vague else self._reveal(max(1, n))
        intent = Intent("request", new=new, elaborate=self._elaborate(), vague=vague)
        return await self._say(intent, history=(), first=True)

    async def react(self, crs_turn: Turn, history: Sequence[Turn]) -> Move:
        """Answer the CRS's turn: judge what it proposed, else answer or deflect its question."""
        k, s = self.knobs, self.state
        self.turns += 1
        proposed = [i for i in crs_turn.recommended if i in self.catalog]
        judged = None
        if proposed:
            matches = [self.need.match(self.catalog.get(i), self.catalog) for i in proposed]
            draws = [self.decide_rng.random() for _ in proposed]  # one per film, whatever happens
            for item, m, u in zip(proposed, matches, draws):
                if item in self.need.targets or u < k.leniency * m * m:
                    s.accepted = item
                    break
            if s.accepted is not None:
                s.satisfaction, s.done = 1.0, True
                judged = 2
                return await self._say(Intent("accept", item=s.accepted), history, judged=judged)
            best = max(matches)
            judged = 1 if best >= 0.5 else 0
            s.rejected.extend(proposed)
            bad = best < 0.5
            pushback = bad and self.decide_rng.random() < k.frustration
            s.patience_left -= 2 if pushback else 1
            s.satisfaction = float(np.clip(s.satisfaction + 0.3 * (best - 0.5) - 0.1 - (0.1 if pushback else 0),
                                           0, 1))
            new = self._reveal(self._how_many())
            if s.patience_left <= 0:
                return await self._give_up(history, judged, rejected=tuple(proposed))
            failed = next((c for c in s.disclosed if not c.met_by(self.catalog.get(proposed[0]), self.catalog)
                           and c not in new), None)
            act: Act = "pushback" if pushback else "reject"
            intent = Intent(act, new=new, repeat=failed if pushback else None, item=proposed[0],
                            elaborate=self._elaborate())
            return await self._say(intent, history, judged=judged, rejected=tuple(proposed))
        s.patience_left -= 1
        s.satisfaction = float(np.clip(s.satisfaction - 0.05, 0, 1))
        cooperative = self.decide_rng.random() < k.cooperativeness
        n = self._how_many()
        if s.patience_left <= 0:
            return await self._give_up(history, None)
        if cooperative:
            new = self._reveal(max(1, n), prefer=question_kind(crs_turn.text))
            repeat = None
            if not new and s.disclosed:
                repeat = s.disclosed[int(self.decide_rng.integers(len(s.disclosed)))]
            intent = Intent("answer", new=new, repeat=repeat, elaborate=self._elaborate())
        else:
            intent = Intent("deflect", elaborate=0)
        return await self._say(intent, history)

    async def _give_up(self, history: Sequence[Turn], judged: int | None, rejected: tuple[int, ...] = ()) -> Move:
        self.state.done = True
        return await self._say(Intent("give_up"), history, judged=judged, rejected=rejected)

    # -- words --------------------------------------------------------------------------------------
    async def _say(self, intent: Intent, history: Sequence[Turn], first: bool = False,
                   judged: int | None = None, rejected: tuple[int, ...] = ()) -> Move:
        text, voice = await self.voice.say(intent, self.persona, history, self.words_rng)
        named = {i for t in history if t.role == "recommender" for i in (*t.mentions, *t.recommended)}
        text, leaks = self.guard.clean(text, allowed=named)
        text = self._style(text, first)
        s = self.state
        return Move(act=intent.act, text=text, disclosed=intent.new,
                    accepted=s.accepted if intent.act == "accept" else None, rejected=rejected,
                    satisfaction=round(s.satisfaction, 4), patience_left=s.patience_left,
                    constraints_disclosed=len(s.disclosed), leaks=leaks, voice=voice, judged=judged)

    def _style(self, text: str, first: bool) -> str:
        rng, k = self.style_rng, self.knobs
        chat, where, pick = rng.random(), rng.random(), rng.random()
        if chat < k.chit_chat:
            if first:
                text = f"{GREETINGS[int(pick * len(GREETINGS))]} {text}"
            elif where < 0.5:
                text = f"{CHIT_CHAT_OPENERS[int(pick * len(CHIT_CHAT_OPENERS))]} {text[:1].lower()}{text[1:]}"
            else:
                text = f"{text} {CHIT_CHAT_CLOSERS[int(pick * len(CHIT_CHAT_CLOSERS))]}"
        if rng.random() < k.lowercase:
            text = lower_case(text)
        return add_typos(text, k.typos, rng)

    # -- judging the CRS ----------------------------------------------------------------------------
    async def judge(self, judged: Sequence[int], turns: Sequence[Turn], llm=None) -> tuple[float | None, str]:
        """Persuasiveness 0..2 of the CRS's recommendations: the mean of the rule's judgements of
        each recommending turn (`judged`: 2 accepted, 1 meets half the constraints, 0 otherwise),
        or the LLM's judgement of the last recommending turn (the rule's where the call fails)."""
        rule_score = float(np.mean(judged)) if judged else None
        last = next((t for t in reversed(turns) if t.role == "recommender" and t.recommended), None)
        if llm is None or last is None:
            return rule_score, "rule"
        from simworld.llm import LLMError, LLMRequest

        wants = ", ".join(render(clause(c, self.words_rng), self.catalog) for c in self.need.constraints)
        prompt = (f"You wanted a film: {wants or 'anything good'}. The recommender said: "
                  f"\"{render(last.text, self.catalog)}\"\nHow persuasive was it? Answer 0 (not at all), "
                  "1 (somewhat) or 2 (very) as JSON.")
        try:
            reply = await llm.complete(LLMRequest(messages=[{"role": "user", "content": prompt}],
                                                  response_model=Persuasion, purpose="crs_judge",
                                                  agent_id=self.persona.agent_id, max_tokens=16))
        except LLMError:
            return rule_score, "rule"
        return float(reply.parsed.score), "llm"  # type: ignore[union-attr]
