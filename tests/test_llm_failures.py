"""LLM failures handled, not hidden: an unreachable model stops the run at a round boundary
with one clear message and the run resumes; the viewer honours the budget."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from simworld import runner
from simworld.errors import SimworldError
from simworld.recorder import read_events, read_summary
from simworld.viewer.session import STOPPED, RunController
from tests.helpers import comparable, write_scenario
from tests.openai_server import FakeOpenAIServer, free_closed_port, openai_server  # noqa: F401  (fixture)

SCENARIO = """
name: flaky
seed: 5
rounds: {rounds}
population: {{size: 6}}
activity: {{model: constant, probability: 1.0}}
recommender: {{name: popularity, page_size: 4, max_pages: 2}}
policy: {{kind: llm}}
llm:
  model: openai/test-model
  api_base: http://127.0.0.1:{port}/v1
  retry_base_s: 0.01
  retry_max_s: 0.02
  max_retries: 1
  timeout_s: 5
  {extra}
"""


def scenario(tmp_path, port: int, rounds: int = 3, extra: str = "", name: str = "flaky.yaml"):
    return write_scenario(tmp_path, SCENARIO.format(port=port, rounds=rounds, extra=extra), name)


def test_a_model_that_goes_away_stops_the_run_at_the_round_boundary_and_it_resumes(tmp_path):
    port = free_closed_port()
    with FakeOpenAIServer().start(port):
        reference = runner.run_scenario(scenario(tmp_path, port, name="ref.yaml"), out_dir=tmp_path / "ref",
                                        run_id="r")
    path = scenario(tmp_path, port)
    server = FakeOpenAIServer().start(port)
    sim = runner.start(path, out_dir=tmp_path / "runs", run_id="r")
    try:
        sim.step()  # round 1 with the model up
        server.stop()  # then the endpoint disappears
        with pytest.raises(SimworldError) as err:
            sim.run()
    finally:
        sim.close()
    message = str(err.value)
    summary = read_summary(tmp_path / "runs" / "r")
    assert summary["status"] == "stopped" and summary["rounds_done"] == 1
    assert "\n" not in message and "unreachable" in message
    assert f"stopped with {summary['rounds_done']} of 3 rounds done and resumes with: simworld resume" in message
    with FakeOpenAIServer().start(port):  # the model is back
        resumed = runner.resume(tmp_path / "runs" / "r")
        resumed.run()
        resumed.close()
    assert read_summary(tmp_path / "runs" / "r")["status"] == "finished"
    assert comparable(read_events(tmp_path / "runs" / "r")).equals(comparable(read_events(reference)))


def test_an_unreachable_model_is_one_message_and_exit_2_on_the_command_line(tmp_path):
    path = scenario(tmp_path, free_closed_port(), rounds=2)
    out = subprocess.run([sys.executable, "-m", "simworld.cli", "run", str(path), "--out", str(tmp_path / "runs"),
                          "--run-id", "r"], capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"),
                         timeout=300)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:") and "Traceback" not in out.stderr, out.stderr
    assert "simworld resume" in errors[0]
    assert read_summary(tmp_path / "runs" / "r")["status"] == "stopped"


def test_the_viewer_stops_when_the_budget_is_spent(openai_server, tmp_path):
    server = openai_server()
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    path = scenario(tmp_path, int(port), rounds=5, extra="budget_tokens: 50")
    ctl = RunController.start(path, out_dir=tmp_path / "runs")
    try:
        status = ctl.wait(120)
    finally:
        ctl.stop()
    assert status.state == STOPPED and status.rounds_done == 1
    assert "budget" in (status.error or "")
    summary = read_summary(ctl.run_dir)
    assert summary["status"] == "budget_exhausted" and summary["rounds_done"] == 1
