"""Recording at constant cost (issue 14): the running aggregates give what a recomputation from
the whole event log gives, per-round part files fold into whole files, and a resumed run picks
the aggregates up exactly. The speed itself is measured by benchmarks/bench_world.py."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from simworld import runner
from simworld.config import parse_scenario
from simworld.metrics import METRIC_KEYS, round_metrics
from simworld.recorder import (
    AGENT_PARTS, decisions_by_policy, dump_state, read_agents, read_checkpoint, read_events, read_metrics,
    read_summary,
)
from tests.helpers import comparable

ROUNDS = 6


def scenario(**extra):
    return parse_scenario({
        "name": "scale", "seed": 11, "rounds": ROUNDS, "population": {"size": 250},
        "activity": {"model": "pareto", "probability": 0.6},
        "recommender": {"name": "popularity", "page_size": 8, "max_pages": 3},
        "policy": {"kind": "rule", "rule": {"search_rate": 0.2}}, **extra,
    })


def interventions(sim: runner.Simulation) -> None:
    """The same researcher moves in every run of a test: a persona edit and an ad at round 2."""
    if sim.rounds_done == 2:
        sim.edit_persona(7, genre_taste={"Horror": 1.0})
        sim.inject([3, 4, 5], "A new horror film", item_id=int(sim.world.catalog.ids[0]))


def run_to_end(sim: runner.Simulation) -> None:
    while not sim.finished:
        interventions(sim)
        sim.step()
    sim.finish()
    sim.close()


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def assert_metrics_equal_recomputation(run_dir, catalog) -> None:
    events = read_events(run_dir)
    metrics = read_metrics(run_dir)
    assert metrics["round"].to_list() == list(range(1, ROUNDS + 1))
    for row in metrics.iter_rows(named=True):
        r = row["round"]
        expected = round_metrics(events.filter(pl.col("round") == r), events.filter(pl.col("round") <= r), catalog)
        drift = {key: (row[key], expected[key]) for key in METRIC_KEYS if not same(row[key], expected[key])}
        assert not drift, f"round {r}: running metrics differ from a recomputation: {drift}"
    summary = read_summary(run_dir)
    watches = events.filter(pl.col("action") == "watch")
    assert summary["events"] == events.height and summary["watches"] == watches.height
    assert summary["decisions_by_policy"] == decisions_by_policy(events)
    assert summary["mean_rating"] == pytest.approx(float(watches["rating"].mean()), rel=1e-12)


def test_running_metrics_equal_a_recomputation_from_the_whole_event_log(tmp_path):
    sim = runner.start(scenario(), out_dir=tmp_path, run_id="whole")
    catalog = sim.world.catalog
    run_to_end(sim)
    events = read_events(sim.run_dir)
    assert events.filter(pl.col("action") == "search").height > 0  # searches are not exposure
    assert_metrics_equal_recomputation(sim.run_dir, catalog)


def test_a_resumed_run_continues_the_running_aggregates_exactly(tmp_path):
    whole = runner.start(scenario(), out_dir=tmp_path / "whole", run_id="r")
    catalog = whole.world.catalog
    run_to_end(whole)
    cut = runner.start(scenario(), out_dir=tmp_path / "cut", run_id="r")
    for _ in range(3):
        interventions(cut)
        cut.step()
    cut.close()  # stopped after round 3 without finishing, as a killed run is
    assert max(p.name for p in (cut.run_dir / AGENT_PARTS).iterdir()) == "round-000003.parquet"
    assert read_agents(cut.run_dir)["round"].unique().sort().to_list() == [0, 1, 2, 3]
    run_to_end(runner.resume(cut.run_dir))
    assert_frame_equal(comparable(read_events(cut.run_dir)), comparable(read_events(whole.run_dir)))
    assert_frame_equal(read_metrics(cut.run_dir).drop("wall_s"), read_metrics(whole.run_dir).drop("wall_s"))
    assert_frame_equal(read_agents(cut.run_dir), read_agents(whole.run_dir))
    keys = ("events", "watches", "mean_rating", "decisions_by_policy", "prompt_tokens", "rounds_done")
    assert {k: read_summary(cut.run_dir)[k] for k in keys} == {k: read_summary(whole.run_dir)[k] for k in keys}
    assert_metrics_equal_recomputation(cut.run_dir, catalog)


def test_agent_snapshots_are_parts_while_live_and_one_file_when_finished(tmp_path):
    sim = runner.start(scenario(rounds=2), out_dir=tmp_path, run_id="parts")
    sim.step()
    parts = sorted(p.name for p in (sim.run_dir / AGENT_PARTS).iterdir())
    assert parts == ["round-000000.parquet", "round-000001.parquet"]
    assert not (sim.run_dir / "agents.parquet").exists()
    live = read_agents(sim.run_dir)
    # each row as the per-agent formula gives it
    genres = sim.world.catalog.genres
    now = live.filter(pl.col("round") == 1).sort("agent_id")
    for row in now.head(20).iter_rows(named=True):
        taste = sim.world.users[row["agent_id"]].state.taste
        assert row["taste"] == taste.astype(np.float32).tolist()
        assert row["dominant_genre"] == (genres[int(np.argmax(taste))] if taste.any() else "none")
        assert row["watched"] == len(sim.world.users[row["agent_id"]].state.watched)
    sim.step()
    sim.finish()
    sim.close()
    assert not (sim.run_dir / AGENT_PARTS).exists()
    folded = read_agents(sim.run_dir)
    assert folded["round"].unique().sort().to_list() == [0, 1, 2] and folded.height == 3 * 250
    assert_frame_equal(folded.filter(pl.col("round") <= 1), live)


def test_the_checkpoint_holds_agents_as_arrays_and_only_edited_personas(tmp_path):
    sim = runner.start(scenario(rounds=3), out_dir=tmp_path, run_id="ckpt")
    try:
        sim.step()
        sim.edit_persona(7, genre_taste={"Horror": 1.0}, curiosity=0.9)
        sim.inject([9], "news for nine")
        sim.step()
        before = {a: sim.world.users[a].state for a in sim.world.users}
        table = sim.world.state_dict()["agents"]
        assert list(table["personas"]) == [7] and table["taste"].shape == (250, len(sim.world.catalog.genres))
        state = read_checkpoint(sim.run_dir, **sim.world.shared_objects())
        assert state is not None and state["round"] == 2
        # a fresh world of the same scenario loads it into equal agent states
        from simworld.world import SimWorld

        fresh = SimWorld(sim.scenario, run_id=sim.run_id)
        fresh.load_state(state)
        for agent_id, old in before.items():
            new = fresh.users[agent_id].state
            assert new.persona == old.persona and np.array_equal(new.taste, old.taste)
            assert new.taste.dtype == old.taste.dtype and new.watched == old.watched
            assert list(new.recent) == list(old.recent) and new.recent.maxlen == old.recent.maxlen
            assert (new.idle_rounds, new.rounds_active) == (old.idle_rounds, old.rounds_active)
        assert fresh.users[7].persona.curiosity == 0.9 and "news: news for nine" in fresh.users[9].state.recent
        fresh.close()
        # the shared objects are references, not copies: a checkpoint stays small
        assert len(dump_state(sim.world.state_dict(), sim.world.shared_objects())) < 5_000_000
    finally:
        sim.close()


@pytest.mark.parametrize("window", [None, 2])
def test_the_batched_top_k_equals_ranking_each_user_alone(window):
    """ScoringRecommender.recommend takes one top-k over all users' scores; it must rank exactly
    as sorting each user's row on its own (`_top_k`), exclusions and short lists included."""
    from simworld.catalog import load_bundled_catalog
    from simworld.recommenders.base import RecommenderContext
    from simworld.recommenders.baselines import PopularityConfig, PopularityRecommender

    def one_by_one(rec, users, k, exclude):
        scores = np.asarray(rec._score(users), dtype=np.float64) + rec._jitter(users)
        for r, user in enumerate(users):
            if exclude and rec.seen(user):
                scores[r, catalog.rows(rec.seen(user))] = -np.inf
        return [rec._top_k(row, k) for row in scores]

    catalog = load_bundled_catalog()
    rng = np.random.default_rng(4)
    rec = PopularityRecommender(PopularityConfig(window=window), RecommenderContext(catalog, seed=2))
    ids = catalog.ids
    for round_no in range(1, 4):
        n = 3000
        rec.update(pl.DataFrame({"user_id": rng.integers(0, 400, n), "item_id": ids[rng.integers(0, 60, n)],
                                 "rating": rng.integers(1, 6, n).astype(float), "round": [round_no] * n}))
    # one user has seen all but five films: fewer than k are left for them
    rec.update(pl.DataFrame({"user_id": [7] * (len(ids) - 5), "item_id": ids[5:], "rating": 3.0, "round": 4}))
    users = [7, *range(0, 400, 3), 10_000]
    for k in (1, 30, len(ids) + 3):
        for exclude in (True, False):
            assert rec.recommend(users, k, exclude) == one_by_one(rec, users, k, exclude)
    assert rec.recommend(users[1:], 30) == one_by_one(rec, users[1:], 30, True)  # the batched path itself
    assert len(rec.recommend([7], 30)[0]) <= 5
