"""Shards as Ray actors (execution.backend: ray) give the run a single process gives.

A plain local Ray reaches off the machine (cloud metadata probes, a public resolver, the
external interface), so Ray starts here only in a child process inside a network namespace
that holds nothing but loopback (`unshare --net`, `lo` brought up), pinned to 127.0.0.1 with
the dashboard and usage stats off. The child (this file run as a program) starts Ray once,
makes every run the tests need and writes what it saw to results.json; the tests read it.
Skipped where user or network namespaces are not available.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simworld.execution.ray_backend import LOOPBACK_NAMESPACE

ROOT = Path(__file__).resolve().parents[1]


def namespace_problem() -> str | None:
    """Why a loopback-only namespace cannot be made here, or None."""
    if not sys.platform.startswith("linux") or not shutil.which("unshare") or not shutil.which("ip"):
        return "needs Linux with unshare and ip (a loopback-only network namespace for Ray)"
    probe = subprocess.run([*LOOPBACK_NAMESPACE, "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"no user and network namespaces here ({probe.stderr.strip()[:200]})"
    return None


@pytest.fixture(scope="module")
def ray_runs(tmp_path_factory) -> dict:
    problem = namespace_problem()
    if problem:
        pytest.skip(problem)
    out = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    child = subprocess.run([*LOOPBACK_NAMESPACE, sys.executable, str(Path(__file__)), str(out)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stdout[-2000:] + child.stderr[-4000:]
    return json.loads((out / "results.json").read_text())


def test_ray_runs_on_loopback_only(ray_runs):
    assert ray_runs["interfaces"] == ["lo"] and ray_runs["node_ip"] == "127.0.0.1", ray_runs["seconds"]


def test_ray_actors_give_the_single_process_event_log(ray_runs):
    assert ray_runs["rule_equal"] and ray_runs["rule_chats"] > 0
    assert len(ray_runs["rule_shards"]) == 3 and max(ray_runs["rule_shards"]) <= 20


def test_llm_agents_on_ray_answer_from_the_shared_cache_with_no_call(ray_runs):
    assert ray_runs["llm_local_calls"] > 0 and ray_runs["llm_ray_calls"] == 0
    assert ray_runs["llm_equal"] and ray_runs["llm_all_cached"]


def test_a_killed_actor_is_started_again_and_nothing_is_lost(ray_runs):
    assert ray_runs["kill_restarts"] == 1 and ray_runs["kill_new_pid"]
    assert ray_runs["kill_events_equal"] and ray_runs["kill_ledger_equal"]


def test_an_unreachable_ray_address_is_one_clear_error(tmp_path):
    from simworld.cli import app
    from tests.helpers import write_scenario
    from tests.test_execution import SOCIAL

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_scenario(tmp_path, SOCIAL)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "runs"), "--ray", f"127.0.0.1:{port}"])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused); "
                                     "start it there with `ray start --head` or check the address")
    assert time.monotonic() - started < 30 and not list((tmp_path / "runs").glob("*"))
    result = CliRunner().invoke(app, ["run", str(path), "--ray", "http://somewhere"])
    assert result.exit_code == 2 and "is not a Ray address: give 'ray://host:10001'" in result.output


def test_a_local_ray_is_refused_where_the_network_is_reachable(tmp_path, monkeypatch):
    from simworld.cli import app
    from simworld.execution.ray_backend import ALLOW_NETWORK_ENV, loopback_only
    from tests.helpers import write_scenario
    from tests.test_execution import SOCIAL

    if loopback_only():
        pytest.skip("this process sees only loopback: a local Ray is allowed here")
    monkeypatch.delenv(ALLOW_NETWORK_ENV, raising=False)
    result = CliRunner().invoke(app, ["run", str(write_scenario(tmp_path, SOCIAL)), "--out", str(tmp_path / "runs"),
                                      "--ray", "local"])
    assert result.exit_code == 2 and "error: a local Ray would reach off this machine" in result.output
    assert not list((tmp_path / "runs").glob("*"))


# -- the child: runs inside the loopback-only namespace ------------------------------------------

def child(out: Path) -> None:
    import ray
    from simworld import runner
    from simworld.config import ExecutionSpec, load_scenario
    from simworld.execution.ray_backend import connect
    from simworld.llm import read_ledger
    from tests.helpers import write_scenario
    from tests.openai_server import FakeOpenAIServer
    from tests.test_execution import SOCIAL, events_of, ledger_of, llm_text, run

    results: dict = {"interfaces": [name for _, name in socket.if_nameindex()], "seconds": {}}
    started = time.monotonic()

    def lap(name: str) -> None:  # where the child's time goes (shown when a test fails)
        results["seconds"][name] = round(time.monotonic() - started, 1)

    connect(ExecutionSpec(backend="ray", workers=2))  # the run's own start; the runs below reuse it
    results["node_ip"] = ray.util.get_node_ip_address()
    lap("ray started")

    scenario = load_scenario(write_scenario(out, SOCIAL))
    local = run(scenario, out / "runs", "rule-local")
    on_ray = run(scenario, out / "runs", "rule-ray", backend="ray", workers=2, shard_size=20)
    results["rule_equal"] = events_of(local).equals(events_of(on_ray))
    results["rule_chats"] = events_of(local).filter(events_of(local)["action"] == "chat").height
    results["rule_shards"] = [len(s) for s in on_ray.world.executor.shards]
    lap("rule runs")

    server = FakeOpenAIServer(latency_s=0.1).start()
    scenario = load_scenario(write_scenario(out, llm_text(server.url, str(out / "c1")), "llm.yaml"))
    local = run(scenario, out / "runs", "llm-local")
    results["llm_local_calls"] = calls = server.count
    cached = run(scenario, out / "runs", "llm-ray", backend="ray", workers=2, shard_size=3)
    results["llm_ray_calls"] = server.count - calls
    results["llm_equal"] = events_of(local).equals(events_of(cached))
    results["llm_all_cached"] = bool(read_ledger(cached.run_dir)["cached"].all())
    lap("llm runs")

    cold = load_scenario(write_scenario(out, llm_text(server.url, str(out / "c2")), "cold.yaml"))
    sim = runner.start(cold.with_settings({"execution.backend": "ray", "execution.workers": 2}),
                       out_dir=out / "runs", run_id="llm-killed")
    try:
        sim.step()
        executor = sim.world.executor
        victim, before = executor.pids[0], server.count

        def kill_in_round_two() -> None:
            deadline = time.monotonic() + 30
            while server.count < before + 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(victim, signal.SIGKILL)  # the actor's process, while its calls are in flight

        killer = threading.Thread(target=kill_in_round_two)
        killer.start()
        sim.run()
        killer.join()
        results["kill_restarts"] = executor.restarts
        results["kill_new_pid"] = executor.pids[0] != victim
    finally:
        sim.close()
    results["kill_events_equal"] = events_of(local).equals(events_of(sim))
    results["kill_ledger_equal"] = ledger_of(local).equals(ledger_of(sim))
    lap("kill run")
    server.stop()
    ray.shutdown()
    lap("ray stopped")
    (out / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    child(Path(sys.argv[1]))
