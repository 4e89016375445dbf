"""LLM-driven users in a whole run, through litellm against a real OpenAI-protocol server."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys

import polars as pl
import pytest
from typer.testing import CliRunner

from simworld import runner
from simworld.cli import app
from simworld.llm import LLMCacheMiss, read_ledger
from simworld.recorder import read_events, read_summary
from simworld.runner import replay, run_scenario
from tests.helpers import comparable, write_scenario
from tests.openai_server import default_answer, openai_server, prompt_text  # noqa: F401  (fixture)


def scenario_text(url: str, policy: str = "kind: llm", llm_extra: str = "", rounds: int = 2) -> str:
    return f"""
name: llmrun
seed: 3
rounds: {rounds}
population: {{size: 8}}
activity: {{model: constant, probability: 1.0}}
recommender: {{name: popularity, page_size: 4, max_pages: 2}}
policy: {{{policy}}}
llm:
  model: openai/test-model
  api_base: {url}
  retry_base_s: 0.01
  timeout_s: 5
  {llm_extra}
"""


def run(tmp_path, text: str, run_id: str = "r"):
    path = write_scenario(tmp_path, text)
    return run_scenario(path, out_dir=tmp_path / "runs", run_id=run_id)


def test_llm_agents_decide_through_the_server_and_every_call_is_in_the_ledger(openai_server, tmp_path):
    server = openai_server()
    run_dir = run(tmp_path, scenario_text(server.url))
    events = read_events(run_dir)
    decisions = events.filter(pl.col("action").is_in(["page", "search", "idle", "fallback"]))
    assert set(decisions["policy"]) == {"llm"}
    assert decisions.filter(pl.col("round") == 1)["agent_id"].n_unique() == 8  # everyone active, constant 1.0
    watches = events.filter(pl.col("action") == "watch")
    assert watches.height > 0 and watches["prompt_tokens"].sum() == 0  # tokens sit on the decision row
    assert events["prompt_tokens"].sum() > 0
    ledger = read_ledger(run_dir)
    assert ledger.height == server.count > 0
    assert set(ledger["round"]) == {1, 2}
    summary = read_summary(run_dir)
    assert summary["llm"]["calls"] == server.count
    per_round = pl.read_parquet(run_dir / "metrics.parquet")  # charted by the viewer, per round
    assert per_round["llm_calls"].to_list() == [float(n) for n in ledger.group_by("round").len().sort("round")["len"]]
    assert per_round["llm_tokens"].sum() == ledger["total_tokens"].sum() and "llm_cost_usd" in per_round.columns
    # every watched film was on a page shown to that agent in that round (never a made-up id)
    shown = events.filter(pl.col("action").is_in(["page", "search"])).explode("items")
    pairs = set(zip(shown["round"], shown["agent_id"], shown["items"]))
    assert all((r, a, i) in pairs for r, a, i in zip(watches["round"], watches["agent_id"], watches["item_id"]))


def test_a_cached_rerun_makes_no_calls_and_reproduces_the_event_log(openai_server, tmp_path):
    server = openai_server()
    cache = tmp_path / "cache"
    first = run(tmp_path, scenario_text(server.url, llm_extra=f"cache_dir: {cache}"), "first")
    calls = server.count
    assert calls > 0
    second = run(tmp_path, scenario_text(server.url, llm_extra=f"cache_dir: {cache}"), "second")
    assert server.count == calls  # zero new calls
    a, b = comparable(read_events(first)), comparable(read_events(second))
    assert a.drop("run_id").equals(b.drop("run_id"))
    assert read_summary(second)["llm"]["cache_hits"] == read_ledger(second).height


def test_twenty_percent_faults_lose_no_decision_and_invalid_answers_fall_back(openai_server, tmp_path):
    server = openai_server(fault_rate=0.2, fault_kinds=("429", "500", "invalid", "non_json"), seed=1,
                           retry_after_s=0.01)
    run_dir = run(tmp_path, scenario_text(server.url, llm_extra="max_retries: 6"))
    events = read_events(run_dir)
    per_round = events.filter(pl.col("action").is_in(["page", "search", "idle"])).group_by("round").agg(
        pl.col("agent_id").n_unique())
    assert per_round["agent_id"].to_list() == [8, 8]  # every active agent acted, every round
    fallbacks = events.filter(pl.col("action") == "fallback")
    ledger = read_ledger(run_dir)
    failed = ledger.filter(pl.col("outcome") != "ok")
    assert failed.height > 0  # the faults really happened
    # a fallback is a decision the rule model took over, always with its reason
    assert (fallbacks["text"].str.len_chars() > 0).all()
    assert set(events.filter(pl.col("action") == "watch")["policy"]) <= {"llm", "fallback"}


def test_the_budget_cap_stops_the_run_cleanly_at_the_end_of_a_round(openai_server, tmp_path):
    server = openai_server()
    path = write_scenario(tmp_path, scenario_text(server.url, llm_extra="budget_tokens: 50", rounds=5))
    env = dict(os.environ, COLUMNS="200")
    out = subprocess.run([sys.executable, "-m", "simworld.cli", "run", str(path), "--out", str(tmp_path / "runs"),
                          "--run-id", "b"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "budget" in out.stderr.lower() and "simworld resume" in out.stderr
    summary = json.loads((tmp_path / "runs" / "b" / "summary.json").read_text())
    assert summary["status"] == "budget_exhausted" and summary["rounds_done"] == 1
    assert read_events(tmp_path / "runs" / "b")["round"].unique().to_list() == [1]


def test_hybrid_splits_the_population_and_voice_lets_the_llm_write_feelings(openai_server, tmp_path):
    server = openai_server()
    run_dir = run(tmp_path, scenario_text(server.url, policy="kind: hybrid, llm_fraction: 0.5, voice: true"))
    personas = pl.read_parquet(run_dir / "personas.parquet")
    assert personas["policy"].value_counts().sort("policy")["count"].to_list() == [4, 4]  # hybrid, llm
    events = read_events(run_dir)
    voiced = events.filter((pl.col("action") == "watch") & (pl.col("policy") == "hybrid"))
    assert voiced.height > 0
    purposes = set(read_ledger(run_dir)["purpose"])
    assert "voice" in purposes and "decide" in purposes


def test_voice_fraction_voices_a_seeded_share_of_the_rule_agents(openai_server, tmp_path):
    server = openai_server()
    policy = "kind: hybrid, llm_fraction: 0.25, voice: true, voice_fraction: 0.5"
    first = run(tmp_path, scenario_text(server.url, policy=policy), "a")
    again = run(tmp_path, scenario_text(server.url, policy=policy), "b")
    mix = pl.read_parquet(first / "personas.parquet").select("agent_id", "policy")
    assert mix["policy"].value_counts().sort("policy")["count"].to_list() == [3, 2, 3]  # hybrid, llm, rule
    assert mix.equals(pl.read_parquet(again / "personas.parquet").select("agent_id", "policy"))
    watches = read_events(first).filter(pl.col("action") == "watch")
    rule_agents = set(mix.filter(pl.col("policy") == "rule")["agent_id"])
    assert set(watches.filter(pl.col("agent_id").is_in(list(rule_agents)))["policy"]) <= {"rule"}


def test_the_api_key_never_reaches_the_run_folder(openai_server, tmp_path, monkeypatch):
    secret = "sk-test-0123456789abcdefSECRET"
    monkeypatch.setenv("SIMWORLD_TEST_KEY", secret)
    server = openai_server()
    run_dir = run(tmp_path, scenario_text(server.url, llm_extra="api_key_env: SIMWORLD_TEST_KEY"))
    assert any(secret in json.dumps(h) for h in server.headers)  # the key was really used
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path.name


def test_the_embedded_model_missing_is_one_clear_error(tmp_path, monkeypatch):
    import simworld.llm as llm

    monkeypatch.setattr(llm, "embedded_available", lambda name="smollm2": False)
    path = write_scenario(tmp_path, "population: {size: 4}\npolicy: {kind: llm}\n")
    try:
        run_scenario(path, out_dir=tmp_path / "runs", run_id="e")
    except Exception as exc:  # noqa: BLE001
        assert "embedded offline model" in str(exc) and "install" in str(exc).lower()
    else:
        raise AssertionError("a run needing the missing embedded model must fail")
    assert not (tmp_path / "runs" / "e" / "events.parquet").exists()


HYBRID = "kind: hybrid, llm_fraction: 0.5, voice: true"


def test_tokens_of_failed_attempts_reach_the_events(openai_server, tmp_path):
    server = openai_server(fault_rate=0.3, fault_kinds=("invalid",), seed=2)
    run_dir = run(tmp_path, scenario_text(server.url, policy=HYBRID))
    events, ledger = read_events(run_dir), read_ledger(run_dir)
    assert (ledger["outcome"] == "invalid_output").sum() > 0 and (events["policy"] == "fallback").sum() > 0
    assert events["prompt_tokens"].sum() == ledger["prompt_tokens"].sum()
    assert events["completion_tokens"].sum() == ledger["completion_tokens"].sum()


def test_replay_reproduces_the_event_log_with_no_call_and_fails_clearly_on_a_missing_answer(openai_server,
                                                                                            tmp_path):
    server = openai_server(fault_rate=0.2, fault_kinds=("invalid", "500"), seed=4, retry_after_s=0.01)
    first = run(tmp_path, scenario_text(server.url, policy=HYBRID), "orig")
    calls = server.count
    again = replay(first)
    assert again == tmp_path / "runs" / "orig-replay" and server.count == calls
    assert comparable(read_events(first)).drop("run_id").equals(comparable(read_events(again)).drop("run_id"))
    ledger = read_ledger(again)
    assert ledger["cached"].all() and ledger.height == read_ledger(first).height
    # the same scenario and seed run again into the same output folder: the shared cache answers
    rerun = run(tmp_path, scenario_text(server.url, policy=HYBRID), "rerun")
    assert server.count == calls and read_ledger(rerun)["cached"].all()
    printed = CliRunner().invoke(app, ["replay", str(first)])  # the command prints the new folder
    assert printed.exit_code == 0 and printed.output.strip() == str(tmp_path / "runs" / "orig-replay-2")
    # an answer missing from the cache: one sentence, exit code 2, no folder left behind
    with sqlite3.connect(tmp_path / "runs" / ".llm_cache.sqlite") as db:
        db.execute("DELETE FROM responses WHERE key = (SELECT key FROM responses WHERE round = 2 LIMIT 1)")
    with pytest.raises(LLMCacheMiss):
        replay(first)
    result = CliRunner().invoke(app, ["replay", str(first)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert re.fullmatch(r"error: no cached answer for (decide|search|voice) of agent \d+ in round 2; "
                        r"replay needs the original run's cache", message), message
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir()) == [
        "orig", "orig-replay", "orig-replay-2", "rerun"]
    assert server.count == calls


def test_a_run_killed_mid_round_resumes_to_the_uninterrupted_ledger(openai_server, tmp_path):
    server = openai_server()
    path = write_scenario(tmp_path, scenario_text(server.url, policy=HYBRID, rounds=3))
    whole = run_scenario(path, out_dir=tmp_path / "whole", run_id="r")
    sim = runner.start(path, out_dir=tmp_path / "killed", run_id="r")
    sim.step()  # round 1 commits
    sim.world.run_round()  # round 2 pays for its calls, then the process dies before the commit
    sim.close()
    paid = server.count
    resumed = runner.resume(tmp_path / "killed" / "r")
    resumed.run()
    resumed.close()
    ledgers = [read_ledger(d).drop("latency_s", "call_id").sort("round", "agent_id", "purpose", "prompt_tokens")
               for d in (whole, tmp_path / "killed" / "r")]
    assert ledgers[0].equals(ledgers[1])
    assert not ledgers[1]["cached"].any()  # round 2's answers came from the cache, reported as paid
    assert server.count - paid == ledgers[0].filter(pl.col("round") == 3).height  # only round 3 was called
    assert read_ledger(tmp_path / "killed" / "r")["call_id"].sort().to_list() == list(range(ledgers[1].height))
    assert read_summary(whole)["llm"] == read_summary(tmp_path / "killed" / "r")["llm"]


def rerank_answer(body: dict) -> str:
    """The test server's answer: a re-ranking reverses the candidates the prompt lists."""
    prompt = prompt_text(body)
    if "ranking stage of a film recommender" not in prompt:
        return default_answer(body)
    return json.dumps({"ranking": [int(i) for i in re.findall(r"^(\d+): ", prompt, flags=re.MULTILINE)][::-1]})


def test_a_resumed_run_still_reranks_with_the_llm(openai_server, tmp_path):
    server = openai_server(answer=rerank_answer)
    text = scenario_text(server.url, policy="kind: rule", rounds=3).replace(
        "{name: popularity,", "{name: llm_rerank, params: {candidates: 6},")
    sim = runner.start(write_scenario(tmp_path, text), out_dir=tmp_path / "runs", run_id="rr")
    sim.step()
    sim.step()
    sim.close()  # the process ends after round 2
    resumed = runner.resume(tmp_path / "runs" / "rr")
    resumed.run()
    assert not resumed.world.recommender.failures  # in particular, never "no_llm"
    resumed.close()
    rerank = read_ledger(tmp_path / "runs" / "rr").filter(pl.col("purpose") == "rerank")
    assert set(rerank["round"]) == {2, 3} and server.count == rerank.height
