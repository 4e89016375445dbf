"""The social layer's files in the run folder, beside metrics.parquet:

    social.parquet       per round: talkers, posters, chats, messages, posts, reposts, likes,
                         follows, unfollows, mentions, follow edges, friendships, posts in feeds,
                         homophily (community assortativity of friendships), taste similarity
                         of friends and of everyone
    cascades.parquet     per round and item touched that round (cumulative figures): cascades
                         (original posts), posts (with reposts), reposts, likes, and the
                         largest cascade's size, depth, max
                         breadth and structural virality; watches after a chat / a post
    graph.parquet        the graph at the start: source follows target, tie strength, relation
    communities.parquet  per round (0 = the start) and agent: its taste community

They are written at the end of every round from the social state, which travels with the
checkpoint: a resumed run rewrites them as they were at its last committed round.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

ROUNDS = "social.parquet"
CASCADES = "cascades.parquet"
GRAPH = "graph.parquet"
COMMUNITIES = "communities.parquet"
NAMES = (ROUNDS, CASCADES, GRAPH, COMMUNITIES)


def write(run_dir: Path, figures: dict[str, pl.DataFrame], graph_too: bool = True) -> None:
    from simworld.recorder import atomic_write_parquet

    for name, frame in figures.items():
        if name != GRAPH or graph_too:
            atomic_write_parquet(frame, Path(run_dir) / name)


def read(run_dir: Path, name: str) -> pl.DataFrame:
    """One of the social files, or an empty frame when the run has no social side."""
    from simworld.recorder import read_parquet

    path = Path(run_dir) / name
    return read_parquet(path) if path.exists() else pl.DataFrame()
