"""MovieLens-grounded populations with a held-out part, and `simworld eval fidelity` (issue 13)."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from simworld.build import build_parts
from simworld.config import load_scenario
from simworld.fidelity import metrics as fm
from simworld.grounding import load_grounding
from simworld.world import SimWorld
from tests.helpers import write_scenario
from tests.openai_server import openai_server  # noqa: F401  (fixture)
from tests.test_cli import cli

MOVIES = """movieId,title,genres
1,Alpha (1990),Action
2,Beta (1991),Comedy
3,Gamma (1992),Drama
4,Delta (1993),Action|Comedy
5,Epsilon (1994),Drama|Romance
6,Zeta (1995),Horror
7,Eta (1996),Action
8,Theta (1997),Comedy
"""


def tiny_movielens(folder):
    """Five users rate films 1-7 in a random order, then film 8 last: film 8 is only ever held out."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.csv").write_text(MOVIES)
    rng = np.random.default_rng(0)
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, 6):
        films = [int(f) + 1 for f in rng.permutation(7)] + [8]
        for k, film in enumerate(films):
            lines.append(f"{user},{film},{float(rng.integers(1, 6))},{1000 * user + k}")
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    return folder


GROUNDED = """
name: grounded
seed: 1
rounds: 2
population: {{size: 5, source: movielens, holdout: {holdout}}}
catalog: {{source: movielens, path: {path}, min_ratings: {min_ratings}}}
activity: {{model: constant, probability: 1.0}}
recommender: {{name: popularity, page_size: 4, max_pages: 1}}
policy: rule
"""


def test_the_split_never_leaks_held_out_ratings(tmp_path):
    data = tiny_movielens(tmp_path / "ml")
    path = write_scenario(tmp_path, GROUNDED.format(holdout=0.25, path=data, min_ratings=0))
    scenario = load_scenario(path)
    ground = load_grounding(str(data.resolve()), 0.25)
    held = set(ground.test.select("user_id", "item_id").rows())
    assert held and not held & set(ground.train.select("user_id", "item_id").rows())
    parts = build_parts(scenario)
    by_agent = {p.agent_id: int(p.source.split(":")[1]) for p in parts.personas}
    # warm-start history: training part only
    for agent, item in parts.history.select("user_id", "item_id").rows():
        assert (by_agent[agent], item) not in held
    # persona texts name no held-out film
    for persona in parts.personas:
        user = by_agent[persona.agent_id]
        for (u, item) in held:
            if u == user:
                assert ground.catalog.get(item).title not in persona.describe()
    # the crowd's ratings are the training part's, film by film
    crowd = dict(zip(parts.crowd["item_id"], parts.crowd["n"]))
    train_counts = dict(ground.train.group_by("item_id").len().rows())
    assert crowd == train_counts
    world = SimWorld(scenario, parts=parts)
    for agent in world.agents:
        assert not {(by_agent[agent.agent_id], i) for i in agent.state.watched} & held
    row = world.catalog.row(8)
    assert world.rating_count[row] == train_counts.get(8, 0)


def test_min_ratings_counts_training_ratings_only(tmp_path):
    data = tiny_movielens(tmp_path / "ml")
    ratings = pl.read_csv(data / "ratings.csv")
    everything = load_grounding(str(data.resolve()), 0.0, min_ratings=3)
    held_out = load_grounding(str(data.resolve()), 0.25, min_ratings=3)
    train_counts = dict(held_out.train.group_by("item_id").len().rows())
    assert 8 in everything.catalog and ratings.filter(pl.col("movieId") == 8).height >= 3
    assert all(train_counts.get(i, 0) >= 3 for i in held_out.catalog.ids.tolist())
    assert 8 not in held_out.catalog  # all its ratings are late: held out, so they cannot keep it


def test_alignment_and_error_metrics_match_hand_computed_values():
    # trial 1: picks the liked film only; trial 2: picks a wrong one; trial 3: picks both
    trials = [((True, False), (True, False)), ((True, False), (False, True)), ((False, True), (True, True))]
    scores = fm.alignment(trials)
    # tp=2, fp=2, fn=1, tn=1
    assert scores["accuracy"] == pytest.approx(3 / 6)
    assert scores["precision"] == pytest.approx(2 / 4) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    rmse, mae = fm.rmse_mae([3.0, 4.0, 5.0], [4.0, 4.0, 3.0])
    assert rmse == pytest.approx(math.sqrt(5 / 3)) and mae == pytest.approx(1.0)
    assert fm.gini([1, 1, 1, 1]) == pytest.approx(0.0) and fm.gini([0, 0, 0, 4]) == pytest.approx(0.75)
    assert fm.ks_distance([1, 2, 3], [1, 2, 3]) == 0.0 and fm.ks_distance([1, 2], [3, 4]) == 1.0
    assert fm.total_variation({"a": 0.5, "b": 0.5}, {"a": 1.0}) == pytest.approx(0.5)
    assert fm.top_share([10, 0, 0, 0, 0]) == 1.0 and fm.top_share([1] * 10, 0.2) == pytest.approx(0.2)
    assert fm.histogram([4.0, 4.0, 3.5, 1.0])["4"] == 0.5


@pytest.mark.slow
def test_eval_fidelity_on_movielens_small(movielens_small, tmp_path, repo_root):
    out = tmp_path / "fid"
    result = cli("eval", "fidelity", str(repo_root / "scenarios" / "movielens.yaml"), "--users", "150",
                 "--rounds", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "popularity" in result.stdout and "user mean" in result.stdout
    report = json.loads((out / "fidelity.json").read_text())
    acc = {(r["policy"], r["m"]): r for r in report["alignment"]}
    assert {m for _, m in acc} == {1, 3, 9}
    assert acc[("rule", 1)]["accuracy"] > acc[("popularity", 1)]["accuracy"] > acc[("random", 1)]["accuracy"]
    assert acc[("rule", 1)]["trials"] == acc[("popularity", 1)]["trials"] > 100
    rmse = {r["predictor"]: r["rmse"] for r in report["ratings"]}
    assert rmse["rule"] < rmse["user mean"] and rmse["rule"] < rmse["item mean"] < rmse["global mean"] + 0.1
    realism = report["realism"]
    assert 0 <= realism["ratings"]["tvd"] <= 1 and realism["watches"] > 0
    html = (out / "report.html").read_text()
    assert "Plotly.newPlot" in html and "Preference alignment" in html


def test_eval_fidelity_refuses_a_synthetic_population(tmp_path):
    path = write_scenario(tmp_path, "name: s\npopulation: {size: 5}\n")
    result = cli("eval", "fidelity", str(path), "--rounds", "0")
    assert result.returncode == 2 and "movielens" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def judged_movielens(folder):
    """Six users rate 12 of 30 films; their last three (rated 5) are held out at holdout 0.25,
    which leaves every user 18 never-rated films for the 1:9 trials."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    genres = ("Action", "Comedy", "Drama", "Horror", "Romance")
    (folder / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f"{i},Film {i} ({1980 + i}),{genres[i % 5]}\n" for i in range(1, 31)))
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, 7):
        films = (rng.permutation(30)[:12] + 1).tolist()
        for k, film in enumerate(films):
            rating = 5.0 if k >= 9 else float(rng.integers(1, 6))
            lines.append(f"{user},{film},{rating},{1000 * user + k}")
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    return folder


def _page_ids(schema) -> list[int]:
    """The film ids a page-decision schema allows (the enum of its watches' item_id)."""
    if isinstance(schema, dict):
        if "item_id" in schema.get("properties", {}):
            prop = schema["properties"]["item_id"]
            return list(prop.get("enum") or [prop["const"]])
        return [i for value in schema.values() for i in _page_ids(value)]
    if isinstance(schema, list):
        return [i for value in schema for i in _page_ids(value)]
    return []


def smallest_id_answer(body) -> str:
    """A model that watches the film with the smallest id on every page and rates it 4."""
    from tests.openai_server import requested_schema

    ids = _page_ids(requested_schema(body))
    return json.dumps({"watches": [{"item_id": min(ids), "rating": 4.0, "feeling": "Quite good, I enjoyed it.",
                                    "importance": 5}], "then": "leave"})


def test_eval_fidelity_drives_the_llm_policy_through_a_server(openai_server, tmp_path):  # noqa: F811
    from simworld.fidelity import run_fidelity
    from simworld.fidelity.evaluate import Trials

    server = openai_server(answer=smallest_id_answer)
    data = judged_movielens(tmp_path / "ml")
    text = GROUNDED.format(holdout=0.25, path=data, min_ratings=0).replace("size: 5", "size: 6").replace(
        "policy: rule", f"policy: llm\nllm: {{model: openai/test-model, api_base: {server.url}, retry_base_s: 0.01}}")
    scenario = load_scenario(write_scenario(tmp_path, text))
    result = run_fidelity(scenario, ["llm"], rounds=0, out_dir=tmp_path / "fid")
    trials = Trials(scenario)
    assert len(trials.trials) == 18 and len(trials.rated) == 18
    # every trial page went to the model (3 page sizes), then every held-out film alone, nothing else
    assert server.count == 3 * 18 + 18
    rows = {(r["policy"], r["m"]): r for r in result.alignment}
    for m in (1, 3, 9):
        expected = []
        for no, trial in enumerate(trials.trials):
            page, truth, _ = trials.page(no, trial, m)
            smallest = min(item.item_id for item in page)
            expected.append((truth, tuple(item.item_id == smallest for item in page)))
        llm = rows[("llm", m)]
        assert llm["fallback"] == 0 and llm["trials"] == 18
        assert llm["accuracy"] == pytest.approx(fm.alignment(expected)["accuracy"])
        assert llm["f1"] == pytest.approx(fm.alignment(expected)["f1"])
    # the model's own rating (4) of each held-out film shown alone, against the real ratings (all 5)
    rating = next(r for r in result.ratings if r["predictor"] == "llm")
    assert rating["n"] == 18 and rating["rmse"] == pytest.approx(1.0) and rating["mae"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "fid" / "fidelity.json").read_text())["alignment"]
