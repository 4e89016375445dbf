"""Kill a run the hard way, resume it, and compare everything with the run that was never killed.

The run has everything that keeps state: LLM-deciding and LLM-voiced agents against the
OpenAI-protocol test server with faults (drawn per request, so concurrent runs meet the same
ones), agent memory in chromadb with reflection, the `llm_rerank` recommender and a token
budget that stops the run after round 3. Each kill is a real SIGKILL of a separate process
(tests/killer.py) at a stage boundary, at a commit-point step, inside `finish`, or at a
random moment; `resume` must then give the same events, ledger, memories, metrics, agents and
summary as the uninterrupted run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from simworld import runner
from simworld.config import load_scenario
from simworld.llm import read_ledger
from simworld.memory import open_memory
from simworld.recorder import read_agents, read_events, read_metrics, read_summary
from tests.helpers import comparable, write_scenario
from tests.openai_server import openai_server  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]

SCENARIO = """
name: killme
seed: 9
rounds: 4
population: {{size: 12}}
activity: {{model: constant, probability: 0.9}}
recommender: {{name: llm_rerank, params: {{candidates: 8}}, page_size: 4, max_pages: 2}}
policy: {{kind: hybrid, llm_fraction: 0.5, voice: true, voice_fraction: 0.5}}
llm:
  model: openai/test-model
  api_base: {url}
  retry_base_s: 0.01
  retry_max_s: 0.05
  timeout_s: 10
  concurrency: 4
  {budget}
memory: {{backend: chroma, embedder: hashing, reflection_threshold: 1.5}}
"""

# stage boundaries of round 2, the commit point's steps, finishing, then random moments
KILL_POINTS = [
    ("before:activate", 2), ("after:recall", 2), ("after:decide", 2), ("after:apply", 2),
    ("after:remember", 2), ("after:reflect", 2), ("after:forget", 2), ("after:learn", 2),
    ("after:ledger_flush", 2), ("after:checkpoint", 2), ("after:memory_commit", 1),
]
RANDOM_KILLS = 2


def server_for(factory):
    return factory(fault_rate=0.25, fault_kinds=("429", "500", "invalid", "non_json"), faults_by_request=True,
                   retry_after_s=0.01)


def write(tmp_path: Path, name: str, url: str, budget_tokens: int | None) -> Path:
    budget = f"budget_tokens: {budget_tokens}" if budget_tokens else ""
    return write_scenario(tmp_path / "scenarios", SCENARIO.format(url=url, budget=budget), f"{name}.yaml")


def memories(run_dir: Path) -> pl.DataFrame:
    scenario = load_scenario(run_dir / "scenario.yaml")
    store = open_memory(scenario.memory, run_dir, run_id=read_summary(run_dir)["run_id"])
    try:
        rows = [{"agent_id": r.agent_id, "memory_id": r.memory_id, "text": r.text, "kind": r.kind,
                 "importance": r.importance, "created_round": r.created_round,
                 "last_access_round": r.last_access_round, "access_count": r.access_count}
                for agent_id in range(scenario.population.size) for r in store.all(agent_id)]
    finally:
        store.close()
    return pl.DataFrame(rows).sort("agent_id", "memory_id")


def snapshot(run_dir: Path, exact_retries: bool = True) -> dict:
    ledger = read_ledger(run_dir)
    assert sorted(ledger["call_id"].to_list()) == list(range(ledger.height))  # no id repeated or skipped
    drop = ["latency_s", "call_id", "run_id"] + ([] if exact_retries else ["retries", "outcome", "error"])
    summary = read_summary(run_dir)
    for key in ("wall_s", "run_id", "message"):
        summary.pop(key, None)
    summary["llm"] = {k: v for k, v in summary.get("llm", {}).items() if "latency" not in k
                      and (exact_retries or not (k == "retries" or k.startswith("outcome_")))}
    return {
        "events": comparable(read_events(run_dir)).drop("run_id"),
        "ledger": ledger.drop(drop).sort("round", "agent_id", "purpose", "prompt_tokens", "completion_tokens"),
        "metrics": read_metrics(run_dir).drop("wall_s"),
        "agents": read_agents(run_dir),
        "memories": memories(run_dir),
        "summary": summary,
    }


def assert_same(got: dict, want: dict, label: str) -> None:
    for key in ("events", "ledger", "metrics", "agents", "memories"):
        assert got[key].equals(want[key]), f"{label}: {key} differ"
    assert got["summary"] == want["summary"], f"{label}: summary differs"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted runs: without a budget (it finishes), and with a budget that ends it
    after round 3 (calibrated on the first)."""
    from tests.openai_server import FakeOpenAIServer

    tmp = tmp_path_factory.mktemp("reference")
    with server_for(lambda **kw: FakeOpenAIServer(**kw).start()) as server:
        free = runner.run_scenario(write(tmp, "free", server.url, None), out_dir=tmp / "free", run_id="r")
    per_round = read_ledger(free).group_by("round").agg(pl.col("total_tokens").sum()).sort("round")
    budget = int(per_round["total_tokens"][:2].sum()) + 1  # spent during round 3
    with server_for(lambda **kw: FakeOpenAIServer(**kw).start()) as server:
        run_dir = runner.run_scenario(write(tmp, "ref", server.url, budget), out_dir=tmp / "ref", run_id="r")
    summary = read_summary(run_dir)
    assert summary["status"] == "budget_exhausted" and summary["rounds_done"] == 3
    events = read_events(run_dir)
    assert events.filter(pl.col("action") == "reflect").height > 0  # memory reflected
    ledger = read_ledger(run_dir)
    assert (ledger["outcome"] == "invalid_output").any()  # content faults reached the policies
    assert (ledger["retries"] > 0).any() and (ledger["purpose"] == "rerank").any()
    span_s = float(read_metrics(run_dir)["wall_s"][1:].sum())  # rounds 2 and 3: where random kills land
    return budget, snapshot(run_dir), snapshot(run_dir, exact_retries=False), snapshot(free), span_s


def kill_and_resume(tmp_path: Path, server, budget: int | None, point: str, round_no: int,
                    delay_s: float | None = None) -> Path:
    path = write(tmp_path, "killed", server.url, budget)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "tests.killer", str(path), str(out), "r", point, str(round_no)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if delay_s is not None:  # a random moment: wait for round 1 to commit, then a little more
        deadline = time.time() + 300
        while not (out / "r" / "checkpoint.pkl").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(delay_s)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    code = proc.wait(timeout=300)
    assert code == -signal.SIGKILL, f"{point}: the run was not killed (exit {code}): {proc.stderr.read()[-2000:]}"
    sim = runner.resume(out / "r")
    try:
        sim.run()
    finally:
        sim.close()
    return out / "r"


@pytest.mark.parametrize("point,round_no", KILL_POINTS, ids=[p for p, _ in KILL_POINTS])
def test_a_kill_at_a_named_point_resumes_to_the_uninterrupted_run(reference, openai_server, tmp_path, point,
                                                                   round_no):
    budget, want, *_ = reference
    run_dir = kill_and_resume(tmp_path, server_for(openai_server), budget, point, round_no)
    assert_same(snapshot(run_dir), want, point)


def test_a_kill_inside_finish_is_finished_by_resume(reference, openai_server, tmp_path):
    """Killed with events.parquet written and the summary still "running": resume finishes it."""
    want = reference[3]
    run_dir = kill_and_resume(tmp_path, server_for(openai_server), None, "in:finish", 0)
    assert read_summary(run_dir)["status"] == "finished"
    assert_same(snapshot(run_dir), want, "in:finish")


@pytest.mark.parametrize("draw", range(RANDOM_KILLS))
def test_a_kill_at_a_random_moment_resumes_to_the_uninterrupted_run(reference, openai_server, tmp_path, draw):
    """A call in flight at the kill may have failed once before it: its retry count is the only
    thing that may differ (the resumed process's attempt is its first)."""
    budget, _, want, _, span_s = reference
    delay = random.Random(draw).uniform(0.05, 0.95) * span_s
    run_dir = kill_and_resume(tmp_path, server_for(openai_server), budget, "random", 0, delay_s=delay)
    assert_same(snapshot(run_dir, exact_retries=False), want, f"random kill {delay:.2f} s after round 1")
