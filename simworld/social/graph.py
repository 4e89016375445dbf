"""The social graph: who follows whom, with tie strengths and relationship labels.

A directed graph: an edge a -> b means a follows b (a sees b's posts). Friends are mutual
follows; chats happen between friends. The graph starts from a generator (networkx, seeded
from the run's "social_graph" stream) or an edge-list file, and changes as agents follow
and unfollow. Taste communities (spherical k-means of the agents' genre tastes) are the
blocks of the taste SBM, the colours of the viewer's network and the groups homophily is
measured over.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import polars as pl

from simworld.errors import DataError
from simworld.social.config import GraphConfig
from simworld.streams import Streams

FOLLOW_TIE = 0.2  # tie strength of a one-way follow (a friend's is drawn in 0.3..1)
EDGE_SCHEMA = {"source": pl.Int64, "target": pl.Int64, "tie": pl.Float64, "relation": pl.String}


class SocialGraph:
    """Follows between agents (ints). Every list it returns is sorted, so draws over it are
    the same whatever order edges were added in (and after a checkpoint is reloaded)."""

    def __init__(self, agent_ids: list[int]):
        self.g = nx.DiGraph()
        self.g.add_nodes_from(sorted(int(a) for a in agent_ids))

    # -- reading
    def follows(self, a: int, b: int) -> bool:
        return self.g.has_edge(a, b)

    def following(self, a: int) -> list[int]:
        return sorted(self.g.successors(a)) if a in self.g else []

    def followers(self, a: int) -> list[int]:
        return sorted(self.g.predecessors(a)) if a in self.g else []

    def friends(self, a: int) -> list[int]:
        if a not in self.g:
            return []
        return sorted(b for b in self.g.successors(a) if self.g.has_edge(b, a))

    def tie(self, a: int, b: int) -> float:
        data = self.g.get_edge_data(a, b)
        return float(data["tie"]) if data else 0.0

    def relation(self, a: int, b: int) -> str | None:
        data = self.g.get_edge_data(a, b)
        return data["relation"] if data else None

    def edge_count(self) -> int:
        return self.g.number_of_edges()

    def friend_pairs(self) -> list[tuple[int, int]]:
        return sorted((a, b) for a, b in self.g.edges if a < b and self.g.has_edge(b, a))

    def edges_frame(self) -> pl.DataFrame:
        rows = sorted((a, b, float(d["tie"]), d["relation"]) for a, b, d in self.g.edges(data=True))
        return pl.DataFrame(rows, schema=EDGE_SCHEMA, orient="row")

    # -- changing
    def follow(self, a: int, b: int, tie: float = FOLLOW_TIE, relation: str = "follow") -> bool:
        """a starts following b; False if a already does (or a == b)."""
        if a == b or self.g.has_edge(a, b):
            return False
        self.g.add_edge(a, b, tie=float(tie), relation=relation)
        return True

    def befriend(self, a: int, b: int, tie: float, relation: str = "friend") -> None:
        self.g.add_edge(a, b, tie=float(tie), relation=relation)
        self.g.add_edge(b, a, tie=float(tie), relation=relation)

    def unfollow(self, a: int, b: int) -> bool:
        if not self.g.has_edge(a, b):
            return False
        self.g.remove_edge(a, b)
        return True

    def strengthen(self, a: int, b: int, by: float) -> None:
        """A chat between a and b brings them closer (both directions, capped at 1)."""
        for u, v in ((a, b), (b, a)):
            if self.g.has_edge(u, v):
                self.g[u][v]["tie"] = min(1.0, float(self.g[u][v]["tie"]) + by)


# -- taste communities ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Communities:
    """Spherical k-means of the starting tastes: labels 0..k-1, largest community first."""

    centroids: np.ndarray  # (k, genres), unit rows

    def assign(self, tastes: np.ndarray) -> np.ndarray:
        """Each taste's nearest centroid (cosine); tastes drift, so labels change over a run."""
        return np.argmax(_unit(tastes) @ self.centroids.T, axis=1).astype(np.int64)


def taste_communities(tastes: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 30) -> Communities:
    x = _unit(np.asarray(tastes, dtype=np.float64))
    n = len(x)
    k = max(1, min(k, n))
    centroids = [x[int(rng.integers(n))]]
    for _ in range(1, k):  # k-means++: far points are likelier seeds
        d = 1.0 - np.max(x @ np.array(centroids).T, axis=1)
        d = np.clip(d, 0.0, None)
        p = d / d.sum() if d.sum() > 0 else np.full(n, 1.0 / n)
        centroids.append(x[int(rng.choice(n, p=p))])
    c = np.array(centroids)
    for _ in range(iterations):
        labels = np.argmax(x @ c.T, axis=1)
        new = np.array([x[labels == j].sum(axis=0) if (labels == j).any() else c[j] for j in range(k)])
        new = _unit(new)
        if np.allclose(new, c):
            break
        c = new
    labels = np.argmax(x @ c.T, axis=1)
    sizes = np.bincount(labels, minlength=k)
    order = sorted(range(k), key=lambda j: (-sizes[j], j))
    return Communities(c[order])


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        n = np.linalg.norm(x)
        return x / n if n > 0 else x
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


# -- sources -------------------------------------------------------------------------------------

def build_graph(spec: GraphConfig, agent_ids: list[int], tastes: np.ndarray, communities: Communities,
                streams: Streams, base_dir: Path | None = None) -> SocialGraph:
    """The starting graph of a run. Same seed, same agents, same graph."""
    ids = sorted(int(a) for a in agent_ids)
    graph = SocialGraph(ids)
    if spec.source == "edge_list":
        path = Path(spec.path or "")
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        for a, b, relation, weight in read_edge_list(path, set(ids)):
            tie = weight if weight is not None else 0.6
            if spec.directed:
                graph.follow(a, b, tie=tie, relation=relation or "follow")
            else:
                graph.befriend(a, b, tie=tie, relation=relation or "friend")
        return graph
    rng = streams.generator("social_graph", 1)
    seed = streams.int_seed("social_graph")
    undirected = _generate(spec, ids, tastes, communities, seed)
    for u, v in sorted((min(u, v), max(u, v)) for u, v in undirected.edges if u != v):
        graph.befriend(ids[u], ids[v], tie=float(rng.uniform(0.3, 1.0)))
    _extra_follows(graph, ids, spec.follows, rng)
    return graph


def _generate(spec: GraphConfig, ids: list[int], tastes: np.ndarray, communities: Communities, seed: int) -> nx.Graph:
    """An undirected graph on nodes 0..n-1 (positions in `ids`)."""
    n = len(ids)
    if n < 2:
        return nx.empty_graph(n)
    degree = min(spec.degree, n - 1)
    if spec.source == "watts_strogatz":
        return nx.watts_strogatz_graph(n, max(2, degree), spec.rewire, seed=seed)
    if spec.source == "barabasi_albert":
        return nx.barabasi_albert_graph(n, max(1, min(degree // 2 or 1, n - 1)), seed=seed)
    # taste_sbm: blocks are the taste communities; p_in and p_out give each agent `degree`
    # friends on average, `within_share` of them in its own community
    labels = communities.assign(tastes)
    k = len(communities.centroids)
    blocks = [[i for i in range(n) if labels[i] == j] for j in range(k)]
    blocks = [b for b in blocks if b]
    sizes = [len(b) for b in blocks]
    mean_in = sum(s * (s - 1) for s in sizes) / n  # mean size of one's own block, less oneself
    mean_out = n - 1 - mean_in
    p_in = min(1.0, spec.within_share * degree / mean_in) if mean_in > 0 else 0.0
    p_out = min(1.0, (1 - spec.within_share) * degree / mean_out) if mean_out > 0 else 0.0
    if mean_in <= 0:
        p_out = min(1.0, degree / max(mean_out, 1))
    if mean_out <= 0:
        p_in = min(1.0, degree / max(mean_in, 1))
    probs = [[p_in if i == j else p_out for j in range(len(sizes))] for i in range(len(sizes))]
    nodelist = [i for b in blocks for i in b]
    return nx.stochastic_block_model(sizes, probs, nodelist=nodelist, seed=seed)


def _extra_follows(graph: SocialGraph, ids: list[int], mean: float, rng: np.random.Generator) -> None:
    """One-way follows, preferring accounts with many followers already (influencers)."""
    if mean <= 0 or len(ids) < 2:
        return
    index = {a: i for i, a in enumerate(ids)}
    followers = np.array([len(graph.followers(a)) for a in ids], dtype=np.float64)
    for a in ids:
        for _ in range(int(rng.poisson(mean))):
            weights = followers + 1.0
            weights[index[a]] = 0.0
            for b in graph.following(a):
                weights[index[b]] = 0.0
            if weights.sum() <= 0:
                break
            b = ids[int(rng.choice(len(ids), p=weights / weights.sum()))]
            graph.follow(a, b)
            followers[index[b]] += 1


def read_edge_list(path: Path, known: set[int]) -> list[tuple[int, int, str | None, float | None]]:
    """`source target [relation] [weight]` per line (comma, tab or spaces; # comments; an
    optional header). Ids must be agents of the run."""
    if not path.is_file():
        raise DataError(f"edge list not found: {path}")
    text = path.read_text(encoding="utf-8")
    dialect = "," if "," in text.split("\n", 1)[0] else ("\t" if "\t" in text else None)
    edges = []
    lines = text.splitlines()
    rows = csv.reader(lines, delimiter=dialect) if dialect else (line.split() for line in lines)
    for number, fields in enumerate(rows, start=1):
        fields = [f.strip() for f in fields if f.strip()]
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 2:
            raise DataError(f"{path}, line {number}: needs a source and a target, got {' '.join(fields)!r}")
        try:
            a, b = int(fields[0]), int(fields[1])
        except ValueError:
            if number == 1:
                continue  # a header
            raise DataError(f"{path}, line {number}: agent ids must be integers, "
                            f"got {fields[0]!r} {fields[1]!r}") from None
        for agent in (a, b):
            if agent not in known:
                raise DataError(f"{path}, line {number}: agent {agent} is not in the population "
                                f"(ids {min(known)}..{max(known)})")
        relation, weight = None, None
        for extra in fields[2:4]:
            try:
                weight = float(extra)
                if not 0.0 <= weight <= 1.0:
                    raise DataError(f"{path}, line {number}: a tie weight must lie in [0, 1], got {extra}")
            except ValueError:
                relation = extra
        if a != b:
            edges.append((a, b, relation, weight))
    return edges
