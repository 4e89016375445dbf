"""What the social page shows, derived from a run folder's frames (no Streamlit here): the
graph at a round, a stable layout for it, each agent's activity, the cascades of the top
items and chat transcripts. A notebook reading the same files gets the same pictures."""

from __future__ import annotations

import networkx as nx
import numpy as np
import polars as pl

from simworld.events import SOCIAL_ACTIONS


def edges_at(start: pl.DataFrame, events: pl.DataFrame, round_no: int) -> set[tuple[int, int]]:
    """The follow edges (source follows target) at the end of `round_no`: the starting graph
    plus the follow and unfollow events up to that round, in log order."""
    edges = {(int(a), int(b)) for a, b in start.select("source", "target").iter_rows()} if start.height else set()
    changes = events.filter(pl.col("action").is_in(["follow", "unfollow"]) & (pl.col("round") <= round_no))
    for action, a, b in changes.sort("round", "seq").select("action", "agent_id", "target_id").iter_rows():
        if action == "follow":
            edges.add((a, b))
        else:
            edges.discard((a, b))
    return edges


def friendships(edges: set[tuple[int, int]]) -> list[tuple[int, int]]:
    return sorted((a, b) for a, b in edges if a < b and (b, a) in edges)


def layout(agent_ids: list[int], edges: set[tuple[int, int]], seed: int = 0) -> dict[int, tuple[float, float]]:
    """Positions for the network picture: a seeded spring layout of the friendships (one-way
    follows pull less), so the picture is the same on every refresh."""
    g = nx.Graph()
    g.add_nodes_from(sorted(agent_ids))
    for a, b in sorted(edges):
        weight = 1.0 if (b, a) in edges else 0.3
        if g.has_edge(a, b):
            g[a][b]["weight"] = max(g[a][b]["weight"], weight)
        else:
            g.add_edge(a, b, weight=weight)
    if g.number_of_nodes() == 0:
        return {}
    k = 1.5 / np.sqrt(max(g.number_of_nodes(), 1))
    pos = nx.spring_layout(g, k=k, iterations=60 if g.number_of_nodes() <= 500 else 30, seed=seed, weight="weight")
    return {int(n): (float(x), float(y)) for n, (x, y) in pos.items()}


def activity(events: pl.DataFrame, round_no: int) -> dict[int, int]:
    """Per agent, what it did up to `round_no`: watches and social actions (messages, posts,
    reposts, likes, feed visits, follows)."""
    done = events.filter(pl.col("action").is_in(["watch", *SOCIAL_ACTIONS]) & (pl.col("round") <= round_no))
    return dict(done.group_by("agent_id").len().iter_rows())


def communities_at(communities: pl.DataFrame, round_no: int) -> dict[int, int]:
    if communities.is_empty():
        return {}
    rounds = communities["round"].unique().sort().to_list()
    at = max((r for r in rounds if r <= round_no), default=rounds[0])
    part = communities.filter(pl.col("round") == at)
    return dict(part.select("agent_id", "community").iter_rows())


def top_cascades(cascades: pl.DataFrame, n: int = 5) -> pl.DataFrame:
    """The latest figures of the `n` items with the largest cascades (then most reposts)."""
    if cascades.is_empty():
        return cascades
    latest = cascades.sort("round").group_by("item_id").last()
    return latest.sort(["size", "reposts", "likes", "item_id"], descending=[True, True, True, False]).head(n)


def cascade_tree(events: pl.DataFrame, item_id: int) -> pl.DataFrame:
    """The posts of the item's largest cascade with their depth and x/y positions for a tree
    picture (depth across, leaves down): post_id, parent_id, agent_id, round, text, depth, x, y."""
    posts = events.filter(pl.col("action").is_in(["post", "repost"]) & (pl.col("item_id") == item_id))
    if posts.is_empty():
        return posts
    parent = dict(posts.select("post_id", "parent_id").iter_rows())
    root_of = {}
    for post in parent:
        top = post
        while parent.get(top) is not None and parent[top] in parent:
            top = parent[top]
        root_of[post] = top
    sizes: dict[int, int] = {}
    for root in root_of.values():
        sizes[root] = sizes.get(root, 0) + 1
    root = min(sizes, key=lambda r: (-sizes[r], r))
    tree = posts.filter(pl.col("post_id").is_in([p for p, r in root_of.items() if r == root])).sort("post_id")
    children: dict[int | None, list[int]] = {}
    for post, par in tree.select("post_id", "parent_id").iter_rows():
        children.setdefault(par if post != root else None, []).append(post)
    depth, ys, order = {root: 0}, {}, []

    def walk(node: int) -> None:  # leaves get consecutive rows; a parent sits at its children's middle
        kids = children.get(node, [])
        for kid in kids:
            depth[kid] = depth[node] + 1
            walk(kid)
        ys[node] = float(np.mean([ys[k] for k in kids])) if kids else float(len(order))
        if not kids:
            order.append(node)

    walk(root)
    return tree.with_columns(
        pl.col("post_id").replace_strict(depth, return_dtype=pl.Int64).alias("depth"),
        pl.col("post_id").replace_strict(ys, return_dtype=pl.Float64).alias("y"),
    ).with_columns(pl.col("depth").cast(pl.Float64).alias("x"))


def chat_threads(events: pl.DataFrame, agent_id: int | None = None, limit: int = 20) -> list[pl.DataFrame]:
    """The newest chats (each one frame of messages in order), optionally those of one agent."""
    chats = events.filter(pl.col("action") == "chat")
    if agent_id is not None:
        chats = chats.filter((pl.col("agent_id") == agent_id) | (pl.col("target_id") == agent_id))
    if chats.is_empty():
        return []
    threads = chats.group_by("thread_id").agg(pl.col("round").first()).sort(["round", "thread_id"], descending=True)
    ids = threads["thread_id"].head(limit).to_list()
    every = events.filter((pl.col("action") == "chat") & pl.col("thread_id").is_in(ids)).sort("round", "seq")
    by_thread = {t[0]: part for t, part in every.group_by("thread_id", maintain_order=True)}
    return [by_thread[t] for t in ids if t in by_thread]
