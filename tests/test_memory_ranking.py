"""Retrieval ranking: recency, importance and relevance each change the order as expected."""

from __future__ import annotations

import numpy as np
import pytest

from simworld.embedding import HashingEmbedder
from simworld.memory import InProcessMemory, MemoryRecord, RetrievalConfig

E = HashingEmbedder(dim=64)


def unit(*weights: float) -> np.ndarray:
    vec = np.zeros(64, dtype=np.float32)
    vec[: len(weights)] = weights
    return vec / np.linalg.norm(vec)


def store_with(cfg: RetrievalConfig, records: list[MemoryRecord]) -> InProcessMemory:
    store = InProcessMemory(E, cfg)
    store.add_many(records)
    return store


def order(store, query, now=10, k=10):
    return [s.memory_id for s in store.retrieve(1, query, k=k, now=now)]


def test_recency_orders_when_only_recency_counts():
    recs = [MemoryRecord(agent_id=1, text=f"m{i}", created_round=r, embedding=unit(1, 0))
            for i, r in enumerate([3, 9, 1])]
    store = store_with(RetrievalConfig(w_recency=1, w_importance=0, w_relevance=0, touch_on_retrieve=False), recs)
    assert order(store, unit(1, 0)) == ["1-1", "1-0", "1-2"]


def test_recency_uses_last_access_and_retrieval_refreshes_it():
    recs = [MemoryRecord(agent_id=1, text="old", created_round=0, embedding=unit(1, 0)),
            MemoryRecord(agent_id=1, text="new", created_round=5, embedding=unit(0, 1))]
    store = store_with(RetrievalConfig(w_recency=1, w_importance=0, w_relevance=0), recs)
    assert order(store, unit(1, 0), now=6) == ["1-1", "1-0"]
    # retrieving only the old one (k=1 by relevance) refreshes it
    relevance = RetrievalConfig(w_recency=0, w_importance=0, w_relevance=1)
    store.retrieval = relevance
    assert order(store, unit(1, 0), now=8, k=1) == ["1-0"]
    store.retrieval = RetrievalConfig(w_recency=1, w_importance=0, w_relevance=0)
    assert order(store, unit(1, 0), now=9) == ["1-0", "1-1"]


def test_importance_changes_the_order():
    # same relevance and recency; importance decides
    recs = [MemoryRecord(agent_id=1, text=f"m{i}", importance=imp, embedding=unit(1, 0))
            for i, imp in enumerate([0.2, 0.9, 0.5])]
    store = store_with(RetrievalConfig(touch_on_retrieve=False), recs)
    assert order(store, unit(1, 0)) == ["1-1", "1-2", "1-0"]


def test_relevance_changes_the_order():
    recs = [MemoryRecord(agent_id=1, text=f"m{i}", embedding=v)
            for i, v in enumerate([unit(0, 1), unit(1, 0), unit(1, 1)])]
    store = store_with(RetrievalConfig(touch_on_retrieve=False), recs)
    assert order(store, unit(1, 0)) == ["1-1", "1-2", "1-0"]
    assert order(store, unit(0, 1)) == ["1-0", "1-2", "1-1"]


def test_weights_trade_off_components():
    # m0: very relevant, unimportant, old; m1: irrelevant, important, recent
    recs = [MemoryRecord(agent_id=1, text="m0", importance=0.1, created_round=0, embedding=unit(1, 0)),
            MemoryRecord(agent_id=1, text="m1", importance=0.9, created_round=9, embedding=unit(0, 1))]
    relevant = store_with(RetrievalConfig(w_relevance=3, touch_on_retrieve=False), recs)
    assert order(relevant, unit(1, 0)) == ["1-0", "1-1"]
    balanced = store_with(RetrievalConfig(touch_on_retrieve=False), recs)
    assert order(balanced, unit(1, 0)) == ["1-1", "1-0"]


def test_scores_are_the_weighted_normalised_sum():
    recs = [MemoryRecord(agent_id=1, text=f"m{i}", importance=imp, created_round=c, embedding=v)
            for i, (imp, c, v) in enumerate([(0.1, 0, unit(1, 0)), (0.5, 4, unit(1, 1)), (0.9, 8, unit(0, 1))])]
    cfg = RetrievalConfig(w_recency=0.5, w_importance=2.0, w_relevance=1.5, decay=0.9, touch_on_retrieve=False)
    got = {s.memory_id: s for s in store_with(cfg, recs).retrieve(1, unit(1, 0), k=3, now=10)}
    rec = 0.9 ** np.array([10, 6, 2.0])
    rec = (rec - rec.min()) / (rec.max() - rec.min())
    imp = np.array([0.0, 0.5, 1.0])
    rel = np.array([1.0, np.sqrt(0.5), 0.0])
    rel = (rel - rel.min()) / (rel.max() - rel.min())
    for i in range(3):
        s = got[f"1-{i}"]
        assert s.recency == pytest.approx(rec[i]) and s.importance == pytest.approx(imp[i])
        assert s.relevance == pytest.approx(rel[i], abs=1e-6)
        assert s.score == pytest.approx(0.5 * rec[i] + 2.0 * imp[i] + 1.5 * rel[i], abs=1e-6)


def test_constant_component_normalises_to_zero():
    recs = [MemoryRecord(agent_id=1, text=f"m{i}", embedding=unit(1, i)) for i in range(3)]
    got = store_with(RetrievalConfig(touch_on_retrieve=False), recs).retrieve(1, unit(1, 0), k=3)
    assert all(s.recency == 0.0 and s.importance == 0.0 for s in got)


def test_large_agent_topk_matches_full_sort():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(500, 64)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    recs = [MemoryRecord(agent_id=1, text=str(i), importance=float(rng.integers(0, 3)) / 2,
                         created_round=int(rng.integers(0, 5)), embedding=vecs[i]) for i in range(500)]
    store = store_with(RetrievalConfig(touch_on_retrieve=False), recs)
    q = vecs[7]
    full = order(store, q, k=500)
    assert order(store, q, k=10) == full[:10]


def test_config_is_validated():
    with pytest.raises(ValueError):
        RetrievalConfig(w_recency=0, w_importance=0, w_relevance=0)
    with pytest.raises(ValueError):
        RetrievalConfig(decay=1.5)
    with pytest.raises(ValueError):
        RetrievalConfig(unknown=1)
    with pytest.raises(Exception):
        RetrievalConfig().k = 3  # frozen
