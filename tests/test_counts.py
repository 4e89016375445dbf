"""Counts that are right: decisions per policy, popularity windows in rounds, no repeats between
retrains, ads within max_pages."""

from __future__ import annotations

import polars as pl

from simworld import runner
from simworld.catalog import load_bundled_catalog
from simworld.events import EVENT_SCHEMA
from simworld.recorder import decisions_by_policy, read_events, read_summary
from simworld.recommenders.base import RecommenderContext
from simworld.recommenders.baselines import PopularityConfig, PopularityRecommender
from tests.helpers import write_scenario


def _rows(*rows: tuple) -> pl.DataFrame:
    cols = {name: [] for name in EVENT_SCHEMA}
    for seq, (rnd, agent, action, policy) in enumerate(rows):
        for name, value in zip(("run_id", "round", "agent_id", "seq", "action", "policy"),
                               ("r", rnd, agent, seq, action, policy)):
            cols[name].append(value)
        for name in EVENT_SCHEMA:
            if name not in ("run_id", "round", "agent_id", "seq", "action", "policy"):
                cols[name].append(None)
    return pl.DataFrame(cols, schema=EVENT_SCHEMA)


def test_decisions_by_policy_counts_decisions_not_rows():
    events = _rows(
        (1, 1, "page", "rule"), (1, 1, "watch", "rule"), (1, 1, "next_page", "rule"), (1, 1, "page", "rule"),
        (1, 1, "page", "rule"),  # one browse of three pages: one decision
        (1, 2, "fallback", "fallback"), (1, 2, "page", "fallback"),  # a fallback: one decision
        (1, 3, "search", "llm"), (1, 3, "reflect", "llm"),
        (2, 1, "idle", "rule"),
    )
    assert decisions_by_policy(events) == {"fallback": 1, "llm": 1, "rule": 2}


def _frame(rows):
    return pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64,
                                      "round": pl.Int64}, orient="row")


def test_popularity_window_counts_rounds_not_updates():
    catalog = load_bundled_catalog()
    a, b, c = catalog.ids[:3].tolist()
    rec = PopularityRecommender(PopularityConfig(window=2), RecommenderContext(catalog=catalog, seed=1))
    rec.fit(_frame([]))
    # one update carrying three rounds (retrain_every 3): only rounds 2 and 3 are in the window
    rec.update(_frame([(1, a, 4.0, 1), (2, a, 4.0, 1), (3, a, 4.0, 1), (1, b, 4.0, 2), (1, c, 4.0, 3),
                       (2, c, 4.0, 3)]))
    assert rec.recommend([99], 2)[0] == [c, b]  # round 1's three watches of `a` are outside the window
    # the next update (round 4) slides the window past round 2
    rec.update(_frame([(5, a, 4.0, 4)]))
    assert rec.recommend([99], 2)[0] == [c, a]


SCENARIO = """
name: counts
seed: 5
rounds: 6
population: {{size: 25}}
activity: {{model: constant, probability: 1.0}}
recommender: {{name: popularity, page_size: 4, max_pages: 2, retrain_every: {retrain}}}
policy: rule
"""


def test_no_film_is_recommended_again_between_retrains(tmp_path):
    run_dir = runner.run_scenario(write_scenario(tmp_path, SCENARIO.format(retrain=3)), out_dir=tmp_path, run_id="r")
    events = read_events(run_dir)
    watched: dict[int, set[int]] = {}
    for rnd in range(1, 7):
        this = events.filter(pl.col("round") == rnd)
        for row in this.filter(pl.col("action") == "page").iter_rows(named=True):
            assert not set(row["items"]) & watched.get(row["agent_id"], set()), (rnd, row["agent_id"])
        for row in this.filter(pl.col("action") == "watch").iter_rows(named=True):
            watched.setdefault(row["agent_id"], set()).add(row["item_id"])
    assert sum(len(v) for v in watched.values()) > 20


def test_an_ad_stays_within_max_pages(tmp_path):
    sim = runner.start(write_scenario(tmp_path, SCENARIO.format(retrain=1)), out_dir=tmp_path, run_id="ad")
    try:
        ad = int(sim.world.catalog.ids[-1])
        sim.inject(list(sim.world.users), "new release", item_id=int(ad))
        pages = sim.world.recommend(list(sim.world.users))
        for agent_pages in pages.values():
            assert len(agent_pages) <= 2 and all(len(p) <= 4 for p in agent_pages)
            assert agent_pages[0][0].item_id == int(ad)
        sim.run()
    finally:
        sim.close()
    assert read_summary(sim.run_dir)["decisions_by_policy"] == {"rule": int(
        read_events(sim.run_dir).filter(pl.col("action").is_in(["page", "search", "idle"]))
        .select("round", "agent_id").unique().height)}
