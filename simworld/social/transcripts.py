"""Chat transcripts from an event log, one row per message in the order it was said: what
the viewer shows and what an exporter of dialogues (e.g. the CRS data sets) reads."""

from __future__ import annotations

import polars as pl

TRANSCRIPT_SCHEMA = {"thread_id": pl.Int64, "round": pl.Int64, "turn": pl.Int64, "speaker": pl.Int64,
                     "listener": pl.Int64, "text": pl.String, "mentions": pl.List(pl.Int64), "policy": pl.String}


def chat_transcripts(events: pl.DataFrame) -> pl.DataFrame:
    """thread_id, round, turn (0-based), speaker, listener, text, mentions (catalog ids), policy."""
    chats = events.filter((pl.col("action") == "chat") & pl.col("thread_id").is_not_null())
    if chats.is_empty():
        return pl.DataFrame(schema=TRANSCRIPT_SCHEMA)
    return chats.sort("round", "seq").select(
        "thread_id", "round", pl.int_range(pl.len()).over("thread_id").cast(pl.Int64).alias("turn"),
        pl.col("agent_id").alias("speaker"), pl.col("target_id").alias("listener"), "text",
        pl.col("items").alias("mentions"), "policy",
    ).sort("thread_id", "turn")
