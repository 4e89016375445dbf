"""The seekers' knobs each move their measured behaviour, both ways; the leak guard catches leaks."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import numpy as np
import pytest

from simworld.catalog import load_bundled_catalog
from simworld.crs.config import Knobs, KnobsSpec, parse_crs_scenario
from simworld.crs.dialogue import DialogueInfo, run_dialogue
from simworld.crs.leak import REPLACEMENT, LeakGuard
from simworld.crs.need import draw_need, genre_overlap
from simworld.crs.seeker import CHIT_CHAT, LLMVoice, Seeker, TemplateVoice
from simworld.crs.text import render, tokens
from simworld.errors import ScenarioError
from simworld.population import synthetic_personas
from simworld.streams import Streams
from tests.crs_fakes import AskingCRS, ProposingCRS, ScriptedLLM

CATALOG = load_bundled_catalog()
N = 40
QUIET = Knobs(cooperativeness=1.0, disclosure=1.0, patience=20, verbosity=0.0, leniency=0.0, frustration=0.0,
              ambiguity=0.0, lowercase=0.0, typos=0.0, chit_chat=0.0)


def dialogues(knobs: Knobs, crs, n: int = N, max_turns: int = 8, voice=None, seed: int = 3):
    """n dialogues of seekers with these knobs against `crs` (needs drawn as a generation draws them)."""
    streams = Streams(seed)
    personas = synthetic_personas(n, CATALOG, streams.generator("population"))

    async def one(i: int):
        p = personas[i]
        need = draw_need(p, CATALOG, [], streams.generator("crs_need", i))
        guard = LeakGuard({t: CATALOG.get(t).title for t in need.targets})
        seeker = Seeker(p, need, knobs, CATALOG, streams, i, voice or TemplateVoice(), guard)
        info = DialogueInfo(index=i, persona={}, knobs=knobs.as_dict(), seeker_model="template", seed=seed)
        return await run_dialogue(seeker, crs, info, max_turns=max_turns, ranking_k=10)

    async def all_of():
        return list(await asyncio.gather(*(one(i) for i in range(n))))

    return asyncio.run(all_of())


def bad_films(request):
    """A film that meets none of a typical need: the least similar genre, never the same twice."""
    offered = set(request.proposed)
    for item in CATALOG.items:
        if item.item_id not in offered and item.genres == ("Documentary",):
            return item.item_id
    return next(i.item_id for i in CATALOG.items if i.item_id not in offered)


class NearMisses:
    """Proposes non-target films sharing the target's genres (they meet part of the need)."""

    name, model = "near-misses", "none"

    def __init__(self, targets_of):
        self.targets_of = targets_of

    async def respond(self, request):
        targets = self.targets_of[request.seeker_id]
        first = CATALOG.get(targets[0])
        offered = set(request.proposed)
        others = [i for i in CATALOG.items if i.item_id not in targets and i.item_id not in offered]
        item = max(others, key=lambda i: genre_overlap(i, first)).item_id
        return await ProposingCRS(lambda r: item).respond(request)


def seeker_texts(ds):
    return [t.text for d in ds for t in d.seeker_turns]


def ordered(low: float, mid: float, high: float) -> None:
    assert low < mid < high, (low, mid, high)


def measure(knob: str, values, fn, crs_factory, **kw):
    return [fn(dialogues(replace(QUIET, **{knob: v}), crs_factory(), **kw)) for v in values]


# -- each knob, both directions -----------------------------------------------------------------------

def test_cooperativeness_answers_questions_instead_of_deflecting():
    def answered(ds):
        acts = [t.act for d in ds for t in d.seeker_turns[1:] if t.act in ("answer", "deflect")]
        return acts.count("answer") / len(acts)

    ordered(*measure("cooperativeness", (0.1, 0.5, 0.9), answered, AskingCRS))


def test_disclosure_reveals_more_constraints_per_turn():
    def after_two_turns(ds):
        return np.mean([d.seeker_turns[1].constraints_disclosed for d in ds if len(d.seeker_turns) > 1])

    ordered(*measure("disclosure", (0.2, 1.0, 2.5), after_two_turns, lambda: ProposingCRS(bad_films)))


def test_patience_is_turns_before_giving_up():
    def turns(ds):
        assert {d.end_reason for d in ds} == {"gave_up"}
        return np.mean([len(d.recommender_turns) for d in ds])

    low, mid, high = measure("patience", (2, 4, 8), turns, lambda: ProposingCRS(bad_films), max_turns=12)
    ordered(low, mid, high)
    assert (low, mid, high) == (2, 4, 8)  # no frustration: exactly one turn of patience per bad film


def test_verbosity_lengthens_utterances():
    def length(ds):
        return np.mean([len(tokens(t)) for t in seeker_texts(ds)])

    ordered(*measure("verbosity", (0.0, 0.5, 1.0), length, AskingCRS))


def test_leniency_accepts_near_misses():
    streams = Streams(3)
    personas = synthetic_personas(N, CATALOG, streams.generator("population"))
    targets = {p.agent_id: draw_need(p, CATALOG, [], streams.generator("crs_need", i)).targets
               for i, p in enumerate(personas)}

    def accepted(ds):
        assert all(d.accepted_item not in d.targets for d in ds if d.accepted_item)
        return np.mean([d.success for d in ds])

    ordered(*measure("leniency", (0.0, 0.5, 1.0), accepted, lambda: NearMisses(targets), max_turns=4))


def test_frustration_pushes_back_after_bad_suggestions():
    def pushback(ds):
        acts = [t.act for d in ds for t in d.seeker_turns[1:] if t.act in ("reject", "pushback")]
        return acts.count("pushback") / len(acts)

    ordered(*measure("frustration", (0.0, 0.5, 1.0), pushback, lambda: ProposingCRS(bad_films), max_turns=5))


def test_ambiguity_makes_the_first_request_vague():
    def vague(ds):
        return np.mean([d.seeker_turns[0].constraints_disclosed == 0 for d in ds])

    ordered(*measure("ambiguity", (0.0, 0.5, 1.0), vague, AskingCRS, max_turns=1))


def test_lowercase_writes_utterances_in_lower_case():
    def lower(ds):
        texts = seeker_texts(ds)
        return np.mean([t == t.lower() for t in texts])

    ordered(*measure("lowercase", (0.0, 0.5, 1.0), lower, AskingCRS))


def test_typos_alter_words_and_nothing_else():
    clean = seeker_texts(dialogues(QUIET, AskingCRS()))

    def altered(ds):
        texts = seeker_texts(ds)
        assert len(texts) == len(clean)
        pairs = [(a, b) for x, y in zip(clean, texts) for a, b in zip(x.split(), y.split())]
        assert all(len(x.split()) == len(y.split()) for x, y in zip(clean, texts))  # same words, some misspelt
        return np.mean([a != b for a, b in pairs])

    low, mid, high = measure("typos", (0.0, 0.1, 0.4), altered, AskingCRS)
    assert low == 0.0
    ordered(low, mid, high)


def test_chit_chat_adds_small_talk():
    phrases = tuple(p.lower() for p in CHIT_CHAT)

    def chatty(ds):
        texts = [t.lower() for t in seeker_texts(ds)]
        return np.mean([t.startswith(phrases) or t.endswith(phrases) for t in texts])

    ordered(*measure("chit_chat", (0.0, 0.5, 1.0), chatty, AskingCRS))


def test_knobs_drawn_from_distributions_are_per_seeker_and_repeatable():
    spec = KnobsSpec(patience={"dist": "choice", "values": [2, 9]}, verbosity={"dist": "uniform", "low": 0.1,
                                                                                "high": 0.9},
                     leniency={"dist": "beta", "a": 2, "b": 5}, typos={"dist": "normal", "mean": 0.05, "sd": 0.5})
    streams = Streams(1)
    drawn = [spec.draw(streams, i) for i in range(50)]
    assert {k.patience for k in drawn} == {2, 9}
    assert len({k.verbosity for k in drawn}) == 50 and all(0.1 <= k.verbosity <= 0.9 for k in drawn)
    assert all(0.0 <= k.typos <= 0.5 for k in drawn)  # a normal is clipped to the knob's range
    assert all(k.cooperativeness == Knobs.cooperativeness for k in drawn)
    assert [spec.draw(Streams(1), i) for i in range(50)] == drawn


def test_knob_values_out_of_range_name_the_field():
    with pytest.raises(ScenarioError) as err:
        parse_crs_scenario({"crs": {"kind": "retrieval"}, "seeker": {"knobs": {
            "patience": 0, "leniency": {"dist": "uniform", "low": 0.5, "high": 2.0}, "typo": 0.1}}})
    problems = "\n".join(err.value.problems)
    assert "seeker.knobs.patience: must lie in [1, 50], got 0" in problems
    assert "seeker.knobs.leniency: uniform bounds must lie in [0, 1], got [0.5, 2]" in problems
    assert "seeker.knobs.typo: unknown field" in problems
    with pytest.raises(ScenarioError) as err:
        parse_crs_scenario({"crs": {"kind": "retrieval"}, "seeker": {"knobs": {
            "patience": "fast", "verbosity": {"dist": "gauss"}, "leniency": {"dist": "uniform", "low": 0.9, "high": 0.1}}}})
    assert err.value.problems == [  # one line per knob, whatever pydantic's union tried
        "seeker.knobs.patience: must be a number or a distribution such as {dist: uniform, low: 0.2, high: 0.8}, "
        "got 'fast'",
        "seeker.knobs.verbosity: input tag 'gauss' found using 'dist' does not match any of the expected tags: "
        "'uniform', 'normal', 'beta', 'choice'",
        "seeker.knobs.leniency: low (0.9) must not exceed high (0.1)"]


# -- the leak guard ---------------------------------------------------------------------------------

MATRIX = next(i for i in CATALOG.items if i.title == "The Matrix")


def guard() -> LeakGuard:
    return LeakGuard({MATRIX.item_id: MATRIX.title}, titles={i.item_id: i.title for i in CATALOG.items})


def test_the_leak_guard_catches_a_planted_title_and_counts_it():
    text, leaks = guard().clean(f"I want something mind-bending. Honestly I'd love @{MATRIX.item_id}.")
    assert leaks == 1 and text == "I want something mind-bending."
    text, leaks = guard().clean("I keep thinking of the matrix, you know?")  # written out, one sentence
    assert leaks == 1 and "matrix" not in text.lower() and REPLACEMENT in text
    text, leaks = guard().clean("Something like The Matrx. From the 90s.")  # a typo does not hide it
    assert leaks == 1 and text == "From the 90s."


def test_the_leak_guard_leaves_clean_text_and_everyday_words_alone():
    g = LeakGuard({i.item_id: i.title for i in CATALOG.items if i.title in ("Up", "It", "The Matrix")})
    for text in ("I'm up for anything. Is it scary?", "A sci-fi movie from the 90s, please."):
        assert g.clean(text) == (text, 0)


def test_a_target_the_crs_already_named_may_be_said():
    assert guard().clean(f"Great, I'll watch @{MATRIX.item_id}.", allowed={MATRIX.item_id})[1] == 0


def test_a_planted_leak_in_an_llm_seekers_words_never_reaches_the_crs():
    streams = Streams(3)
    personas = synthetic_personas(N, CATALOG, streams.generator("population"))
    target = draw_need(personas[0], CATALOG, [], streams.generator("crs_need", 0)).targets[0]
    title = CATALOG.get(target).title
    llm = ScriptedLLM(plant=f"Maybe {title}?")
    ds = dialogues(replace(QUIET, patience=3), AskingCRS(), n=1, voice=LLMVoice(llm, CATALOG), max_turns=3)
    d = ds[0]
    assert d.leaks == len(d.seeker_turns) >= 2  # every turn had the planted sentence, every one was caught
    for t in d.seeker_turns:
        assert t.voice in ("llm", "llm+template")
        assert title.lower() not in render(t.text, CATALOG).lower() and f"@{target}" not in t.text
    assert llm.calls["crs_seeker"] == len(d.seeker_turns)


def test_a_similar_to_film_never_gives_a_target_away():
    alien = next(i for i in CATALOG.items if i.title == "Alien")
    aliens = [i for i in CATALOG.items if i.title == "Aliens"]
    g = LeakGuard({alien.item_id: alien.title})
    if aliens:
        assert g.title_leaks(aliens[0].title)
    assert not g.title_leaks("Jaws")


def test_template_seekers_never_leak_in_a_generation_sized_run():
    ds = dialogues(Knobs(), ProposingCRS(bad_films), n=60)
    assert sum(d.leaks for d in ds) == 0
    for d in ds:
        for t in d.seeker_turns:
            assert not set(t.mentions) & set(d.targets) or t.act == "accept"
            assert not re.search(r"@\d+", t.text) or set(t.mentions) <= {int(c["value"]) for c in d.constraints
                                                                           if c["kind"] == "similar_to"} | set(
                i for r in d.recommender_turns for i in r.recommended)


def test_what_an_llm_seeker_decided_to_reveal_reaches_the_crs_even_if_the_model_leaves_it_out():
    ds = dialogues(replace(QUIET, patience=4), AskingCRS(), n=6, voice=LLMVoice(ScriptedLLM(), CATALOG), max_turns=4)
    revealing = [t for d in ds for t in d.seeker_turns if t.disclosed]
    assert revealing and all(t.voice == "llm+template" for t in revealing)  # the model never names them
    for t in revealing:
        assert t.text.startswith("I would like something good tonight.")  # the model's words come first
        assert len(t.text.split(".")) > 2  # then one template sentence per constraint
    assert all(t.voice == "llm" for d in ds for t in d.seeker_turns if not t.disclosed)
