"""LLM-driven users in a whole run, through litellm against a real OpenAI-protocol server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl

from simworld.llm import read_ledger
from simworld.recorder import read_events, read_summary
from simworld.runner import run_scenario
from tests.helpers import comparable, write_scenario
from tests.openai_server import openai_server  # noqa: F401  (fixture)


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
