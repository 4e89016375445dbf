"""RecBole atomic files and Parquet export: the exact bytes on a small log."""

from __future__ import annotations

import polars as pl
import pytest

from simworld.catalog import Catalog, Item
from simworld.events import EVENT_SCHEMA
from simworld.export import export_recbole


def _events() -> pl.DataFrame:
    rows = [
        # run_id, round, agent_id, seq, action, item_id, rating, text, items
        ("r", 1, 7, 0, "page", None, None, "page 1", [1, 2, 3]),
        ("r", 1, 7, 1, "watch", 2, 4.5, "loved it", None),
        ("r", 1, 8, 2, "page", None, None, "page 1", [1, 3]),
        ("r", 1, 8, 3, "watch", 3, None, None, None),
        ("r", 1, 8, 4, "leave", None, None, None, None),
        ("r", 2, 7, 0, "search", None, None, "space", [1]),
        ("r", 2, 7, 1, "watch", 1, 2.0, "meh", None),
    ]
    cols = ["run_id", "round", "agent_id", "seq", "action", "item_id", "rating", "text", "items"]
    frame = pl.DataFrame([dict(zip(cols, r)) for r in rows], schema={c: EVENT_SCHEMA[c] for c in cols})
    return frame.with_columns(pl.lit("rule").alias("policy"), pl.lit(0.0).alias("latency_ms"),
                              pl.lit(0).alias("prompt_tokens"), pl.lit(0).alias("completion_tokens"))


@pytest.fixture()
def catalog() -> Catalog:
    return Catalog((
        Item(1, "2001: A Space Odyssey", 1968, ("Adventure", "Sci-Fi")),
        Item(2, "Amélie", 2001, ("Comedy", "Romance"), "A shy\twaitress"),
        Item(3, "Untitled", None, ()),
    ))


def test_recbole_files_exact(tmp_path, catalog):
    users = pl.DataFrame({"agent_id": [7, 8], "age": [34, 61], "occupation": ["film critic", "nurse"],
                          "likes": [["Sci-Fi", "Drama"], []], "openness": [0.25, None]})
    paths = export_recbole(_events(), catalog, users, tmp_path / "ds", "simrun")
    assert [p.name for p in paths] == ["simrun.inter", "simrun.item", "simrun.user", "simrun.parquet"]
    assert paths[0].read_text(encoding="utf-8") == (
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "7\t2\t4.5\t1.000001\n"
        "8\t3\t\t1.000003\n"
        "7\t1\t2.0\t2.000001\n"
    )
    assert paths[1].read_text(encoding="utf-8") == (
        "item_id:token\ttitle:token_seq\tyear:token\tgenre:token_seq\n"
        "1\t2001: A Space Odyssey\t1968\tAdventure Sci-Fi\n"
        "2\tAmélie\t2001\tComedy Romance\n"
        "3\tUntitled\t\t\n"
    )
    assert paths[2].read_text(encoding="utf-8") == (
        "user_id:token\tage:float\toccupation:token_seq\tlikes:token_seq\topenness:float\n"
        "7\t34.0\tfilm critic\tSci-Fi Drama\t0.25\n"
        "8\t61.0\tnurse\t\t\n"
    )
    parquet = pl.read_parquet(paths[3])
    assert parquet.columns == ["user_id", "item_id", "rating", "round", "seq", "timestamp"]
    assert parquet["user_id"].to_list() == [7, 8, 7]
    assert parquet["rating"].to_list() == [4.5, None, 2.0]
    assert parquet["timestamp"].to_list() == pytest.approx([1.000001, 1.000003, 2.000001])


def test_without_users_and_empty_log(tmp_path, catalog):
    empty = _events().clear()
    paths = export_recbole(empty, catalog, None, tmp_path, "empty")
    assert [p.name for p in paths] == ["empty.inter", "empty.item", "empty.parquet"]
    assert paths[0].read_text() == "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    assert pl.read_parquet(paths[2]).height == 0


def test_bad_name(tmp_path, catalog):
    with pytest.raises(ValueError):
        export_recbole(_events(), catalog, None, tmp_path, "a/b")
