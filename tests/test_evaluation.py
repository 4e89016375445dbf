"""Offline evaluation: the split and the metrics by hand; MF and item-kNN beat popularity on MovieLens."""

from __future__ import annotations

import math

import polars as pl
import pytest

from simworld.evaluation import evaluate_offline, ranking_scores, split_ratings


def test_ranking_scores_by_hand():
    recall, ndcg = ranking_scores([[1, 2, 3], [4, 5, 6]], [{2, 9}, {7}], k=3)
    # user 1: one hit of two at rank 2 -> recall 1/2, ndcg (1/log2 3) / (1 + 1/log2 3); user 2: 0
    assert recall == pytest.approx(0.25)
    assert ndcg == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)) / 2)
    assert all(math.isnan(x) for x in ranking_scores([[1]], [set()], k=1))


def test_temporal_split_takes_each_users_last_ratings():
    ratings = pl.DataFrame({
        "user_id": [1] * 10 + [2] * 3,
        "item_id": list(range(10)) + [0, 1, 2],
        "rating": [4.0] * 13,
        "timestamp": [9, 8, 7, 6, 5, 4, 3, 2, 1, 0] + [1, 2, 3],
    })
    train, test = split_ratings(ratings, test_fraction=0.2)
    assert sorted(test["item_id"].to_list()) == [0, 1]  # user 1's two latest; user 2 too few
    assert train.height == 11 and set(train.filter(pl.col("user_id") == 2)["item_id"]) == {0, 1, 2}
    r_train, r_test = split_ratings(ratings, test_fraction=0.2, split="random", seed=3)
    assert r_test.height == 2 and r_train.height == 11
    assert split_ratings(ratings, 0.2, "random", seed=3)[1].equals(r_test)


@pytest.mark.slow
def test_mf_and_itemknn_beat_popularity_on_movielens(movielens_small):
    from simworld.movielens import load_movielens_catalog, load_movielens_ratings
    from simworld.recommenders.baselines import PopularityRecommender
    from simworld.recommenders.knn import ItemKNNRecommender
    from simworld.recommenders.mf import MFRecommender

    catalog = load_movielens_catalog(movielens_small, min_ratings=20)
    ratings = load_movielens_ratings(movielens_small)
    algorithms = {"popularity": (PopularityRecommender, None), "itemknn": (ItemKNNRecommender, None),
                  "mf": (MFRecommender, None)}
    table = evaluate_offline(ratings, catalog, algorithms, k=10, seed=0, max_users=300)
    scores = {row["algorithm"]: row for row in table.iter_rows(named=True)}
    assert scores["popularity"]["users"] == 300
    for name in ("itemknn", "mf"):
        for metric in ("recall@10", "ndcg@10"):
            assert scores[name][metric] > scores["popularity"][metric], (name, metric, table)
    assert scores["itemknn"]["coverage@10"] > scores["popularity"]["coverage@10"]
