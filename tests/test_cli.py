"""The command line as a user meets it: exit codes, messages, the schema, the run list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from tests.helpers import write_scenario

TINY = """
name: tiny
seed: 5
rounds: 2
population: {size: 12}
recommender: {name: random, page_size: 5, max_pages: 2}
"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str) -> Result:
    """The CLI in this process (typer's runner: same app, exit codes and streams, no interpreter start)."""
    from typer.testing import CliRunner

    from simworld.cli import app

    result = CliRunner().invoke(app, list(args))  # conftest sets a wide COLUMNS before rich starts
    return Result(result.exit_code, result.stdout, result.stderr)


def cli_process(*args: str) -> subprocess.CompletedProcess:
    """The installed entry point in a fresh interpreter, as a user runs it."""
    env = dict(os.environ, COLUMNS="200")  # a wide terminal: rich tables keep cells on one line
    return subprocess.run([sys.executable, "-m", "simworld.cli", *args], capture_output=True, text=True, env=env)


def test_run_succeeds_and_prints_a_summary(tmp_path):
    path = write_scenario(tmp_path, TINY)
    out = cli_process("run", str(path), "--out", str(tmp_path / "runs"), "--run-id", "t1", "--rounds", "3")
    assert out.returncode == 0, out.stderr
    assert "mean_rating" in out.stdout and "finished" in out.stdout
    summary = json.loads((tmp_path / "runs" / "t1" / "summary.json").read_text())
    assert summary["rounds_done"] == 3  # --rounds overrides the file


def test_bad_scenario_exits_2_with_one_line_per_problem_and_no_traceback(tmp_path):
    path = write_scenario(tmp_path, "population: {size: -3}\nrounds: 0\n")
    out = cli("run", str(path), "--out", str(tmp_path / "runs"))
    assert out.returncode == 2
    assert "population.size: must be > 0, got -3" in out.stderr
    assert "rounds: must be > 0, got 0" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_scenario_file_exits_2(tmp_path):
    out = cli("run", str(tmp_path / "nope.yaml"))
    assert out.returncode == 2 and "file not found" in out.stderr and "Traceback" not in out.stderr


def test_missing_catalog_file_exits_2(tmp_path):
    path = write_scenario(tmp_path, "catalog: {source: csv, path: missing.csv}\n")
    out = cli("run", str(path), "--out", str(tmp_path / "runs"))
    assert out.returncode == 2 and "catalog file not found" in out.stderr and "Traceback" not in out.stderr


def test_resume_of_a_missing_folder_exits_2(tmp_path):
    out = cli("resume", str(tmp_path / "nothing"))
    assert out.returncode == 2 and "run folder not found" in out.stderr


def test_existing_run_folder_is_never_overwritten(tmp_path):
    path = write_scenario(tmp_path, TINY)
    assert cli("run", str(path), "--out", str(tmp_path / "runs"), "--run-id", "same").returncode == 0
    before = (tmp_path / "runs" / "same" / "events.parquet").read_bytes()
    again = cli("run", str(path), "--out", str(tmp_path / "runs"), "--run-id", "same")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (tmp_path / "runs" / "same" / "events.parquet").read_bytes() == before


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    path = write_scenario(tmp_path, TINY)
    cli("run", str(path), "--out", str(tmp_path / "runs"), "--run-id", "done")
    before = (tmp_path / "runs" / "done" / "events.parquet").read_bytes()
    out = cli("resume", str(tmp_path / "runs" / "done"))
    assert out.returncode == 0 and "already has all" in out.stdout
    assert (tmp_path / "runs" / "done" / "events.parquet").read_bytes() == before


def test_schema_and_runs_and_validate(tmp_path):
    schema = cli("schema")
    assert schema.returncode == 0 and "population" in json.loads(schema.stdout)["properties"]
    path = write_scenario(tmp_path, TINY)
    cli("run", str(path), "--out", str(tmp_path / "runs"), "--run-id", "listed")
    listed = cli("runs", "--out", str(tmp_path / "runs"))
    assert listed.returncode == 0 and "listed" in listed.stdout and "finished" in listed.stdout
    assert cli("validate", str(path)).returncode == 0
    assert cli("validate", str(write_scenario(tmp_path, "rounds: -1", "bad.yaml"))).returncode == 2


def test_unknown_command_is_a_usage_error():
    assert cli("fly").returncode == 2
