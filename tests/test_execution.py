"""Deciding in worker processes (execution.backend: processes) gives the run a single process
gives: the same event log and the same ledger, LLM answers from the shared cache, a worker
killed mid-round started again with nothing lost. Ray: tests/test_ray.py."""

from __future__ import annotations

import os
import signal
import threading
import time

import networkx as nx
import polars as pl
import pytest

from simworld import runner
from simworld.config import load_scenario
from simworld.errors import ScenarioError, SimworldError
from simworld.execution.processes import ProcessExecutor
from simworld.execution.shards import assign_shards, plan_shards
from simworld.llm import read_ledger
from simworld.recorder import read_events, read_summary
from tests.helpers import comparable, write_scenario
from tests.openai_server import openai_server  # noqa: F401  (fixture)

SOCIAL = """
name: exec-social
seed: 3
rounds: 4
population: {size: 60, source: synthetic}
activity: {model: constant, probability: 0.8}
recommender: {name: popularity, page_size: 8, max_pages: 2}
policy: rule
social: {graph: {degree: 5}, mix: {watch: 0.6, talk: 0.2, post: 0.2}}
"""


def llm_text(url: str, cache: str, rounds: int = 2, size: int = 8) -> str:
    return f"""
name: exec-llm
seed: 5
rounds: {rounds}
population: {{size: {size}}}
activity: {{model: constant, probability: 1.0}}
recommender: {{name: popularity, page_size: 4, max_pages: 2}}
policy: {{kind: hybrid, llm_fraction: 0.5, voice: true}}
llm: {{model: openai/test-model, api_base: {url}, retry_base_s: 0.01, timeout_s: 10, cache_dir: {cache}}}
"""


def run(scenario, out, run_id: str, **execution):
    settings = {f"execution.{k}": v for k, v in execution.items()}
    sim = runner.start(scenario.with_settings(settings), out_dir=out, run_id=run_id)
    try:
        sim.run()
    finally:
        sim.close()
    return sim


def events_of(sim) -> pl.DataFrame:
    return comparable(read_events(sim.run_dir)).drop("run_id")


def ledger_of(sim) -> pl.DataFrame:
    return read_ledger(sim.run_dir).drop("latency_s", "call_id", "run_id").sort(
        "round", "agent_id", "purpose", "prompt_tokens", "completion_tokens")


def test_shards_follow_the_graphs_communities_and_hold_every_agent_once():
    graph = nx.connected_caveman_graph(6, 10)  # six cliques of ten, joined in a ring
    shuffled = {n: (n * 37) % 60 for n in graph}  # community members do not have neighbouring ids
    graph = nx.relabel_nodes(graph, shuffled)
    shards = plan_shards(list(range(60)), 20, graph, seed=1)
    assert sorted(a for s in shards for a in s) == list(range(60)) and all(len(s) <= 20 for s in shards)
    inside = sum(1 for a, b in graph.edges if any(a in s and b in s for s in shards))
    by_id = plan_shards(list(range(60)), 20)
    inside_by_id = sum(1 for a, b in graph.edges if any(a in s and b in s for s in by_id))
    assert inside >= 0.9 * graph.number_of_edges() > inside_by_id
    assert by_id == [list(range(0, 20)), list(range(20, 40)), list(range(40, 60))]
    assert plan_shards(list(range(60)), 20, graph, seed=1) == shards  # seeded: the same split again
    assert sorted(i for w in assign_shards(shards, 2) for i in w) == list(range(len(shards)))


def test_worker_processes_give_the_single_process_event_log(tmp_path):
    scenario = load_scenario(write_scenario(tmp_path, SOCIAL))
    local = run(scenario, tmp_path / "runs", "local")
    workers = run(scenario, tmp_path / "runs", "workers", backend="processes", workers=2, shard_size=20)
    assert events_of(local).equals(events_of(workers))
    assert events_of(local).filter(pl.col("action") == "chat").height > 0  # the social side ran too


def test_llm_agents_in_workers_answer_from_the_shared_cache_as_one_process_did(openai_server, tmp_path):
    server = openai_server()
    scenario = load_scenario(write_scenario(tmp_path, llm_text(server.url, str(tmp_path / "cache"))))
    local = run(scenario, tmp_path / "runs", "local")
    calls = server.count
    assert calls > 0
    workers = run(scenario, tmp_path / "runs", "workers", backend="processes", workers=2, shard_size=3)
    assert server.count == calls  # every answer from the cache the first run filled
    assert events_of(local).equals(events_of(workers))
    assert read_ledger(workers.run_dir)["cached"].all() and read_ledger(workers.run_dir).height == calls


def test_a_worker_killed_mid_round_is_started_again_and_nothing_is_lost(openai_server, tmp_path):
    server = openai_server(latency_s=0.15)
    local = run(load_scenario(write_scenario(tmp_path, llm_text(server.url, str(tmp_path / "c1"), rounds=3))),
                tmp_path / "runs", "local")
    scenario = load_scenario(write_scenario(tmp_path, llm_text(server.url, str(tmp_path / "c2"), rounds=3), "w.yaml"))
    sim = runner.start(scenario.with_settings({"execution.backend": "processes", "execution.workers": 2}),
                       out_dir=tmp_path / "runs", run_id="killed")
    try:
        sim.step()  # round 1, and the workers are up
        executor = sim.world.executor
        assert isinstance(executor, ProcessExecutor)
        victim, before = executor.pids[0], server.count

        def kill_in_round_two() -> None:
            deadline = time.monotonic() + 30
            while server.count < before + 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(victim, signal.SIGKILL)  # while its agents' calls are in flight

        killer = threading.Thread(target=kill_in_round_two)
        killer.start()
        sim.run()
        killer.join()
        assert executor.restarts == 1 and executor.pids[0] != victim
    finally:
        sim.close()
    assert events_of(local).equals(events_of(sim))
    # every call once, numbered by the driver; the answers the dead worker had paid for count as
    # paid (once): the ledger is the uninterrupted one
    assert ledger_of(local).equals(ledger_of(sim))
    assert read_ledger(sim.run_dir)["call_id"].sort().to_list() == list(range(ledger_of(local).height))


def test_bad_execution_settings_are_one_clear_line(tmp_path):
    cases = {
        "execution: {backend: threads}":
            "execution.backend: must be one of 'local', 'processes' or 'ray', got 'threads'",
        "execution: {backend: processes, workers: 0}": "execution.workers: must be >= 1, got 0",
        "execution: {backend: processes, address: 'ray://h:10001'}":
            "execution: address is given but backend is 'processes': set backend to 'ray', or remove address",
        "execution: {shard_size: -5}": "execution.shard_size: must be >= 1, got -5",
    }
    for line, message in cases.items():
        with pytest.raises(ScenarioError) as caught:
            load_scenario(write_scenario(tmp_path, SOCIAL + line + "\n"))
        assert caught.value.problems == [message]


def test_a_policy_workers_cannot_rebuild_is_refused_clearly(tmp_path):
    from dataclasses import replace

    from simworld.agents.rule_policy import RulePolicy
    from simworld.build import build_parts
    from simworld.world import SimWorld

    class Fan(RulePolicy):
        name = "fan"

    scenario = load_scenario(write_scenario(tmp_path, SOCIAL)).with_settings({"execution.backend": "processes"})
    parts = build_parts(scenario)
    world = SimWorld(scenario, replace(parts, policy_for=lambda persona: Fan()))
    try:
        with pytest.raises(SimworldError, match=rf"agent {min(world.users)} decides with Fan, which workers cannot "
                                                r"build from the scenario .*: run it with execution.backend local"):
            world.run_round()
    finally:
        world.close()


def test_a_model_gone_in_a_worker_stops_the_run_cleanly_as_in_one_process(openai_server, tmp_path):
    server = openai_server()
    scenario = load_scenario(write_scenario(tmp_path, llm_text(server.url, str(tmp_path / "cache"), rounds=3)))
    sim = runner.start(scenario.with_settings({"execution.backend": "processes"}), out_dir=tmp_path / "runs",
                       run_id="gone")
    try:
        sim.step()
        server.stop()  # the workers' model goes away: their LLMUnavailableError reaches the driver as itself
        with pytest.raises(SimworldError, match=r"stopped with 1 of 3 rounds done and resumes with: simworld resume"):
            sim.run()
    finally:
        sim.close()
    assert read_summary(sim.run_dir)["status"] == "stopped"
    assert read_ledger(sim.run_dir).filter(pl.col("round") == 1).height > 0


def test_a_run_resumes_on_another_backend_to_the_same_events(tmp_path):
    """`simworld resume --workers N` / `--local`: a run started in this process goes on in worker
    processes (and back) with the events an uninterrupted run gives."""
    from typer.testing import CliRunner

    from simworld.cli import app

    scenario = load_scenario(write_scenario(tmp_path, SOCIAL))
    whole = run(scenario, tmp_path / "whole", "whole")
    sim = runner.start(scenario, out_dir=tmp_path / "cut", run_id="cut")
    sim.step()
    sim.step()
    sim.close()
    moved = runner.resume(sim.run_dir, {"execution.backend": "processes", "execution.workers": 2})
    try:
        assert isinstance(moved.world.executor, ProcessExecutor)
        moved.step()
    finally:
        moved.close()
    done = CliRunner().invoke(app, ["resume", str(sim.run_dir), "--local"])
    assert done.exit_code == 0, done.output
    assert events_of(sim).equals(events_of(whole))
    bad = CliRunner().invoke(app, ["resume", str(sim.run_dir), "--local", "--workers", "2"])
    assert bad.exit_code == 2 and "--local" in bad.output
    with pytest.raises(SimworldError, match="only execution settings"):
        runner.resume(sim.run_dir, {"seed": 4})
