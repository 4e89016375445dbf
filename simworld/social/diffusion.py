"""Diffusion metrics: cascades of posts and reposts, and homophily of the graph.

A cascade is the tree of one original post and its reposts (a repost's parent is the post it
reposted, itself perhaps a repost). Per cascade:

- size: posts in the tree (the original included);
- depth: the longest chain of reposts from the original (a lone post: 0);
- max breadth: the most posts at one depth;
- structural virality (Goel et al. 2016): the mean distance between all pairs of posts in
  the tree, computed from subtree sizes as W / (n(n-1)/2), where the Wiener index
  W = sum over edges of s(n - s) and s is the size of the subtree below the edge (a lone
  post: 0; a chain of 4: 10/6; a star of 4: 9/6).

Per item, `item_cascades` reports its number of cascades (original posts), all its posts
(originals and reposts), its reposts, and the size, depth, breadth and virality of its
largest cascade (ties: the earlier one).

Homophily: the attribute assortativity of taste communities over friendships (Newman's r:
1 = friends always share a community, 0 = no more than chance), and the mean taste cosine of
friends against that of all pairs of agents.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import networkx as nx
import numpy as np
import polars as pl

CASCADE_SCHEMA = {
    "round": pl.Int64, "item_id": pl.Int64, "cascades": pl.Int64, "posts": pl.Int64, "reposts": pl.Int64,
    "likes": pl.Int64, "size": pl.Int64, "depth": pl.Int64, "max_breadth": pl.Int64,
    "structural_virality": pl.Float64, "adoptions_friend": pl.Int64, "adoptions_feed": pl.Int64,
}


def tree_stats(parents: Mapping[int, int | None]) -> dict[str, float]:
    """Size, depth, max breadth and structural virality of one tree given as node -> parent
    (the root's parent is None; every other parent is in the tree)."""
    children: dict[int, list[int]] = {n: [] for n in parents}
    roots = []
    for node, parent in parents.items():
        if parent is None:
            roots.append(node)
        else:
            children[parent].append(node)
    if len(roots) != 1:
        raise ValueError(f"a cascade has exactly one original post, got {len(roots)}")
    n = len(parents)
    depth_of = {roots[0]: 0}
    order = [roots[0]]
    for node in order:  # breadth first: parents before children
        for child in sorted(children[node]):
            depth_of[child] = depth_of[node] + 1
            order.append(child)
    below = {node: 1 for node in order}
    for node in reversed(order):
        parent = parents[node]
        if parent is not None:
            below[parent] += below[node]
    wiener = sum(below[node] * (n - below[node]) for node in order if parents[node] is not None)
    levels = np.bincount(list(depth_of.values()))
    return {"size": n, "depth": int(max(depth_of.values())), "max_breadth": int(levels.max()),
            "structural_virality": wiener / (n * (n - 1) / 2) if n > 1 else 0.0}


def cascades(posts: Iterable[tuple[int, int, int | None]]) -> dict[int, dict[int, int | None]]:
    """Group posts (post id, item id, parent post id) into trees: root post id -> {post: parent}."""
    parent_of: dict[int, int | None] = {}
    for post_id, _item, parent in posts:
        parent_of[post_id] = parent
    root_of: dict[int, int] = {}

    def root(post_id: int) -> int:
        chain = []
        while post_id not in root_of and parent_of.get(post_id) is not None:
            chain.append(post_id)
            post_id = parent_of[post_id]
        top = root_of.get(post_id, post_id)
        for p in chain:
            root_of[p] = top
        root_of[post_id] = top
        return top

    trees: dict[int, dict[int, int | None]] = {}
    for post_id in sorted(parent_of):
        trees.setdefault(root(post_id), {})[post_id] = parent_of[post_id]
    return trees


def item_cascades(posts: pl.DataFrame) -> dict[int, dict[str, float]]:
    """Per item: cascades, posts, reposts and the largest cascade's size, depth, breadth and
    structural virality. `posts`: post_id, item_id, parent_id (null for an original)."""
    rows = list(posts.select("post_id", "item_id", "parent_id").iter_rows())
    item_of = {post_id: item for post_id, item, _ in rows}
    out: dict[int, dict[str, float]] = {}
    for root_id, tree in sorted(cascades(rows).items()):
        item = item_of[root_id]
        stats = tree_stats(tree)
        entry = out.setdefault(item, {"cascades": 0, "posts": 0, "reposts": 0, "size": 0, "depth": 0,
                                      "max_breadth": 0, "structural_virality": 0.0})
        entry["cascades"] += 1
        entry["posts"] += stats["size"]
        entry["reposts"] += stats["size"] - 1
        if stats["size"] > entry["size"]:
            entry.update({k: stats[k] for k in ("size", "depth", "max_breadth", "structural_virality")})
    return out


def homophily(graph: nx.DiGraph, labels: Mapping[int, int], tastes: Mapping[int, np.ndarray]) -> dict[str, float]:
    """Community assortativity over friendships and taste similarity of friends vs everyone."""
    friends = nx.Graph()
    friends.add_nodes_from(graph.nodes)
    friends.add_edges_from((a, b) for a, b in graph.edges if a < b and graph.has_edge(b, a))
    nx.set_node_attributes(friends, {a: int(labels[a]) for a in friends.nodes}, "community")
    r = math.nan
    if friends.number_of_edges() and len(set(labels.values())) > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = float(nx.attribute_assortativity_coefficient(friends, "community"))
    ids = sorted(tastes)
    x = np.array([tastes[a] for a in ids], dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms == 0, 1.0, norms)
    pos = {a: i for i, a in enumerate(ids)}
    edges = list(friends.edges)
    edge_sim = float(np.mean([x[pos[a]] @ x[pos[b]] for a, b in edges])) if edges else math.nan
    n = len(ids)
    total = x.sum(axis=0)
    all_sim = float((total @ total - (x * x).sum()) / (n * (n - 1))) if n > 1 else math.nan
    return {"homophily": r, "friend_taste_similarity": edge_sim, "all_taste_similarity": all_sim}
