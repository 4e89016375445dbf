"""The world end to end with rule-driven users: determinism, the round's invariants, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal
import pytest

from simworld import runner
from simworld.config import load_scenario
from simworld.recorder import read_events, read_metrics, read_summary
from tests.helpers import comparable, write_scenario

SMALL = """
name: small
seed: {seed}
rounds: {rounds}
population: {{size: {size}}}
activity: {{model: {activity}, probability: 0.6}}
recommender: {{name: popularity, params: {{window: 2}}, page_size: 5, max_pages: 3}}
policy: rule
"""


def scenario_file(tmp_path: Path, seed=7, rounds=4, size=40, activity="pareto") -> Path:
    return write_scenario(tmp_path, SMALL.format(seed=seed, rounds=rounds, size=size, activity=activity),
                          f"small-{seed}-{rounds}-{size}-{activity}.yaml")


def test_same_seed_gives_identical_event_log(tmp_path):
    path = scenario_file(tmp_path)
    a = runner.run_scenario(path, out_dir=tmp_path / "a", run_id="r")
    b = runner.run_scenario(path, out_dir=tmp_path / "b", run_id="r")
    ea, eb = read_events(a), read_events(b)
    assert ea.height > 50
    assert comparable(ea).equals(comparable(eb))
    # metrics are float aggregates (polars may sum in any order): equal to rounding
    assert_frame_equal(read_metrics(a).drop("wall_s"), read_metrics(b).drop("wall_s"))


def test_different_seed_gives_a_different_log(tmp_path):
    a = runner.run_scenario(scenario_file(tmp_path, seed=1), out_dir=tmp_path / "a", run_id="r")
    b = runner.run_scenario(scenario_file(tmp_path, seed=2), out_dir=tmp_path / "b", run_id="r")
    assert not comparable(read_events(a)).equals(comparable(read_events(b)))


def test_run_folder_holds_everything(tmp_path):
    run_dir = runner.run_scenario(scenario_file(tmp_path), out_dir=tmp_path, run_id="full")
    names = {p.name for p in run_dir.iterdir()}
    assert {"events.parquet", "metrics.parquet", "summary.json", "scenario.yaml", "checkpoint.pkl"} <= names
    assert "events" not in names  # per-round parts are folded into events.parquet at the end
    summary = read_summary(run_dir)
    assert summary["status"] == "finished" and summary["rounds_done"] == 4
    metrics = read_metrics(run_dir)
    assert metrics["round"].to_list() == [1, 2, 3, 4]
    assert {"active_agents", "watches", "mean_rating", "coverage", "genre_entropy"} <= set(metrics.columns)
    assert load_scenario(run_dir / "scenario.yaml").seed == 7


def test_round_invariants(tmp_path):
    sim = runner.start(scenario_file(tmp_path, rounds=3), out_dir=tmp_path, run_id="inv")
    shown_by_agent: dict[int, set[int]] = {}
    for _ in range(3):
        result, metrics = sim.step()
        ev = result.events
        # apply runs in agent-id order; seq numbers rows in that order
        firsts = ev.group_by("agent_id", maintain_order=True).first()["agent_id"].to_list()
        assert firsts == sorted(firsts)
        assert ev["seq"].to_list() == list(range(ev.height))
        assert metrics["active_agents"] == ev["agent_id"].n_unique()
        # every watched item was shown to that agent on a page or a search in this round
        for agent_id, group in ev.group_by("agent_id"):
            shown = set(group.filter(pl.col("items").is_not_null())["items"].explode().to_list())
            watched = set(group.filter(pl.col("action") == "watch")["item_id"].to_list())
            assert watched <= shown
            shown_by_agent.setdefault(agent_id[0], set()).update(shown)
        # a page of recommendations never repeats what the agent already watched
        for row in ev.filter(pl.col("action") == "page").iter_rows(named=True):
            seen_before = set(sim.world.users[row["agent_id"]].state.watched) - set(
                ev.filter((pl.col("agent_id") == row["agent_id"]) & (pl.col("action") == "watch"))["item_id"].to_list())
            assert not (set(row["items"]) & seen_before)
    sim.close()


def test_activity_models_and_max_active(tmp_path):
    for model in ("constant", "pareto", "marginal"):
        path = write_scenario(tmp_path, SMALL.format(seed=3, rounds=3, size=60, activity=model)
                              .replace("probability: 0.6", "probability: 0.6, max_active: 10"), f"{model}.yaml")
        run_dir = runner.run_scenario(path, out_dir=tmp_path / model, run_id="m")
        active = read_metrics(run_dir)["active_agents"].to_list()
        assert all(0 < a <= 10 for a in active), (model, active)


def test_popularity_recommender_learns_from_the_round(tmp_path):
    sim = runner.start(scenario_file(tmp_path, rounds=2), out_dir=tmp_path, run_id="learn")
    result, _ = sim.step()
    counts = dict(result.events.filter(pl.col("action") == "watch")["item_id"].value_counts().iter_rows())
    top = max(counts.values())
    # after learning, a user who watched nothing is offered one of the most watched items first
    fresh = next(a for a, agent in sim.world.users.items() if not agent.state.watched)
    assert counts.get(sim.world.recommender.recommend([fresh], 3)[0][0]) == top
    sim.close()


def _python_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "simworld.cli", *args]


def _wait_for_rounds(run_dir: Path, rounds: int, proc: subprocess.Popen, timeout: float = 900) -> None:
    # generous: a cold interpreter importing the stack takes minutes on a loaded 2-core machine
    deadline = time.time() + timeout
    while time.time() < deadline:
        summary = read_summary(run_dir) if (run_dir / "summary.json").exists() else None
        if summary and summary["rounds_done"] >= rounds:  # written right after the round's checkpoint
            return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "process ended early"
        time.sleep(0.02)
    raise AssertionError("run did not reach the round in time")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["crash", "ctrl-c"])
def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, sig):
    path = scenario_file(tmp_path, seed=11, rounds=8, size=300, activity="constant")
    reference = runner.run_scenario(path, out_dir=tmp_path / "ref", run_id="r")

    out = tmp_path / "crash"
    proc = subprocess.Popen(_python_cli("run", str(path), "--out", str(out), "--run-id", "r"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_rounds(out / "r", 2, proc)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, sig)
    code = proc.wait(timeout=120)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    assert 2 <= read_summary(out / "r")["rounds_done"] < 8, "the kill must land mid-run"
    if sig == signal.SIGINT:
        assert read_summary(out / "r")["status"] == "interrupted"

    done = subprocess.run(_python_cli("resume", str(out / "r")), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resumed = read_events(out / "r")
    assert read_summary(out / "r")["status"] == "finished"
    assert comparable(resumed).equals(comparable(read_events(reference)))
    assert read_metrics(out / "r")["round"].to_list() == list(range(1, 9))
