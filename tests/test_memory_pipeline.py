"""The memory pipeline: importance, reflection threshold, consolidation, forgetting."""

from __future__ import annotations

import numpy as np
import pytest

from simworld.embedding import HashingEmbedder
from simworld.memory import (
    InProcessMemory, MemoryConfig, MemoryPipeline, MemoryRecord, consolidate, drift_taste,
    forgettable, heuristic_importance, importance_from_scale, novelty, reflection_records,
    should_reflect, since_last_reflection,
)

E = HashingEmbedder(dim=64)


def rec(text, importance=0.5, kind="observation", created=0, seq=0, access=0, **kw):
    return MemoryRecord(agent_id=1, text=text, importance=importance, kind=kind, created_round=created,
                        access_count=access, seq=seq, memory_id=f"1-{seq}", embedding=E.embed([text])[0], **kw)


# -- importance -------------------------------------------------------------------------

def test_heuristic_importance_grows_with_extremity_and_novelty():
    mid = heuristic_importance(rating=2.75)
    assert mid == pytest.approx(0.2)
    assert heuristic_importance(rating=5.0) == pytest.approx(0.7) == heuristic_importance(rating=0.5)
    assert heuristic_importance(rating=5.0, novelty=1.0) == pytest.approx(1.0)
    assert heuristic_importance(rating=4.0) > heuristic_importance(rating=3.0)
    assert heuristic_importance(novelty=0.5) > heuristic_importance(novelty=0.1)
    assert 0.0 <= heuristic_importance(rating=99, novelty=9, base=0.9) <= 1.0


def test_novelty():
    vecs = E.embed(["space battle", "cooking show"])
    assert novelty(vecs[0], vecs) == pytest.approx(0.0, abs=1e-6)
    assert novelty(vecs[0], np.zeros((0, 64))) == 1.0
    assert 0.0 < novelty(E.embed(["space cooking"])[0], vecs) < 1.0


def test_llm_importance_scale():
    assert importance_from_scale(1) == 0.0 and importance_from_scale(10) == 1.0
    assert importance_from_scale(42) == 1.0
    assert importance_from_scale(7) == pytest.approx(6 / 9)


# -- reflection -------------------------------------------------------------------------

def test_should_reflect_fires_at_the_threshold():
    assert not should_reflect([0.5, 0.4], 1.0)
    assert should_reflect([0.5, 0.5], 1.0)
    assert should_reflect([rec("x", 0.6), rec("y", 0.6, seq=1)], 1.2)
    assert not should_reflect([], 0.1)


def test_since_last_reflection_and_pipeline_trigger():
    store = InProcessMemory(E)
    pipe = MemoryPipeline(store, MemoryConfig(backend="inprocess", reflection_threshold=1.0))
    store.add_many([MemoryRecord(agent_id=1, text=f"obs {i}", importance=0.3) for i in range(3)])
    assert not pipe.should_reflect(1)  # 0.9
    store.add(MemoryRecord(agent_id=1, text="obs 3", importance=0.1))
    assert pipe.should_reflect(1)  # 1.0 reaches the threshold
    store.add_many(reflection_records(1, ["I like space films", " "], now=1))
    assert store.count(1) == 5  # the blank insight was dropped
    assert since_last_reflection(store.all(1)) == []
    assert not pipe.should_reflect(1)
    store.add(MemoryRecord(agent_id=1, text="obs 4", importance=0.9))
    assert [r.text for r in since_last_reflection(store.all(1))] == ["obs 4"]


def test_drift_taste_moves_towards_liked_and_away_from_disliked():
    taste = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    liked = np.array([[0.0, 1.0, 0.0]], dtype=np.float32)
    moved = drift_taste(taste, liked, [1.0], rate=0.5)
    assert np.linalg.norm(moved) == pytest.approx(1.0)
    assert moved[1] > 0 and moved[0] < 1
    away = drift_taste(taste, liked, [-1.0], rate=0.5)
    assert away[1] < 0
    np.testing.assert_array_equal(drift_taste(taste, liked, [0.0], rate=0.5), taste)


# -- consolidation ----------------------------------------------------------------------

def test_consolidate_merges_near_duplicates_into_an_insight():
    records = [rec("watched alien loved it", 0.4, seq=0, created=1, access=1),
               rec("cooking show was dull", 0.3, seq=1),
               rec("watched alien loved it", 0.6, seq=2, created=3, access=2),
               rec("watched alien loved it", 0.5, seq=3, created=4)]
    plan = consolidate(records, threshold=0.95, bonus=0.1)
    assert plan.removed == ["1-0", "1-2", "1-3"]
    (merged,) = plan.merged
    assert merged.kind == "insight"
    assert (merged.memory_id, merged.seq) == ("1-0", 0)  # in the place of the group's first memory
    assert merged.importance == pytest.approx(0.8)
    assert merged.extra["merged_count"] == 3
    assert (merged.created_round, merged.access_count) == (1, 3)
    assert merged.text == "watched alien loved it"
    assert consolidate(records, threshold=0.95) .removed == plan.removed  # deterministic


def test_consolidate_counts_accumulate_and_nothing_below_threshold():
    insight = rec("likes alien", 0.9, kind="insight", seq=0, extra={"merged_count": 4})
    again = rec("likes alien", 0.2, seq=1)
    plan = consolidate([insight, again], threshold=0.9, bonus=0.2)
    assert plan.merged[0].extra["merged_count"] == 5 and plan.merged[0].importance == 1.0
    assert not consolidate([rec("one thing", seq=0), rec("other stuff", seq=1)], threshold=0.9)
    # reflections and interviews are never merged
    assert not consolidate([rec("x y", kind="reflection", seq=0), rec("x y", kind="reflection", seq=1)], 0.9)


# -- forgetting -------------------------------------------------------------------------

def test_forgettable_drops_old_unimportant_unused_but_never_insights():
    records = [rec("old dull", 0.1, created=0, seq=0),
               rec("old important", 0.9, created=0, seq=1),
               rec("old but used", 0.1, created=0, seq=2, access=3),
               rec("recent dull", 0.1, created=9, seq=3),
               rec("old insight", 0.1, kind="insight", created=0, seq=4),
               rec("old reflection", 0.1, kind="reflection", created=0, seq=5)]
    assert forgettable(records, now=10, after_rounds=5, importance_below=0.3, access_below=2) == ["1-0"]
    assert forgettable(records, now=10, after_rounds=0, importance_below=0.3, access_below=2) == ["1-0", "1-3"]


def test_pipeline_maintain_consolidates_and_forgets():
    store = InProcessMemory(E)
    cfg = MemoryConfig(backend="inprocess", consolidation_similarity=0.95, forget_after_rounds=5,
                       forget_importance_below=0.3, forget_access_below=1)
    store.add_many([
        MemoryRecord(agent_id=1, text="loved alien", importance=0.5, created_round=1),
        MemoryRecord(agent_id=1, text="loved alien", importance=0.6, created_round=2),
        MemoryRecord(agent_id=1, text="dull ad", importance=0.1, created_round=0),
        MemoryRecord(agent_id=2, text="dull ad", importance=0.1, created_round=8),
    ])
    report = MemoryPipeline(store, cfg).maintain([1, 2], now=10)
    assert (report.consolidated, report.insights, report.forgotten) == (2, 1, 1)
    (only,) = store.all(1)
    assert only.kind == "insight" and only.memory_id == "1-0" and only.extra["merged_count"] == 2
    assert store.count(2) == 1
    assert store.add(MemoryRecord(agent_id=1, text="next")) == "1-3"  # ids are never reused


def test_a_consolidated_insight_is_no_new_importance():
    """An agent reflects on its memories; consolidating them afterwards must not make it
    reflect again (the insight keeps the place of what it merged, before the reflection)."""
    store = InProcessMemory(E)
    cfg = MemoryConfig(backend="inprocess", reflection_threshold=1.5, consolidation_similarity=0.95)
    pipe = MemoryPipeline(store, cfg)
    store.add_many([MemoryRecord(agent_id=1, text="loved alien", importance=0.8, created_round=1),
                    MemoryRecord(agent_id=1, text="loved alien", importance=0.7, created_round=2)])
    assert pipe.should_reflect(1)
    store.add_many(reflection_records(1, ["I love space horror"], now=2))
    pipe.maintain([1], now=2)
    insight, reflection = store.all(1)
    assert insight.kind == "insight" and insight.importance == pytest.approx(0.9)
    assert since_last_reflection(store.all(1)) == []
    assert not pipe.should_reflect(1)
    # memories written after the reflection and merged among themselves still count, once
    store.add_many([MemoryRecord(agent_id=1, text="hated the ad", importance=0.8, created_round=3),
                    MemoryRecord(agent_id=1, text="hated the ad", importance=0.8, created_round=3)])
    assert pipe.should_reflect(1)  # 1.6
    pipe.maintain([1], now=3)
    assert [(r.kind, r.importance) for r in since_last_reflection(store.all(1))] == [("insight", pytest.approx(0.9))]
    assert not pipe.should_reflect(1)
