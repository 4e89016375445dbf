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
    from simworld.crs.config import is_crs_scenario, load_crs_scenario

    files = sorted((repo_root / "scenarios").glob("*.yaml"))
    assert all(load_crs_scenario(f) for f in files if is_crs_scenario(f))  # `simworld crs generate` scenarios
    files = [f for f in files if not is_crs_scenario(f)]
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


# -- inputs that cannot break a run (issue 10, section 3) -------------------------------------

NON_FINITE_CASES = [
    ("policy: {rule: {repeat_penalty: .inf}}", "policy.rule.repeat_penalty: must be a finite number, got inf"),
    ("policy: {rule: {rating_center: .nan}}", "policy.rule.rating_center: must be a finite number, got nan"),
    ("policy: {rule: {continue_bias: -.inf}}", "policy.rule.continue_bias: must be a finite number, got -inf"),
    ("activity: {probability: .nan}", "activity.probability: must be a finite number, got nan"),
    ("activity: {growth: .inf}", "activity.growth: must be a finite number, got inf"),
    ("llm: {temperature: .nan}", "llm.temperature: must be a finite number, got nan"),
    ("llm: {budget_usd: .inf}", "llm.budget_usd: must be a finite number, got inf"),
    ("memory: {retrieval: {decay: .nan}}", "memory.retrieval.decay: must be a finite number, got nan"),
    ("memory: {reflection_threshold: .inf}", "memory.reflection_threshold: must be a finite number, got inf"),
    ("recommender: {name: mf, params: {alpha: .inf}}", "recommender.params.alpha: must be a finite number, got inf"),
    ("recommender: {name: itemknn, params: {shrinkage: .nan}}",
     "recommender.params.shrinkage: must be a finite number, got nan"),
]

BOUND_CASES = [
    ("activity: {pareto_alpha: 0.01}", "activity.pareto_alpha: must be >= 0.5, got 0.01"),
    ("population: {size: 100000000000}", "population.size: must be <= 1000000"),
    ("policy: {rule: {repeat_penalty: 1.0e+300}}", "policy.rule.repeat_penalty: must be <= 1e+06"),
    ("policy: {rule: {watch_slope: 1.0e+300}}", "policy.rule.watch_slope: must be <= 1e+06"),
    ("policy: {rule: {rating_center: -1.0e+300}}", "policy.rule.rating_center: must be >= -100"),
    ("recommender: {name: mf, params: {factors: 1000000000000}}", "recommender.params.factors: must be <= 1024"),
    ("recommender: {name: mf, params: {learning_rate: 10}}", "recommender.params.learning_rate: must be <= 0.5"),
    ("recommender: {name: mf, params: {algorithm: bpr, learning_rate: 0.5, regularization: 4}}",
     "bpr needs learning_rate * regularization <= 1"),
    ("recommender: {name: llm_rerank, params: {base: llm_rerank}}",
     "recommender.params.base: llm_rerank cannot re-rank its own candidates"),
    ("llm: {timeout_s: 1.0e+300}", "llm.timeout_s: must be <= 86400"),
    ("catalog: {path: films.csv}", "catalog: path is given but source is 'bundled'"),
    ("output: {run_id: '..'}", "output.run_id: must name a folder, not '.' or '..'"),
]


@pytest.mark.parametrize("text,expected", NON_FINITE_CASES + BOUND_CASES,
                         ids=[c[1][:40] for c in NON_FINITE_CASES + BOUND_CASES])
def test_numbers_are_finite_and_bounded_and_the_field_is_named(tmp_path, text, expected):
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_an_empty_file_is_an_error_not_every_default(tmp_path):
    for text in ("", "\n\n  \n"):
        with pytest.raises(ScenarioError) as info:
            load_scenario(write(tmp_path, text))
        assert info.value.problems == ["the file is empty"]
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, "# just a comment\n"))
    assert info.value.problems == ["the file holds no settings (only comments or null)"]


def test_a_key_given_twice_is_an_error_naming_the_key_and_line(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, "rounds: 2\nseed: 1\nrounds: 3\n"))
    assert info.value.problems == ["line 3, column 1: not valid YAML (duplicate key 'rounds' (first given on line 1))"]
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, "population:\n  size: 3\n  source: synthetic\n  size: 4\n"))
    assert "line 4, column 3" in info.value.problems[0] and "duplicate key 'size'" in info.value.problems[0]


def test_yaml_merge_keys_may_still_be_overridden():
    from simworld.config import read_yaml

    data = read_yaml("a: &base {size: 3, source: synthetic}\nb:\n  <<: *base\n  size: 4\n", "s")
    assert data["b"] == {"size": 4, "source": "synthetic"}


def test_a_huge_name_gets_a_length_limit_in_a_short_message(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, f"name: {'x' * 2_000_000}\noutput: {{run_id: {'y' * 101}}}\n"))
    assert info.value.problems == ["name: must be at most 100 characters, got 2000000",
                                   "output.run_id: must be at most 100 characters, got 101"]


def test_an_unknown_huge_key_is_shown_cut_short(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, f"{'k' * 1000}: 1\n"))  # YAML's longest plain key
    (problem,) = info.value.problems
    assert problem.endswith("unknown field (check the spelling; `simworld schema` lists the fields)")
    assert len(problem) < 200 and "(1000 characters)" in problem


def test_overrides_out_of_range_are_a_scenario_error():
    from simworld.config import parse_scenario

    with pytest.raises(ScenarioError) as info:
        parse_scenario({}).with_overrides(rounds=0)
    assert info.value.problems == ["rounds: must be > 0, got 0"]


def test_recommender_params_are_reported_with_the_other_problems(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, "rounds: 0\nrecommender: {name: popularity, params: {window: 0}}\n"))
    assert info.value.problems == ["rounds: must be > 0, got 0", "recommender.params.window: must be >= 1, got 0"]


def test_the_lowest_pareto_alpha_keeps_a_good_share_of_users_active():
    import numpy as np

    from simworld.activity import ActivityModel
    from simworld.catalog import load_bundled_catalog
    from simworld.config import ActivitySpec
    from simworld.population import synthetic_personas

    personas = synthetic_personas(400, load_bundled_catalog(), np.random.default_rng(0))
    model = ActivityModel(ActivitySpec(model="pareto", pareto_alpha=0.5, probability=0.5), personas)
    rng = np.random.default_rng(1)
    active = [len(model.select(np.zeros(len(personas)), rng)) for _ in range(20)]
    assert min(active) >= 0.15 * len(personas), active  # not a handful of heavy users


# -- the command line: run ids and run folders -----------------------------------------------

def cli(*args: str):
    from typer.testing import CliRunner

    from simworld.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("run_id", ["../x", "..", "a/b", "x" * 101])
def test_a_run_id_that_is_not_one_folder_name_exits_2(tmp_path, run_id):
    path = write(tmp_path, "population: {size: 3}\nrounds: 1\n")
    result = cli("run", str(path), "--out", str(tmp_path / "runs"), "--run-id", run_id)
    assert result.exit_code == 2 and result.stderr.startswith("error: --run-id "), result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("text", ["catalog: {source: movielens, path: no-movielens-here}\n",
                                  "population: {source: movielens}\n"])
def test_a_missing_movielens_folder_exits_2_and_leaves_no_run_folder(tmp_path, text):
    path = write(tmp_path, text)
    result = cli("run", str(path), "--out", str(tmp_path / "runs"))
    assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
    assert list((tmp_path / "runs").glob("*")) == []


def test_a_huge_name_exits_2_without_an_os_error(tmp_path):
    path = write(tmp_path, f"name: {'n' * 2_000_000}\n")
    result = cli("run", str(path), "--out", str(tmp_path / "runs"))
    assert result.exit_code == 2 and "name: must be at most 100 characters" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_extreme_choice_model_constants_run(tmp_path):
    text = ("population: {size: 10}\nrounds: 2\nactivity: {model: constant, probability: 1}\n"
            "policy: {kind: rule, rule: {repeat_penalty: 1000, page_fatigue: 1000, continue_bias: -1000}}\n")
    result = cli("run", str(write(tmp_path, text)), "--out", str(tmp_path / "runs"), "--run-id", "extreme")
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "runs" / "extreme" / "summary.json").read_text())["rounds_done"] == 2


# -- where trust ends (issue 10, section 7) ----------------------------------------------------

PROBE = """
import pathlib
pathlib.Path(__file__).with_suffix(".imported").write_text("ran")


class Rec:
    def fit(self, interactions): ...
    def update(self, new): ...
    def recommend(self, user_ids, k, exclude_seen=True): ...


def make(**params): ...
"""


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A plug-in module that leaves a file behind when it is imported (so: when its code runs)."""
    name = f"probe_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, tmp_path / f"{name}.imported"
    sys.modules.pop(name, None)


@pytest.mark.parametrize("section", ["recommender: {{name: '{m}:Rec'}}",
                                     "recommender: {{name: llm_rerank, params: {{base: '{m}:Rec'}}}}",
                                     "stages: [{{path: '{m}:make'}}]"])
def test_validation_does_not_import_a_dotted_path_when_told_not_to(tmp_path, probe, section):
    from simworld.config import parse_scenario, read_yaml

    module, marker = probe
    data = read_yaml(section.format(m=module), "s")
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "uploaded", allow_plugins=False)
    assert "is a dotted path to code" in info.value.problems[0] and "plug-ins are turned off" in info.value.problems[0]
    assert not marker.exists() and module not in sys.modules
    if section.startswith("recommender: {{name: '"):
        assert parse_scenario(data, "trusted").recommender.name == f"{module}:Rec"
        assert marker.exists()  # allowed (the default), the module is imported: code you trust


def test_the_viewer_refuses_plugins_in_uploaded_or_edited_scenarios_unless_enabled(tmp_path, probe, monkeypatch):
    from simworld.viewer import scenarios
    from simworld.viewer.scenarios import ALLOW_PLUGINS_ENV

    module, marker = probe
    text = f"population: {{size: 3}}\nrecommender: {{name: '{module}:Rec'}}\n"
    monkeypatch.delenv(ALLOW_PLUGINS_ENV, raising=False)
    with pytest.raises(ScenarioError) as info:
        scenarios.resolve_choice(None, None, ("upload.yaml", text.encode()))
    assert ALLOW_PLUGINS_ENV in info.value.problems[0]
    with pytest.raises(ScenarioError):
        scenarios.scenario_from_text(text, source="edited", base_dir=tmp_path)
    assert not marker.exists() and module not in sys.modules
    monkeypatch.setenv(ALLOW_PLUGINS_ENV, "1")
    assert scenarios.resolve_choice(None, None, ("upload.yaml", text.encode())).recommender.name == f"{module}:Rec"
    assert marker.exists()


def test_the_viewer_says_an_empty_upload_is_empty(tmp_path):
    from simworld.viewer import scenarios

    with pytest.raises(ScenarioError) as info:
        scenarios.resolve_choice(None, None, ("empty.yaml", b""))
    assert info.value.problems == ["the scenario is empty"]
