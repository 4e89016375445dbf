"""Property-based fuzzing of scenarios (hypothesis): whatever a scenario file holds, `simworld run`
either runs it or exits 2 with one message per problem naming the field; never a traceback,
never a run folder left behind.

Every section is drawn as a random mixture of valid values (including the extremes of their
ranges) and invalid ones (NaN, infinities, huge numbers, wrong types, unknown keys), written
as YAML text that may also repeat a key or be empty. Values that are certainly invalid are
"planted": the error output must name their field.
"""

from __future__ import annotations

import math
import random
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from simworld.config import parse_scenario
from simworld.errors import ScenarioError

NAN, INF = math.nan, math.inf
NON_FINITE = [NAN, INF, -INF]
HUGE = [1e308, -1e308, 10**30, -(10**30)]
NOT_A_NUMBER = ["abc", [1, 2], {"a": 1}]
NOT_A_STRING = [[1, 2], {"a": 1}]


@dataclass
class Plan:
    """A generated scenario, and the fields given values that can never validate."""

    data: dict[str, Any] = field(default_factory=dict)
    planted: list[str] = field(default_factory=list)
    rnd: random.Random = field(default_factory=random.Random)


# One field in BAD_ODDS gets a value that cannot validate, and as many a huge one; with about
# 35 fields drawn, about 60% of the scenarios validate and run.
BAD_ODDS = 80


def rarely(plan: Plan) -> bool:
    # From the plan's seeded Random: hypothesis favours the ends of ranges and repeats values,
    # which would make a rare branch drawn from it common.
    return plan.rnd.random() < 1 / BAD_ODDS


def number(draw, plan: Plan, path: str, valid: st.SearchStrategy) -> Any:
    """A value for a numeric field: mostly valid, else non-finite, huge or of the wrong type."""
    if rarely(plan):
        plan.planted.append(path)
        return draw(st.sampled_from(NON_FINITE + NOT_A_NUMBER))
    if rarely(plan):
        return draw(st.sampled_from(HUGE))  # valid for unbounded fields, refused by bounded ones
    return draw(valid)


def planted(draw, plan: Plan, path: str, invalid: list[Any]) -> Any:
    """One of `invalid`, each of which the field at `path` must refuse."""
    plan.planted.append(path)
    return draw(st.sampled_from(invalid))


def mostly(draw, plan: Plan, valid: list[Any], invalid: list[Any]) -> Any:
    """One of `valid`, or rarely one of `invalid` (values that fail for reasons not planted)."""
    return draw(st.sampled_from(invalid if rarely(plan) else valid))


def choice(draw, plan: Plan, path: str, options: list[Any]) -> Any:
    """A value for a Literal, bool or string field: one of `options`, else a wrong type."""
    if not rarely(plan):
        return draw(st.sampled_from(options))
    plan.planted.append(path)
    return draw(st.sampled_from(NOT_A_STRING + ["no-such-choice"] if isinstance(options[0], str) else NOT_A_NUMBER))


def section(draw, plan: Plan, path: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Some of a section's fields (each drawn by its callable), sometimes with an unknown key."""
    out = {}
    for name, make in fields.items():
        if draw(st.booleans()):
            out[name] = make(f"{path}.{name}" if path else name)
    if rarely(plan):
        out["colour"] = "red"
        plan.planted.append(f"{path}.colour" if path else "colour")
    return out


def floats(lo: float, hi: float) -> st.SearchStrategy:
    """Finite floats in [lo, hi], with both ends (the extremes a model must survive) likely."""
    return st.one_of(st.sampled_from([lo, hi]), st.floats(lo, hi, allow_nan=False, allow_infinity=False))


def recommender_params(draw, plan: Plan, name: str) -> dict[str, Any]:
    p = "recommender.params"
    num = lambda path, valid: number(draw, plan, path, valid)  # noqa: E731
    if name == "popularity":
        return section(draw, plan, p, {"window": lambda q: num(q, st.integers(1, 5)),
                                       "min_rating": lambda q: num(q, floats(0.5, 5))})
    if name == "itemknn":
        return section(draw, plan, p, {"neighbors": lambda q: num(q, st.integers(1, 60)),
                                       "shrinkage": lambda q: num(q, floats(0, 100)),
                                       "min_rating": lambda q: num(q, floats(0.5, 5)),
                                       "block_size": lambda q: num(q, st.integers(1, 2048))})
    if name == "mf":
        return section(draw, plan, p, {"algorithm": lambda q: choice(draw, plan, q, ["als", "bpr"]),
                                       "factors": lambda q: num(q, st.integers(1, 8)),
                                       "iterations": lambda q: num(q, st.integers(1, 3)),
                                       "regularization": lambda q: num(q, floats(0, 10)),
                                       "alpha": lambda q: num(q, floats(0.01, 40)),
                                       "learning_rate": lambda q: num(q, floats(0.001, 0.5))})
    return {}


@st.composite
def scenarios(draw, runnable: bool = True) -> Plan:
    """A scenario; `runnable`: only what runs in a moment (rule policy, no model to load)."""
    plan = Plan(rnd=random.Random(draw(st.integers(0, 2**32 - 1))))
    num = lambda path, valid: number(draw, plan, path, valid)  # noqa: E731
    pick = lambda path, options: choice(draw, plan, path, options)  # noqa: E731
    data = section(draw, plan, "", {
        "name": lambda q: mostly(draw, plan, ["fuzz", "a.b_c-1"], ["a/b", "x" * 300, "", 7]),
        "description": lambda q: draw(st.text(max_size=30)),
        "seed": lambda q: num(q, st.integers(0, 2**70)),
        "rounds": lambda q: num(q, st.integers(1, 5)),
    })
    data["population"] = section(draw, plan, "population", {
        "size": lambda q: draw(st.integers(1, 20)) if not rarely(plan) else planted(
            draw, plan, q, [0, -3, 1_000_001, 10**30, NAN]),
        "source": lambda q: mostly(draw, plan, ["synthetic"], ["movielens"]),  # movielens: no folder
        "seed_history": lambda q: pick(q, [True, False]),
    })
    data["catalog"] = mostly(draw, plan, [{}, {"source": "bundled"}, {"min_ratings": 3, "max_items": 10**30}], [
        {"source": "bundled", "path": "films.csv"}, {"source": "csv"}, {"source": "csv", "path": "missing.csv"},
        {"source": "movielens", "path": "no-movielens-here"}, {"source": "bundled", "min_ratings": -1},
        {"max_items": 0}])
    data["activity"] = section(draw, plan, "activity", {
        "model": lambda q: pick(q, ["constant", "pareto", "marginal"]),
        "probability": lambda q: num(q, floats(0.01, 1)),
        "pareto_alpha": lambda q: draw(floats(0.5, 50)) if not rarely(plan) else planted(
            draw, plan, q, [0.01, 1e-300, 0.0, NAN]),
        "growth": lambda q: num(q, floats(0, 1e6)),
        "max_active": lambda q: num(q, st.integers(1, 20)),
    })
    names = ["random", "popularity", "itemknn", "mf"] + ([] if runnable else ["content", "llm_rerank"])
    name = mostly(draw, plan, names, ["nosuch", "os.path:join", 3])
    recommender = section(draw, plan, "recommender", {
        "page_size": lambda q: num(q, st.integers(1, 100)),
        "max_pages": lambda q: num(q, st.integers(1, 20)),
        "retrain_every": lambda q: num(q, st.integers(1, 3)),
    })
    recommender["name"] = name
    if isinstance(name, str):
        recommender["params"] = recommender_params(draw, plan, name)
    data["recommender"] = recommender
    rule = section(draw, plan, "policy.rule", {
        "watch_threshold": lambda q: num(q, floats(-100, 100)),
        "watch_slope": lambda q: num(q, floats(0.01, 1e6)),
        "max_watches_per_page": lambda q: num(q, st.integers(1, 10)),
        "page_fatigue": lambda q: num(q, st.sampled_from([0.0, 1000.0, 1e6])),
        "repeat_penalty": lambda q: num(q, st.sampled_from([0.0, 4.0, 1000.0, 1e6])),
        "continue_bias": lambda q: num(q, st.sampled_from([-1e6, -1000.0, 0.0, 1000.0, 1e6])),
        "search_rate": lambda q: num(q, floats(0, 1)),
        "idle_rate": lambda q: num(q, floats(0, 1)),
        "rating_center": lambda q: num(q, floats(-100, 100)),
        "rating_slope": lambda q: num(q, floats(0.01, 1e6)),
        "taste_drift": lambda q: num(q, floats(0, 1)),
    })
    kinds = ["rule"] if runnable else ["rule", "llm", "hybrid"]
    data["policy"] = {"kind": mostly(draw, plan, kinds, ["magic"]), "rule": rule}
    if data["policy"]["kind"] == "magic":
        plan.planted.append("policy.kind")
    data["llm"] = section(draw, plan, "llm", {  # validated only: the rule policy never calls it
        "temperature": lambda q: num(q, floats(0, 2)),
        "max_tokens": lambda q: num(q, st.integers(1, 4096)),
        "timeout_s": lambda q: num(q, floats(0.1, 600)),
        "budget_usd": lambda q: num(q, floats(0.01, 100)),
        "api_key_env": lambda q: mostly(draw, plan, ["OPENAI_API_KEY"], ["sk-not-a-name!"]),
    })
    if draw(st.booleans()):
        memory = section(draw, plan, "memory", {
            "reflection_threshold": lambda q: num(q, floats(0.1, 10)),
            "reflection_drift": lambda q: num(q, floats(0, 1)),
            "consolidation_similarity": lambda q: num(q, floats(-1, 1)),
            "forget_after_rounds": lambda q: num(q, st.integers(0, 5)),
            "forget_importance_below": lambda q: num(q, floats(0, 1)),
        })
        memory["retrieval"] = section(draw, plan, "memory.retrieval", {
            "k": lambda q: num(q, st.integers(1, 10)),
            "w_recency": lambda q: num(q, floats(0.1, 10)),
            "decay": lambda q: num(q, floats(0.01, 1)),
        })
        kinds = {"backend": "inprocess", "embedder": "hashing"} if runnable else {
            "backend": draw(st.sampled_from(["chroma", "inprocess"])), "embedder": draw(st.sampled_from(["minilm", "hashing"]))}
        data["memory"] = {**kinds, **memory}
    if rarely(plan):
        data["stages"] = draw(st.sampled_from([[{"path": "no_such_module_here:make"}],
                                               [{"path": "m:f", "before": "learn", "after": "apply"}]]))
    data["output"] = {"run_id": mostly(draw, plan, ["fz", "fz.2"], ["..", "../x", "y" * 101])}
    plan.data = data
    return plan


def to_text(draw, plan: Plan) -> tuple[str, str | None]:
    """The scenario as YAML, sometimes with a key given twice or with nothing at all in it.
    Returns the text and the problem it must then be refused with (if it is not the data's)."""
    text = yaml.safe_dump(plan.data, sort_keys=False, allow_unicode=True)
    twist = plan.rnd.random()
    if twist < 0.05:
        return draw(st.sampled_from(["", "\n", "# only a comment\n"])), "is empty|holds no settings"
    if twist < 0.1:
        return text + "rounds: 2\nrounds: 3\n", "duplicate key 'rounds'"
    if twist < 0.15:
        return text.replace("population:", "population: {size: 3}\npopulation:", 1), "duplicate key 'population'"
    return text, None


# A problem line names its field (`population.size: ...`), or where in the text it is.
PROBLEM_LINE = re.compile(r"^  (line \d+, column \d+: |the file |\(top level\): |[\w.]+(\.\.\. \(\d+ characters\))?: )")


def run_cli(scenario: Path, out: Path):
    from typer.testing import CliRunner

    from simworld.cli import app

    return CliRunner().invoke(app, ["run", str(scenario), "--out", str(out), "--rounds", "1"])


@settings(max_examples=100, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(plan=scenarios(), data=st.data())
def test_any_scenario_runs_one_round_or_exits_2_naming_each_problem(plan, data):
    text, expected = to_text(data.draw, plan)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        out = folder / "runs"
        result = run_cli(path, out)
        stderr = result.stderr
        shown = f"exit {result.exit_code}\n--- scenario\n{text[:3000]}\n--- stderr\n{stderr[-3000:]}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            shown += "\n" + "".join(traceback.format_exception(result.exception))
        assert result.exit_code in (0, 2), shown
        assert "Traceback" not in stderr + result.stdout, shown
        runs = sorted(p.name for p in out.iterdir()) if out.exists() else []
        event(f"exit {result.exit_code}")
        if result.exit_code == 0:
            assert expected is None and not plan.planted, shown
            assert len(runs) == 1 and (out / runs[0] / "summary.json").is_file(), shown
            return
        assert runs == [], f"a run folder was left behind: {runs}\n{shown}"
        assert stderr.startswith("error: "), shown
        if expected is not None:
            assert re.search(expected, stderr), shown
            return
        if "is not a valid scenario:" in stderr:
            problems = stderr.split("is not a valid scenario:\n", 1)[1].splitlines()
            assert problems and all(PROBLEM_LINE.match(p) for p in problems), shown
            assert len(problems) == len(set(problems)), shown  # one message per problem
        for planted in plan.planted:
            assert f"  {planted}:" in stderr, f"{planted} not named\n{shown}"


@settings(max_examples=150, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(plan=scenarios(runnable=False))
def test_validation_raises_only_scenario_errors(plan):
    """Validation alone, many more scenarios: a valid one or a ScenarioError, nothing else."""
    try:
        parse_scenario(plan.data, "fuzz")
    except ScenarioError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        for planted in plan.planted:
            assert any(p.startswith(f"{planted}:") for p in exc.problems), (planted, exc.problems)
    else:
        assert not plan.planted, plan.data


# Fields without an upper bound, at the largest values a YAML file can hold: harmless, or refused.
EXTREMES = {
    "memory": {"memory": {"backend": "inprocess", "embedder": "hashing", "reflection_threshold": 1e308,
                          "retrieval": {"k": 10**30, "w_recency": 1e308, "w_importance": 1e308, "w_relevance": 1e308},
                          "forget_after_rounds": 10**30, "forget_access_below": 10**30, "write_batch_size": 10**30}},
    "memory-tiny": {"memory": {"backend": "inprocess", "embedder": "hashing", "reflection_threshold": 1e-300,
                               "forget_after_rounds": 0, "forget_importance_below": 1}},
    "popularity": {"recommender": {"name": "popularity", "params": {"window": 10**30, "min_rating": 1e308}}},
    "itemknn": {"recommender": {"name": "itemknn", "params": {"neighbors": 10**30, "block_size": 10**30,
                                                              "shrinkage": 1e6, "min_rating": -1e308}}},
    "mf": {"recommender": {"name": "mf", "params": {"alpha": 1e6, "regularization": 1e6, "factors": 1024}}},
    "bpr": {"recommender": {"name": "mf", "params": {"algorithm": "bpr", "learning_rate": 0.5, "regularization": 2}}},
    "activity": {"seed": 10**40, "rounds": 10**30, "recommender": {"retrain_every": 10**30},
                 "activity": {"model": "marginal", "growth": 1e308, "max_active": 10**30, "probability": 1e-300}},
    "choice-model": {"policy": {"kind": "rule", "rule": {
        "watch_slope": 1e6, "watch_threshold": -100, "page_fatigue": 1e6, "repeat_penalty": 1e6,
        "continue_bias": 1e6, "rating_center": 100, "rating_slope": 1e6}}},
    "choice-model-2": {"policy": {"kind": "rule", "rule": {
        "watch_slope": 1e6, "watch_threshold": 100, "continue_bias": -1e6, "rating_center": -100,
        "search_rate": 1, "idle_rate": 0}}},
    "catalog": {"catalog": {"min_ratings": 10**30, "max_items": 10**30}},
}


@pytest.mark.parametrize("case", list(EXTREMES))
def test_extreme_values_of_unbounded_fields_run(tmp_path, case):
    data = {"population": {"size": 12}, "activity": {"model": "constant", "probability": 1}, **EXTREMES[case]}
    path = tmp_path / "extreme.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = run_cli(path, tmp_path / "runs")
    assert result.exit_code == 0, (result.stderr, result.exception)
