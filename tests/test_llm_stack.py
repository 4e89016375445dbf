"""The LLM layer through litellm against a real OpenAI-protocol HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
import warnings
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
    LLMCacheMiss,
    LLMConfig,
    LLMOutputError,
    LLMRequest,
    LLMRequestError,
    LLMUnavailableError,
    RetryingModel,
    build_language_model,
    classify_error,
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
    reply = await llm.complete(ask())
    assert isinstance(reply.parsed, Decision)
    assert reply.parsed.watch == [101]
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert not reply.usage.cached and reply.usage.retries == 0
    assert server.count == 1
    sent = server.requests[0]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["watch"]["type"] == "array"
    assert sent["temperature"] == 0.7 and sent["max_tokens"] == 256


def test_sync_callers_run_the_one_method_on_their_loop(openai_server, tmp_path):
    server = openai_server(script=["500", None])
    llm = build_language_model(config(server), tmp_path / "run")
    reply = asyncio.run(llm.complete(ask()))  # e.g. the world's loop runner
    assert reply.parsed.watch == [101]
    assert reply.usage.retries == 1
    assert server.count == 2


async def test_free_text_call(openai_server):
    server = openai_server()
    llm = build_language_model(config(server), None)
    reply = await llm.complete(LLMRequest(messages=[{"role": "user", "content": "Say hello"}], purpose="interview"))
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
    reply = await llm.complete(ask())
    assert reply.parsed.watch == [101]
    assert reply.usage.retries == 1
    assert server.count == 2, server.faults


async def test_rate_limit_honours_retry_after(openai_server):
    server = openai_server(script=["429", None], retry_after_s=1.0)
    llm = build_language_model(config(server, retry_base_s=0.01), None)
    started = time.perf_counter()
    reply = await llm.complete(ask())
    elapsed = time.perf_counter() - started
    assert reply.usage.retries == 1 and server.count == 2
    assert elapsed >= 1.0, f"Retry-After: 1 not honoured (waited {elapsed:.2f} s)"


async def test_timeout_is_retried(openai_server):
    server = openai_server(script=["hang", None], hang_s=3.0)
    llm = build_language_model(config(server, timeout_s=0.5), None)
    started = time.perf_counter()
    reply = await llm.complete(ask())
    assert reply.usage.retries == 1 and server.count == 2
    assert time.perf_counter() - started < 2.5


@pytest.mark.parametrize("fault, status", [("400", 400), ("401", 401)])
async def test_client_errors_are_not_retried(openai_server, fault, status):
    server = openai_server(script=[fault])
    llm = build_language_model(config(server), None)
    with pytest.raises(LLMRequestError) as info:
        await llm.complete(ask())
    assert info.value.status_code == status
    assert server.count == 1


async def test_invalid_output_is_not_retried_and_is_typed(openai_server):
    server = openai_server(script=["invalid"])
    llm = build_language_model(config(server), None)
    with pytest.raises(LLMOutputError) as info:
        await llm.complete(ask())
    assert server.count == 1
    err = info.value
    assert "unexpected" in err.raw_text
    assert "watch" in err.validation_error and "reason" in err.validation_error
    assert err.usage.prompt_tokens > 0  # the failed answer still cost tokens


async def test_gives_up_after_max_retries_with_one_clear_sentence(openai_server):
    server = openai_server(fault_rate=1.0, fault_kinds=("500",))
    llm = build_language_model(config(server, max_retries=2), None)
    with pytest.raises(LLMUnavailableError) as info:
        await llm.complete(ask())
    assert server.count == 3
    message = str(info.value)
    assert server.url in message and "500" in message and "3 attempts" in message
    assert "\n" not in message


async def test_unreachable_server_gives_a_clear_error():
    url = f"http://127.0.0.1:{free_closed_port()}/v1"
    llm = build_language_model(config(None, api_base=url, max_retries=1), None)
    with pytest.raises(LLMUnavailableError) as info:
        await llm.complete(ask())
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
    replies = await asyncio.gather(*(llm.complete(ask(agent_id=i)) for i in range(60)))
    assert all(r.parsed.watch == [101] for r in replies)
    faults = sum(f is not None for f in server.faults)
    assert faults > 0 and server.count == 60 + faults
    assert sum(r.usage.retries for r in replies) == faults
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
    await asyncio.gather(*(llm.complete(ask(agent_id=i)) for i in range(40)))
    elapsed = time.perf_counter() - started
    limiter = llm.find(LimitedModel)
    assert server.max_in_flight <= 8 and limiter.max_in_flight <= 8
    assert server.max_in_flight >= 6  # and it does run them concurrently
    assert elapsed >= 0.5  # 40 calls / 8 at a time * 0.1 s


async def test_limiter_works_across_event_loops(openai_server):
    server = openai_server(latency_s=0.02)
    llm = build_language_model(config(server, concurrency=4), None)

    async def batch():
        return await asyncio.gather(*(llm.complete(ask(agent_id=i)) for i in range(8)))

    # a world may run each round's decisions in its own event loop
    for _ in range(2):
        await asyncio.get_running_loop().run_in_executor(None, asyncio.run, batch())
    assert server.count == 16 and server.max_in_flight <= 4


async def test_requests_per_minute_limit(openai_server):
    server = openai_server()
    inner = LiteLLMModel("openai/test-model", api_base=server.url)
    limited = LimitedModel(inner, concurrency=10, rpm=3, window_s=0.5)
    started = time.perf_counter()
    await asyncio.gather(*(limited.complete(ask(agent_id=i)) for i in range(6)))
    assert time.perf_counter() - started >= 0.5  # the second three waited for the window
    assert server.count == 6


# ---------------------------------------------------------------------------------------
# cache


async def test_cache_replays_without_calls(openai_server, tmp_path):
    server = openai_server()
    first = build_language_model(config(server, cache=True), tmp_path / "run1")
    a = await first.complete(ask())
    assert server.count == 1 and not a.usage.cached
    b = await first.complete(ask())
    assert server.count == 1, "a cache hit must make no HTTP request"
    assert b.usage.cached and b.text == a.text and b.parsed == a.parsed
    assert (b.usage.prompt_tokens, b.usage.completion_tokens) == (a.usage.prompt_tokens, a.usage.completion_tokens)
    # a second run with the same cache folder: zero calls
    shared = LLMConfig(**{**config(server).model_dump(), "cache": True, "cache_dir": tmp_path / "shared"})
    run1 = build_language_model(shared, tmp_path / "r1")
    replies1 = [await run1.complete(ask(agent_id=i, seed=i)) for i in range(5)]
    calls = server.count
    run2 = build_language_model(shared, tmp_path / "r2")
    replies2 = [await run2.complete(ask(agent_id=i, seed=i)) for i in range(5)]
    assert server.count == calls
    assert [r.text for r in replies1] == [r.text for r in replies2]
    # anything that changes the answer changes the key
    await run2.complete(ask(seed=99))
    await run2.complete(ask(temperature=0.1))
    assert server.count == calls + 2


async def test_cache_single_flight_under_concurrency(openai_server, tmp_path):
    server = openai_server(latency_s=0.1)
    llm = build_language_model(config(server, cache=True, concurrency=16), tmp_path / "run")
    replies = await asyncio.gather(*(llm.complete(ask()) for _ in range(10)))
    assert server.count == 1
    assert len({r.text for r in replies}) == 1
    assert llm.find(CachedModel).hits == 9


async def test_cache_keeps_invalid_answers_so_a_replay_takes_the_same_fallback(openai_server, tmp_path):
    server = openai_server(script=["invalid"])
    llm = build_language_model(config(server, cache=True), tmp_path / "run")
    with pytest.raises(LLMOutputError):
        await llm.complete(ask())
    with pytest.raises(LLMOutputError) as info:
        await llm.complete(ask())
    assert info.value.usage.cached and server.count == 1


async def test_an_answer_is_stored_before_its_call_returns_and_the_journal_stays_small(openai_server, tmp_path):
    server = openai_server()
    llm = build_language_model(config(server, cache=True), tmp_path / "run", run_id="run")
    cache = llm.find(CachedModel).cache
    llm.set_round(1)
    reply = await llm.complete(ask())
    # another process (a fresh connection) sees the answer at once: a kill now loses nothing paid for
    other = sqlite3.connect(str(cache.path))
    assert other.execute("SELECT text FROM responses").fetchall() == [(reply.text,)]
    other.close()
    entry = dict(reply_entry(reply), run_id="run", round=1, session="s")
    for i in range(700):  # more answers than one checkpoint takes: checkpoints run on their own thread
        cache.put(f"key-{i}", entry)
    llm.set_round(2)  # a new round restarts the WAL from empty
    assert cache._checkpointer is not None
    cache._checkpointer.join(timeout=10)
    wal = Path(f"{cache.path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert cache.get("key-699")["text"] == reply.text
    llm.close()


def reply_entry(reply) -> dict:
    u = reply.usage
    return {"model": u.model, "text": reply.text, "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens, "cost_usd": u.cost_usd, "latency_s": u.latency_s,
            "retries": 0, "dropped": ""}


def test_a_stack_built_in_another_process_from_the_scenario_shares_the_cache(openai_server, tmp_path):
    """Worker processes (simworld/execution) build the stack from the scenario's llm section."""
    server = openai_server()
    cfg = config(server, cache=True, cache_dir=tmp_path / "cache")
    first = build_language_model(cfg, tmp_path / "a", run_id="a")
    asyncio.run(first.complete(ask(agent_id=3)))
    assert server.count == 1
    code = f"""
import asyncio, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from simworld.llm import LLMConfig, build_language_model
from tests.test_llm_stack import ask
llm = build_language_model(LLMConfig.model_validate_json(sys.argv[1]), None, run_id="b")
async def both():
    return await asyncio.gather(llm.complete(ask(agent_id=3)), llm.complete(ask(agent_id=4)))
first, fresh = asyncio.run(both())
print(first.usage.cached, fresh.usage.cached, first.parsed.watch)
"""
    out = subprocess.run([sys.executable, "-c", code, cfg.model_dump_json()], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[:2] == ["True", "False"]  # a hit from the first process's answer; a new call
    assert server.count == 2


# ---------------------------------------------------------------------------------------
# ledger


async def test_ledger_rows_and_parquet(openai_server, tmp_path):
    run = tmp_path / "run"
    server = openai_server(script=[None, "500", None, "invalid", "400"])
    llm = build_language_model(config(server, cache=True), run, run_id="run-7")
    llm.set_round(0)
    await llm.complete(ask(agent_id=1))
    await llm.complete(ask(agent_id=2))  # 500 then ok
    await llm.complete(ask(agent_id=1))  # cache hit
    assert llm.flush() == run / "llm_calls.parquet"
    llm.set_round(1)
    with pytest.raises(LLMOutputError):
        await llm.complete(ask(agent_id=3))
    with pytest.raises(LLMRequestError):
        await llm.complete(ask(agent_id=4))
    assert read_ledger(run).height == 3  # round 1 not flushed yet
    llm.flush()
    df = read_ledger(run)
    assert df.columns == [
        "run_id", "round", "call_id", "agent_id", "purpose", "model", "prompt_tokens",
        "completion_tokens", "total_tokens", "cost_usd", "latency_s", "cached", "retries",
        "outcome", "error", "dropped_params",
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
    again = build_language_model(config(server, cache=True), run, run_id="run-7")
    again.set_round(2)
    await again.complete(ask(agent_id=1))
    again.flush()
    assert read_ledger(run).height == 6


async def test_a_flush_keeps_the_rows_another_stack_wrote_to_the_same_ledger_meanwhile(openai_server, tmp_path):
    server = openai_server()
    one, two = (build_language_model(config(server), tmp_path / "run", run_id="run") for _ in range(2))
    await one.complete(ask(agent_id=1))
    one.flush()
    await two.complete(ask(agent_id=2))
    two.flush()  # two read the file one wrote
    await one.complete(ask(agent_id=3))
    one.flush()  # one must read the file again: two replaced it
    assert sorted(read_ledger(tmp_path / "run")["agent_id"].to_list()) == [1, 2, 3]
    await one.complete(ask(agent_id=4))
    one.flush()  # nothing changed under one: its own copy is the file
    assert sorted(read_ledger(tmp_path / "run")["agent_id"].to_list()) == [1, 2, 3, 4]


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
        await llm.complete(ask(agent_id=n))
        n += 1
        assert n < 50
    assert n >= 2 and budget.tokens_used >= 100
    assert "budget spent" in budget.message and "of 100 tokens" in budget.message
    # soft by default: the round can finish
    await llm.complete(ask(agent_id=99))


async def test_hard_budget_raises(openai_server):
    server = openai_server()
    llm = build_language_model(config(server, budget_tokens=30), None, hard_budget=True)
    with pytest.raises(BudgetExceeded):
        for i in range(20):
            await llm.complete(ask(agent_id=i))
    calls = server.count
    with pytest.raises(BudgetExceeded):
        await llm.complete(ask(agent_id=100))
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
    llm = build_language_model(cfg, tmp_path / "run", run_id="secret-run")
    await llm.complete(ask(agent_id=1))
    with pytest.raises(LLMRequestError) as info:  # the server echoes the key in its error
        await llm.complete(ask(agent_id=2))
    assert server.headers[0]["authorization"] == f"Bearer {secret}"  # the key was sent
    llm.flush()
    llm.close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"llm_calls.parquet", ".llm_cache.sqlite"}
    for path in files:
        assert secret.encode() not in path.read_bytes(), f"the API key leaked into {path.name}"
    errors = read_ledger(tmp_path / "run")["error"].drop_nulls().to_list()
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
    replies = await asyncio.gather(*(llm.complete(ask(agent_id=i)) for i in range(30)))
    assert all(r.parsed.watch == [101] for r in replies)
    assert a.count + b.count == 30 and a.count > 0 and b.count > 0
    assert {h["authorization"] for h in a.headers} == {"Bearer key-aaaa-1111"}
    assert {h["authorization"] for h in b.headers} == {"Bearer key-bbbb-2222"}


def test_factory_layers(tmp_path):
    cfg = LLMConfig(model="openai/x", api_base="http://127.0.0.1:9/v1", budget_usd=1.0,
                    price_per_1k_prompt_usd=0.1, price_per_1k_completion_usd=0.2)
    llm = build_language_model(cfg, tmp_path / "run")
    assert isinstance(llm, LedgerModel)
    chain = []
    layer = llm
    while layer is not None:
        chain.append(type(layer).__name__)
        layer = getattr(layer, "inner", None)
    assert chain == ["LedgerModel", "BudgetedModel", "CachedModel", "RetryingModel", "LimitedModel", "LiteLLMModel"]
    assert os.path.exists(tmp_path / ".llm_cache.sqlite")  # beside the run folder, shared by its runs


# ---------------------------------------------------------------------------------------
# bugs, prices, dropped parameters


class Broken:
    """A model with a bug of ours: every call raises TypeError."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request):
        self.calls += 1
        raise TypeError("a bug of ours")


async def test_a_bug_is_not_retried_and_propagates():
    broken = Broken()
    llm = build_language_model(config(None, max_retries=4), None, base=broken)
    with pytest.raises(TypeError, match="a bug of ours"):
        await llm.complete(ask())
    assert broken.calls == 1


def test_classify_error_leaves_bugs_alone():
    import httpx
    import litellm

    wrapped = litellm.APIConnectionError(message="bad argument", llm_provider="x", model="x")
    wrapped.__cause__ = TypeError("bad argument")  # how litellm wraps a bug in a provider
    assert classify_error(wrapped, "here") is None
    assert classify_error(ValueError("ours"), "here") is None
    assert classify_error(httpx.ConnectError("All connection attempts failed"), "here").kind == "connection"


async def test_tokens_per_minute_limit(openai_server):
    server = openai_server()
    limited = LimitedModel(LiteLLMModel("openai/test-model", api_base=server.url), concurrency=10, tpm=100,
                           window_s=0.5)
    started = time.perf_counter()
    # each call is estimated at its prompt's characters / 4 + 20 tokens (about 90): one fits the bucket
    await asyncio.gather(*(limited.complete(ask(agent_id=i, max_tokens=20)) for i in range(4)))
    assert time.perf_counter() - started >= 0.9  # the other three waited for the bucket to drain
    assert server.count == 4


def test_a_dollar_budget_needs_a_price():
    with pytest.raises(pydantic.ValidationError,
                       match=r"llm\.budget_usd: litellm has no price for the model 'openai/unpriced'"):
        LLMConfig(model="openai/unpriced", budget_usd=1.0)
    LLMConfig(model="openai/gpt-4o-mini", budget_usd=1.0)  # litellm knows its price
    LLMConfig(budget_usd=1.0)  # the embedded model is free
    LLMConfig(model="openai/test-model", budget_usd=1.0, price_per_1k_prompt_usd=0.5, price_per_1k_completion_usd=1)
    with pytest.raises(pydantic.ValidationError, match="give both"):
        LLMConfig(model="openai/test-model", price_per_1k_prompt_usd=0.5)


async def test_scenario_prices_cost_the_calls_and_trip_a_dollar_budget(openai_server):
    server = openai_server()
    cfg = config(server, budget_usd=0.05, price_per_1k_prompt_usd=0.5, price_per_1k_completion_usd=1.0)
    llm = build_language_model(cfg, None)
    usage = (await llm.complete(ask())).usage
    assert usage.cost_usd == pytest.approx((usage.prompt_tokens * 0.5 + usage.completion_tokens) / 1000)
    budget = llm.find(BudgetedModel)
    for n in range(1, 50):
        if budget.exhausted:
            break
        await llm.complete(ask(agent_id=n))
    assert budget.exhausted and budget.usd_used >= 0.05 and "$0.0500" in budget.message


async def test_dropped_params_warn_once_and_reach_the_ledger(openai_server, tmp_path):
    server = openai_server()
    llm = build_language_model(config(server, model="deepinfra/test-model", seed=7), tmp_path / "run")
    with pytest.warns(UserWarning, match="deepinfra/test-model does not take seed"):
        await llm.complete(ask(agent_id=1))  # litellm says deepinfra takes no seed, and drops it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        await llm.complete(ask(agent_id=2))  # warned once
    assert server.count == 2 and all("seed" not in body for body in server.requests)
    llm.flush()
    assert read_ledger(tmp_path / "run")["dropped_params"].to_list() == ["seed", "seed"]


# ---------------------------------------------------------------------------------------
# a shared cache, cache-only replays, and resume


async def test_the_runs_of_one_output_folder_share_the_cache(openai_server, tmp_path):
    server = openai_server()
    for run in ("first", "second"):
        llm = build_language_model(config(server, cache=True), tmp_path / run, run_id=run)
        await llm.complete(ask())
    assert server.count == 1


async def test_cache_only_answers_from_the_cache_and_a_miss_is_one_clear_error(openai_server, tmp_path, monkeypatch):
    server = openai_server()
    paid = build_language_model(config(server, cache=True), tmp_path / "a", run_id="a")
    original = await paid.complete(ask(agent_id=1, round=3))
    monkeypatch.delenv("SIMWORLD_ABSENT_KEY", raising=False)  # a replay needs no key: it calls nothing
    replay = build_language_model(config(server, cache_only=True, api_key_env="SIMWORLD_ABSENT_KEY"),
                                  tmp_path / "b", run_id="b")
    hit = await replay.complete(ask(agent_id=1, round=3))
    assert hit.usage.cached and hit.text == original.text and server.count == 1
    with pytest.raises(LLMCacheMiss) as info:
        await replay.complete(ask(agent_id=2, round=3))
    assert str(info.value) == "no cached answer for decide of agent 2 in round 3; replay needs the original run's cache"
    assert server.count == 1


def resume_config(server: FakeOpenAIServer) -> LLMConfig:
    return config(server, cache=True, budget_tokens=10**6, budget_usd=100.0, price_per_1k_prompt_usd=0.5,
                  price_per_1k_completion_usd=1.0)


async def play(llm, rounds, agents: int = 3) -> None:
    """Each round, every agent asks once, one after the other (the server's faults then fall
    on the same requests in every run); invalid answers are part of the run."""
    for r in rounds:
        llm.set_round(r)
        for a in range(agents):
            try:
                await llm.complete(ask(agent_id=a, text=f"{FILMS}\nRound {r}."))
            except LLMOutputError:
                pass


@pytest.mark.parametrize("killed", ["before_flush", "after_flush"])
async def test_a_resumed_run_has_the_ledger_and_budget_of_an_uninterrupted_one(openai_server, tmp_path, killed):
    faults = {"fault_rate": 0.3, "fault_kinds": ("500", "invalid"), "seed": 5}
    whole = build_language_model(resume_config(openai_server(**faults)), tmp_path / "u" / "run", run_id="run")
    for r in (1, 2, 3):
        await play(whole, [r])
        whole.flush()  # the commit point of a round: flush, checkpoint, commit
        whole.commit()
    # the same run killed in round 2 (after its calls were paid), then resumed in a new process
    server = openai_server(**faults)
    first = build_language_model(resume_config(server), tmp_path / "k" / "run", run_id="run")
    await play(first, [1])
    first.flush()  # round 1 commits
    first.commit()
    await play(first, [2])
    if killed == "after_flush":
        first.flush()  # killed between the flush and round 2's checkpoint
    paid = server.count
    resumed = build_language_model(resume_config(server), tmp_path / "k" / "run", run_id="run")
    resumed.restore(1)
    await play(resumed, [2])
    assert server.count == paid  # round 2 again: answered by the cache, reported as the calls paid for it
    resumed.flush()
    resumed.commit()
    await play(resumed, [3])
    resumed.flush()
    ledgers = [read_ledger(tmp_path / f / "run").drop("latency_s") for f in ("u", "k")]
    assert ledgers[0].equals(ledgers[1]), (ledgers[0], ledgers[1])
    assert set(ledgers[0]["outcome"]) >= {"ok", "retry", "invalid_output"} and not ledgers[0]["cached"].any()
    budgets = [llm.find(BudgetedModel) for llm in (whole, resumed)]
    assert budgets[0].tokens_used == budgets[1].tokens_used
    assert budgets[0].usd_used == pytest.approx(budgets[1].usd_used)
    assert whole.summary() == pytest.approx(resumed.summary())
