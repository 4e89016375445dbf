"""The LLM layer through litellm against a real OpenAI-protocol HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pydantic
import pytest
from tests.openai_server import FakeOpenAIServer, free_closed_port, openai_server  # noqa: F401

from simworld.llm import (
    BudgetedModel,
    BudgetExceeded,
    CachedModel,
    DeploymentConfig,
    LedgerModel,
    LimitedModel,
    LiteLLMModel,
    LLMConfig,
    LLMOutputError,
    LLMRequest,
    LLMRequestError,
    LLMUnavailableError,
    RetryingModel,
    build_language_model,
    read_ledger,
)

FILMS = """Films on your page:
[101] The Matrix (1999) - Action|Sci-Fi
[102] Notting Hill (1999) - Comedy|Romance
[103] Alien (1979) - Horror|Sci-Fi
[104] Toy Story (1995) - Animation|Children
[105] Heat (1995) - Crime|Thriller"""


class Decision(pydantic.BaseModel):
    watch: list[int]
    reason: str


def ask(agent_id: int = 1, text: str = FILMS, **kw) -> LLMRequest:
    return LLMRequest(
        messages=[
            # the persona is in every real prompt, so two agents never share a cache key
            {"role": "system", "content": f"You are film lover #{agent_id}, who enjoys science fiction."},
            {"role": "user", "content": f"{text}\nWhich do you watch? Answer in JSON."},
        ],
        response_model=Decision,
        purpose="decide",
        agent_id=agent_id,
        **kw,
    )


def config(server: FakeOpenAIServer | None = None, **kw) -> LLMConfig:
    base = {
        "model": "openai/test-model",
        "api_base": server.url if server is not None else None,
        "retry_base_s": 0.01,
        "retry_max_s": 5.0,
        "timeout_s": 5.0,
        "max_retries": 3,
        "cache": False,
    }
    base.update(kw)
    return LLMConfig(**base)


# ---------------------------------------------------------------------------------------
# plain calls


async def test_structured_call_parses_and_chooses_from_the_prompt(openai_server, tmp_path):
    server = openai_server()
    llm = build_language_model(config(server), tmp_path, run_id="r1")
    reply = await llm.acomplete(ask())
    assert isinstance(reply.parsed, Decision)
    assert reply.parsed.watch == [101]
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert not reply.cached and reply.retries == 0
    assert server.count == 1
    sent = server.requests[0]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["watch"]["type"] == "array"
    assert sent["temperature"] == 0.7 and sent["max_tokens"] == 256


def test_sync_complete_goes_through_the_same_stack(openai_server, tmp_path):
    server = openai_server(script=["500", None])
    llm = build_language_model(config(server), tmp_path)
    reply = llm.complete(ask())
    assert reply.parsed.watch == [101]
    assert reply.retries == 1
    assert server.count == 2


async def test_free_text_call(openai_server):
    server = openai_server()
    llm = build_language_model(config(server), None)
    reply = await llm.acomplete(LLMRequest(messages=[{"role": "user", "content": "Say hello"}], purpose="interview"))
    assert reply.parsed is None and reply.text == "An answer from the test server."


def test_importing_the_layer_does_not_import_litellm():
    code = "import sys, simworld.llm; assert 'litellm' not in sys.modules, 'litellm imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ---------------------------------------------------------------------------------------
# retries: transient only


@pytest.mark.parametrize("fault", ["500", "503", "truncated", "non_json"])
async def test_transient_faults_are_retried(openai_server, fault):
    server = openai_server(script=[fault, None])
    llm = build_language_model(config(server), None)
    reply = await llm.acomplete(ask())
    assert reply.parsed.watch == [101]
    assert reply.retries == 1
    assert server.count == 2, server.faults


async def test_rate_limit_honours_retry_after(openai_server):
    server = openai_server(script=["429", None], retry_after_s=1.0)
    llm = build_language_model(config(server, retry_base_s=0.01), None)
    started = time.perf_counter()
    reply = await llm.acomplete(ask())
    elapsed = time.perf_counter() - started
    assert reply.retries == 1 and server.count == 2
    assert elapsed >= 1.0, f"Retry-After: 1 not honoured (waited {elapsed:.2f} s)"


async def test_timeout_is_retried(openai_server):
    server = openai_server(script=["hang", None], hang_s=3.0)
    llm = build_language_model(config(server, timeout_s=0.5), None)
    started = time.perf_counter()
    reply = await llm.acomplete(ask())
    assert reply.retries == 1 and server.count == 2
    assert time.perf_counter() - started < 2.5


@pytest.mark.parametrize("fault, status", [("400", 400), ("401", 401)])
async def test_client_errors_are_not_retried(openai_server, fault, status):
    server = openai_server(script=[fault])
    llm = build_language_model(config(server), None)
    with pytest.raises(LLMRequestError) as info:
        await llm.acomplete(ask())
    assert info.value.status_code == status
    assert server.count == 1


async def test_invalid_output_is_not_retried_and_is_typed(openai_server):
    server = openai_server(script=["invalid"])
    llm = build_language_model(config(server), None)
    with pytest.raises(LLMOutputError) as info:
        await llm.acomplete(ask())
    assert server.count == 1
    err = info.value
    assert "unexpected" in err.raw_text
    assert "watch" in err.validation_error and "reason" in err.validation_error
    assert err.prompt_tokens > 0  # the failed answer still cost tokens


async def test_gives_up_after_max_retries_with_one_clear_sentence(openai_server):
    server = openai_server(fault_rate=1.0, fault_kinds=("500",))
    llm = build_language_model(config(server, max_retries=2), None)
    with pytest.raises(LLMUnavailableError) as info:
        await llm.acomplete(ask())
    assert server.count == 3
    message = str(info.value)
    assert server.url in message and "500" in message and "3 attempts" in message
    assert "\n" not in message


async def test_unreachable_server_gives_a_clear_error():
    url = f"http://127.0.0.1:{free_closed_port()}/v1"
    llm = build_language_model(config(None, api_base=url, max_retries=1), None)
    with pytest.raises(LLMUnavailableError) as info:
        await llm.acomplete(ask())
    message = str(info.value)
    assert message.startswith(f"model server {url} unreachable: connection refused"), message


def test_retry_backoff_is_seeded_and_grows():
    a = RetryingModel(None, base_delay_s=1.0, max_delay_s=100.0, seed=7)  # type: ignore[arg-type]
    b = RetryingModel(None, base_delay_s=1.0, max_delay_s=100.0, seed=7)  # type: ignore[arg-type]
    da = [a.delay_for(i, None) for i in range(5)]
    assert da == [b.delay_for(i, None) for i in range(5)]
    for i, d in enumerate(da):
        assert 0.5 * 2**i <= d <= 2**i
    assert a.delay_for(0, 3.0) == 3.0 and a.delay_for(0, 500.0) == 100.0


async def test_a_run_with_twenty_percent_faults_loses_no_call(openai_server, tmp_path):
    server = openai_server(fault_rate=0.2, fault_kinds=("429", "500", "truncated", "non_json"), retry_after_s=0.05, seed=3)
    llm = build_language_model(config(server, max_retries=6, concurrency=16), tmp_path)
    replies = await asyncio.gather(*(llm.acomplete(ask(agent_id=i)) for i in range(60)))
    assert all(r.parsed.watch == [101] for r in replies)
    faults = sum(f is not None for f in server.faults)
    assert faults > 0 and server.count == 60 + faults
    assert sum(r.retries for r in replies) == faults
    llm.flush()
    ledger = read_ledger(tmp_path)
    assert ledger.height == 60 and set(ledger["outcome"]) <= {"ok", "retry"}
    assert ledger["retries"].sum() == faults


# ---------------------------------------------------------------------------------------
# limits


async def test_limiter_caps_calls_in_flight(openai_server):
    server = openai_server(latency_s=0.1)
    llm = build_language_model(config(server, concurrency=8), None)
    started = time.perf_counter()
    await asyncio.gather(*(llm.acomplete(ask(agent_id=i)) for i in range(40)))
    elapsed = time.perf_counter() - started
    limiter = llm.find(LimitedModel)
    assert server.max_in_flight <= 8 and limiter.max_in_flight <= 8
    assert server.max_in_flight >= 6  # and it does run them concurrently
    assert elapsed >= 0.5  # 40 calls / 8 at a time * 0.1 s


async def test_limiter_works_across_event_loops(openai_server):
    server = openai_server(latency_s=0.02)
    llm = build_language_model(config(server, concurrency=4), None)

    async def batch():
        return await asyncio.gather(*(llm.acomplete(ask(agent_id=i)) for i in range(8)))

    # a world may run each round's decisions in its own event loop
    for _ in range(2):
        await asyncio.get_running_loop().run_in_executor(None, asyncio.run, batch())
    assert server.count == 16 and server.max_in_flight <= 4


async def test_requests_per_minute_limit(openai_server):
    server = openai_server()
    inner = LiteLLMModel("openai/test-model", api_base=server.url)
    limited = LimitedModel(inner, concurrency=10, rpm=3, window_s=0.5)
    started = time.perf_counter()
    await asyncio.gather(*(limited.acomplete(ask(agent_id=i)) for i in range(6)))
    assert time.perf_counter() - started >= 0.5  # the second three waited for the window
    assert server.count == 6


# ---------------------------------------------------------------------------------------
# cache


async def test_cache_replays_without_calls(openai_server, tmp_path):
    server = openai_server()
    first = build_language_model(config(server, cache=True), tmp_path / "run1")
    a = await first.acomplete(ask())
    assert server.count == 1 and not a.cached
    b = await first.acomplete(ask())
    assert server.count == 1, "a cache hit must make no HTTP request"
    assert b.cached and b.text == a.text and b.parsed == a.parsed
    assert (b.prompt_tokens, b.completion_tokens) == (a.prompt_tokens, a.completion_tokens)
    # a second run with the same cache folder: zero calls
    shared = LLMConfig(**{**config(server).model_dump(), "cache": True, "cache_dir": tmp_path / "shared"})
    run1 = build_language_model(shared, tmp_path / "r1")
    replies1 = [await run1.acomplete(ask(agent_id=i, seed=i)) for i in range(5)]
    calls = server.count
    run2 = build_language_model(shared, tmp_path / "r2")
    replies2 = [await run2.acomplete(ask(agent_id=i, seed=i)) for i in range(5)]
    assert server.count == calls
    assert [r.text for r in replies1] == [r.text for r in replies2]
    # anything that changes the answer changes the key
    await run2.acomplete(ask(seed=99))
    await run2.acomplete(ask(temperature=0.1))
    assert server.count == calls + 2


async def test_cache_single_flight_under_concurrency(openai_server, tmp_path):
    server = openai_server(latency_s=0.1)
    llm = build_language_model(config(server, cache=True, concurrency=16), tmp_path)
    replies = await asyncio.gather(*(llm.acomplete(ask()) for _ in range(10)))
    assert server.count == 1
    assert len({r.text for r in replies}) == 1
    assert llm.find(CachedModel).hits == 9


async def test_cache_keeps_invalid_answers_so_a_replay_takes_the_same_fallback(openai_server, tmp_path):
    server = openai_server(script=["invalid"])
    llm = build_language_model(config(server, cache=True), tmp_path)
    with pytest.raises(LLMOutputError):
        await llm.acomplete(ask())
    with pytest.raises(LLMOutputError) as info:
        await llm.acomplete(ask())
    assert info.value.cached and server.count == 1


# ---------------------------------------------------------------------------------------
# ledger


async def test_ledger_rows_and_parquet(openai_server, tmp_path):
    server = openai_server(script=[None, "500", None, "invalid", "400"])
    llm = build_language_model(config(server, cache=True), tmp_path, run_id="run-7")
    llm.set_round(0)
    await llm.acomplete(ask(agent_id=1))
    await llm.acomplete(ask(agent_id=2))  # 500 then ok
    await llm.acomplete(ask(agent_id=1))  # cache hit
    assert llm.flush() == tmp_path / "llm_calls.parquet"
    llm.set_round(1)
    with pytest.raises(LLMOutputError):
        await llm.acomplete(ask(agent_id=3))
    with pytest.raises(LLMRequestError):
        await llm.acomplete(ask(agent_id=4))
    assert read_ledger(tmp_path).height == 3  # round 1 not flushed yet
    llm.flush()
    df = read_ledger(tmp_path)
    assert df.columns == [
        "run_id", "round", "call_id", "agent_id", "purpose", "model", "prompt_tokens",
        "completion_tokens", "total_tokens", "cost_usd", "latency_s", "cached", "retries",
        "outcome", "error",
    ]
    rows = df.sort("call_id").to_dicts()
    assert [r["outcome"] for r in rows] == ["ok", "retry", "ok", "invalid_output", "error"]
    assert [r["round"] for r in rows] == [0, 0, 0, 1, 1]
    assert [r["cached"] for r in rows] == [False, False, True, False, False]
    assert rows[1]["retries"] == 1
    assert all(r["run_id"] == "run-7" and r["purpose"] == "decide" for r in rows)
    assert rows[0]["model"] == "openai/test-model" and rows[0]["prompt_tokens"] > 0
    assert rows[0]["cost_usd"] is None  # litellm knows no price for this model
    assert rows[2]["cost_usd"] == 0.0  # a cache hit costs nothing
    assert "400" in rows[4]["error"]
    # a resumed run (a new process) appends to the same file
    again = build_language_model(config(server, cache=True), tmp_path, run_id="run-7")
    again.set_round(2)
    await again.acomplete(ask(agent_id=1))
    again.flush()
    assert read_ledger(tmp_path).height == 6


def test_read_ledger_of_an_empty_run(tmp_path):
    df = read_ledger(tmp_path)
    assert df.height == 0 and "outcome" in df.columns


# ---------------------------------------------------------------------------------------
# budget


async def test_budget_cap_trips(openai_server):
    server = openai_server()
    llm = build_language_model(config(server, budget_tokens=100), None)
    budget = llm.find(BudgetedModel)
    n = 0
    while not budget.exhausted:
        await llm.acomplete(ask(agent_id=n))
        n += 1
        assert n < 50
    assert n >= 2 and budget.tokens_used >= 100
    assert "budget spent" in budget.message and "of 100 tokens" in budget.message
    # soft by default: the round can finish
    await llm.acomplete(ask(agent_id=99))


async def test_hard_budget_raises(openai_server):
    server = openai_server()
    llm = build_language_model(config(server, budget_tokens=30), None, hard_budget=True)
    with pytest.raises(BudgetExceeded):
        for i in range(20):
            await llm.acomplete(ask(agent_id=i))
    calls = server.count
    with pytest.raises(BudgetExceeded):
        await llm.acomplete(ask(agent_id=100))
    assert server.count == calls
    assert llm.outcomes["budget"] == 2


# ---------------------------------------------------------------------------------------
# secrets


async def test_api_key_never_reaches_the_run_folder(openai_server, tmp_path, monkeypatch):
    secret = "sk-simworld-TEST-0123456789abcdef"
    monkeypatch.setenv("SIMWORLD_TEST_KEY", secret)
    server = openai_server(script=[None, "401"])
    cfg = config(server, api_key_env="SIMWORLD_TEST_KEY", cache=True)
    assert secret not in cfg.model_dump_json()
    llm = build_language_model(cfg, tmp_path, run_id="secret-run")
    await llm.acomplete(ask(agent_id=1))
    with pytest.raises(LLMRequestError) as info:  # the server echoes the key in its error
        await llm.acomplete(ask(agent_id=2))
    assert server.headers[0]["authorization"] == f"Bearer {secret}"  # the key was sent
    llm.flush()
    llm.close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"llm_calls.parquet", "llm_cache.sqlite"}
    for path in files:
        assert secret.encode() not in path.read_bytes(), f"the API key leaked into {path.name}"
    errors = read_ledger(tmp_path)["error"].drop_nulls().to_list()
    assert errors and "***" in errors[0]
    assert secret not in str(info.value) and "***" in str(info.value)


def test_config_refuses_a_key_where_a_variable_name_belongs():
    with pytest.raises(pydantic.ValidationError, match="NAME of an environment variable"):
        LLMConfig(model="openai/gpt-4o-mini", api_key_env="sk-abc123-not-a-name")
    with pytest.raises(pydantic.ValidationError):
        LLMConfig(model="openai/gpt-4o-mini", api_key="sk-abc")  # extra fields are refused


def test_missing_key_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("SIMWORLD_ABSENT_KEY", raising=False)
    with pytest.raises(LLMRequestError, match="SIMWORLD_ABSENT_KEY .* is not set"):
        LiteLLMModel("openai/gpt-4o-mini", api_key_env="SIMWORLD_ABSENT_KEY")


# ---------------------------------------------------------------------------------------
# router


async def test_router_balances_across_deployments(openai_server, monkeypatch):
    monkeypatch.setenv("SIMWORLD_KEY_A", "key-aaaa-1111")
    monkeypatch.setenv("SIMWORLD_KEY_B", "key-bbbb-2222")
    a = openai_server()
    b = openai_server()
    cfg = LLMConfig(
        model="pool",
        cache=False,
        retry_base_s=0.01,
        deployments=[
            DeploymentConfig(model="openai/test-model", api_base=a.url, api_key_env="SIMWORLD_KEY_A"),
            DeploymentConfig(model="openai/test-model", api_base=b.url, api_key_env="SIMWORLD_KEY_B"),
        ],
    )
    llm = build_language_model(cfg, None)
    replies = await asyncio.gather(*(llm.acomplete(ask(agent_id=i)) for i in range(30)))
    assert all(r.parsed.watch == [101] for r in replies)
    assert a.count + b.count == 30 and a.count > 0 and b.count > 0
    assert {h["authorization"] for h in a.headers} == {"Bearer key-aaaa-1111"}
    assert {h["authorization"] for h in b.headers} == {"Bearer key-bbbb-2222"}


def test_factory_layers(tmp_path):
    cfg = LLMConfig(model="openai/x", api_base="http://127.0.0.1:9/v1", budget_usd=1.0)
    llm = build_language_model(cfg, tmp_path)
    assert isinstance(llm, LedgerModel)
    chain = []
    layer = llm
    while layer is not None:
        chain.append(type(layer).__name__)
        layer = getattr(layer, "inner", None)
    assert chain == ["LedgerModel", "BudgetedModel", "CachedModel", "RetryingModel", "LimitedModel", "LiteLLMModel"]
    assert os.path.exists(tmp_path / "llm_cache.sqlite")
