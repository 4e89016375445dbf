"""Per-round simulation metrics on small hand-built logs whose values are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from simworld.catalog import Catalog, Item
from simworld.events import EVENT_SCHEMA
from simworld.metrics import METRIC_KEYS, gini, intra_list_diversity, popularity_percentile, round_metrics


@pytest.fixture()
def catalog() -> Catalog:
    return Catalog((
        Item(1, "One", 2000, ("Action",)),
        Item(2, "Two", 2001, ("Action", "Comedy")),
        Item(3, "Three", 2002, ("Drama",)),
        Item(4, "Four", 2003, ("Comedy",)),
    ))


def log(rows: list[dict]) -> pl.DataFrame:
    full = []
    for seq, row in enumerate(rows):
        base = {name: None for name in EVENT_SCHEMA}
        base.update(run_id="r", seq=seq, policy="rule", latency_ms=0.0, prompt_tokens=0, completion_tokens=0)
        base.update(row)
        full.append(base)
    return pl.DataFrame(full, schema=EVENT_SCHEMA)


ROUND_1 = [
    {"round": 1, "agent_id": 1, "action": "page", "items": [1, 2, 3]},
    {"round": 1, "agent_id": 1, "action": "watch", "item_id": 2, "rating": 4.0},
    {"round": 1, "agent_id": 1, "action": "search", "text": "comedy", "items": [4]},
    {"round": 1, "agent_id": 1, "action": "watch", "item_id": 4, "rating": None},
    {"round": 1, "agent_id": 2, "action": "page", "items": [1, 4]},
    {"round": 1, "agent_id": 2, "action": "watch", "item_id": 1, "rating": 2.0},
    {"round": 1, "agent_id": 2, "action": "leave"},
    {"round": 1, "agent_id": 3, "action": "idle"},
]


def test_round_metrics_by_hand(catalog):
    events = log(ROUND_1)
    m = round_metrics(events, events, catalog)
    assert tuple(m) == METRIC_KEYS
    assert m["impressions"] == 5 and m["watches"] == 3
    assert m["ctr"] == pytest.approx(2 / 5)  # the watch of item 4 came from a search
    assert m["mean_rating"] == pytest.approx(3.0)
    # page [1,2,3]: cosines 1/sqrt2, 0, 0 -> 1 - 1/(3 sqrt2); page [1,4]: cosine 0 -> 1
    assert m["intra_list_diversity"] == pytest.approx(1 - 1 / (6 * math.sqrt(2)))
    assert m["coverage"] == 1.0 and m["coverage_round"] == 1.0  # search results are not exposure
    # impressions per item 2,1,1,1 -> sorted 1,1,1,2: (-3 -1 +1 +6) / (4 * 5)
    assert m["exposure_gini"] == pytest.approx(0.15)
    assert m["exposure_gini_cumulative"] == pytest.approx(0.15)
    # watchers per item 1,1,0,1 of 2 agents: p = 2/3, 2/3, 1/3, 2/3; shown 1,2,3,1,4
    assert m["novelty"] == pytest.approx((4 * -math.log2(2 / 3) + -math.log2(1 / 3)) / 5)
    # percentiles: items 1,2,4 -> (1 + 1) / 3, item 3 -> 0
    assert m["popularity_bias"] == pytest.approx((4 * 2 / 3) / 5)
    # agent 1: Action 1, Comedy 2 -> H(1/3, 2/3) / ln 3; agent 2: Action only -> 0
    h = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3)) / math.log(3)
    assert m["genre_entropy"] == pytest.approx(h / 2)


def test_empty_round(catalog):
    history = log(ROUND_1)
    m = round_metrics(log([]), history, catalog)
    assert set(m) == set(METRIC_KEYS)
    assert m["impressions"] == 0 and m["watches"] == 0 and m["coverage_round"] == 0
    for key in ("ctr", "mean_rating", "intra_list_diversity", "exposure_gini", "novelty", "popularity_bias"):
        assert math.isnan(m[key]), key
    assert m["coverage"] == 1.0  # cumulative: from the history
    assert m["exposure_gini_cumulative"] == pytest.approx(0.15)
    assert not math.isnan(m["genre_entropy"])
    nothing = round_metrics(log([]), log([]), catalog)
    assert nothing["coverage"] == 0 and math.isnan(nothing["genre_entropy"])


def test_second_round_is_cumulative_where_documented(catalog):
    round_2 = [{"round": 2, "agent_id": 1, "action": "page", "items": [3, 3]},
               {"round": 2, "agent_id": 1, "action": "watch", "item_id": 3, "rating": 5.0}]
    history = log(ROUND_1 + round_2)
    m = round_metrics(history.filter(pl.col("round") == 2), history, catalog)
    assert m["impressions"] == 2 and m["ctr"] == pytest.approx(1 / 2)
    assert m["coverage_round"] == pytest.approx(1 / 4)
    assert m["exposure_gini"] == pytest.approx(0.75)  # all on one item of four
    # impressions so far 2,1,3,1 -> sorted 1,1,2,3: (-3 -1 +2 +9) / (4 * 7)
    assert m["exposure_gini_cumulative"] == pytest.approx(7 / 28)
    assert m["intra_list_diversity"] == pytest.approx(0.0)  # the same item twice


def test_reference_popularity(catalog):
    events = log(ROUND_1)
    counts = np.array([10.0, 0.0, 5.0, 5.0])
    m = round_metrics(events, events, catalog, item_popularity=counts)
    p = (counts + 1) / (counts.sum() + 4)
    shown = [0, 1, 2, 0, 3]
    assert m["novelty"] == pytest.approx(float(np.mean(-np.log2(p[shown]))))
    pct = {0: 1.0, 1: 0.0, 2: 0.5, 3: 0.5}  # 5, 5 tie in the middle: (1 + 1/2) / 3
    assert m["popularity_bias"] == pytest.approx(np.mean([pct[r] for r in shown]))


def test_pieces():
    assert gini(np.array([1.0, 1.0, 1.0])) == 0.0
    assert gini(np.array([0.0, 0.0, 0.0, 5.0])) == pytest.approx(0.75)
    assert math.isnan(gini(np.zeros(3)))
    assert popularity_percentile(np.array([3.0, 3.0])).tolist() == [0.5, 0.5]
    assert popularity_percentile(np.array([1.0, 2.0, 3.0])).tolist() == [0.0, 0.5, 1.0]


def test_unknown_items_and_short_pages_are_skipped(catalog):
    assert math.isnan(intra_list_diversity([[1], [999, 2]], catalog))
    events = log([{"round": 1, "agent_id": 1, "action": "page", "items": [999, 1]}])
    m = round_metrics(events, events, catalog)
    assert m["impressions"] == 1 and m["coverage_round"] == pytest.approx(0.25)


def test_watch_sources_add_up_with_films_found_outside(tmp_path):
    """Every watch has one source, films found outside the platform included (discovery_rate)."""
    from simworld import runner
    from simworld.recorder import read_metrics

    scenario = {"name": "outside", "seed": 3, "rounds": 3, "population": {"size": 30},
                "policy": {"rule": {"discovery_rate": 1.0, "discovery_films": 4}}}
    from simworld.config import parse_scenario

    run_dir = runner.run_scenario(parse_scenario(scenario), out_dir=tmp_path, run_id="r")
    metrics = read_metrics(run_dir).filter(pl.col("watches") > 0)
    shares = metrics.select("recommended_share", "search_share", "friend_share", "feed_share",
                            "outside_share").fill_nan(0).sum_horizontal()
    assert metrics.height and shares.to_list() == pytest.approx([1.0] * metrics.height)
    assert metrics["outside_share"].max() > 0
