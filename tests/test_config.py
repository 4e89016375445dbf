"""Scenario validation: good files load; each bad file gets the message that names its YAML path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simworld.config import Scenario, load_scenario, scenario_json_schema
from simworld.errors import ScenarioError

GOOD = """
name: tiny
seed: 3
rounds: 2
population: {size: 5}
recommender: {name: popularity, params: {window: 2}}
policy: rule
"""

BAD_CASES = [
    ("population: {size: -3}", "population.size: must be > 0, got -3"),
    ("rounds: 0", "rounds: must be > 0, got 0"),
    ("seed: -1", "seed: must be >= 0, got -1"),
    ("activity: {model: sometimes}", "activity.model: must be one of 'constant', 'pareto' or 'marginal', got 'sometimes'"),
    ("activity: {probability: 1.5}", "activity.probability: must be <= 1, got 1.5"),
    ("recommender: {name: nosuchalgo}", "recommender: unknown recommender 'nosuchalgo'"),
    ("recommender: {name: popularity, params: {window: 0}}", "recommender.params.window: must be >= 1, got 0"),
    ("recommender: {name: popularity, params: {colour: red}}", "recommender.params.colour: unknown field"),
    ("recommender: {page_size: 0}", "recommender.page_size: must be > 0, got 0"),
    ("popluation: {size: 3}", "popluation: unknown field"),
    ("policy: {kind: magic}", "policy.kind: must be one of 'rule', 'llm' or 'hybrid', got 'magic'"),
    ("catalog: {source: movielens}", "catalog: source 'movielens' needs a path"),
    ("population: {size: many}", "population.size: input should be a valid integer"),
    ("output: {run_id: 'a/b'}", "output.run_id: may hold only letters, digits"),
    ("rounds: [1, 2]", "rounds: input should be a valid integer"),
    ("- just\n- a list", "the top level must be a mapping of sections, got list"),
    ("rounds: 3\n  bad: indentation", "not valid YAML"),
    ("recommender: {name: 'os:path'}", "does not satisfy the Recommender protocol"),
]


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_file_loads_into_a_frozen_typed_scenario(tmp_path):
    s = load_scenario(write(tmp_path, GOOD))
    assert (s.name, s.seed, s.rounds, s.population.size) == ("tiny", 3, 2, 5)
    assert s.policy.kind == "rule" and s.recommender.params == {"window": 2}
    with pytest.raises(Exception):
        s.rounds = 4  # frozen


def test_name_defaults_to_file_stem_and_relative_paths_start_at_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    s = load_scenario(write(tmp_path / "sub", "catalog: {source: csv, path: films.csv}", "mine.yaml"))
    assert s.name == "mine"
    assert s.resolve_path("films.csv") == tmp_path / "sub" / "films.csv"
    assert Path(s.resolved().catalog.path).is_absolute()


@pytest.mark.parametrize("text,expected", BAD_CASES, ids=[c[1][:40] for c in BAD_CASES])
def test_bad_file_names_the_problem(tmp_path, text, expected):
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_every_problem_is_reported_once(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, "rounds: 0\npopulation: {size: -1}\nseed: -2\n"))
    assert len(info.value.problems) == 3


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "nope.yaml")


def test_shipped_scenarios_validate(repo_root):
    files = sorted((repo_root / "scenarios").glob("*.yaml"))
    assert any(f.name == "movies.yaml" for f in files)
    for f in files:
        assert isinstance(load_scenario(f), Scenario)


def test_json_schema_lists_the_sections():
    schema = scenario_json_schema()
    assert {"population", "catalog", "activity", "recommender", "policy", "output"} <= set(schema["properties"])
    assert "base_dir" not in schema["properties"]


def test_schema_command_does_not_import_torch(repo_root):
    code = ("import sys; from simworld.cli import app; sys.argv=['simworld','schema'];\n"
            "try:\n app()\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules and 'litellm' not in sys.modules, 'heavy import'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["title"] == "simworld scenario"


def test_tests_cannot_reach_the_network():
    import socket

    with pytest.raises(ConnectionRefusedError, match="tests run offline"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)  # TEST-NET-1: never routable
