"""Which agents go together: shards of at most `shard_size` agents, and shards onto workers.

With a social graph, shards follow its communities (Louvain, seeded), so that friends who
chat mostly share a shard; without one, agents go by id. A shard only groups agents: how
they decide does not depend on it, so the event log is the same whatever the grouping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import networkx as nx

if TYPE_CHECKING:
    from simworld.world import SimWorld


def plan_shards(agent_ids: list[int], shard_size: int, graph: nx.Graph | None = None,
                seed: int = 0) -> list[list[int]]:
    """Shards of at most `shard_size` agents each, every agent in exactly one, ids sorted."""
    ids = sorted(agent_ids)
    if graph is None or graph.number_of_nodes() == 0:
        return [ids[i:i + shard_size] for i in range(0, len(ids), shard_size)]
    known = set(ids)
    undirected = nx.Graph(graph.subgraph(known))  # communities of who follows whom, either way
    groups = [sorted(c) for c in nx.community.louvain_communities(undirected, seed=seed)]
    placed = {a for g in groups for a in g}
    groups += [[a] for a in ids if a not in placed]
    pieces = []  # communities larger than a shard are cut, by id
    for group in groups:
        pieces += [group[i:i + shard_size] for i in range(0, len(group), shard_size)]
    # first fit, largest first: small communities share a shard instead of each taking one
    pieces.sort(key=lambda p: (-len(p), p[0]))
    shards: list[list[int]] = []
    for piece in pieces:
        for shard in shards:
            if len(shard) + len(piece) <= shard_size:
                shard += piece
                break
        else:
            shards.append(list(piece))
    return sorted((sorted(s) for s in shards), key=lambda s: s[0])


def assign_shards(shards: list[list[int]], workers: int) -> list[list[int]]:
    """Shard indices per worker, balancing agents (largest shard to the least loaded worker)."""
    n = max(1, min(workers, len(shards)))
    load, owned = [0] * n, [[] for _ in range(n)]
    for index in sorted(range(len(shards)), key=lambda i: (-len(shards[i]), i)):
        w = min(range(n), key=lambda k: (load[k], k))
        owned[w].append(index)
        load[w] += len(shards[index])
    return [sorted(o) for o in owned]


def social_graph(world: "SimWorld") -> nx.Graph | None:
    """The world's social graph (a networkx graph), when its schedule has the social layer."""
    from simworld.social.graph import SocialGraph

    for stage in world.schedule:
        layer: Any = getattr(stage, "layer", None)
        graph = getattr(getattr(layer, "state", None), "graph", None)
        if isinstance(graph, SocialGraph):
            return graph.g
    return None
