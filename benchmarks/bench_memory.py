"""Memory layer benchmark: a whole round of retrieval, chroma writes, embedding speed.

    python benchmarks/bench_memory.py                      # 1,000 agents x 200 memories
    python benchmarks/bench_memory.py --agents 100 --quick # a small smoke run

Figures (wall-clock, this machine):
  retrieval   one round (every agent asks for top-k) with `retrieve_many`, against a
              brute-force numpy top-k over the same vectors (relevance only, per-agent
              loop and fully vectorised), and against naive chroma use (one filtered
              query per agent on one collection; one query per agent on per-agent
              collections), timed on a sample of agents and extrapolated to all.
  writes      the chroma store's commit of a round (one batched delta write) for new
              memories and for access-statistics updates, against one add() call per
              agent; the round's delta as the checkpoint keeps it (capture, pickled size
              and time); rebuilding the index when a store is reopened.
  embedding   MiniLM sentences/s at batch 64.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from figures import add_json_option, write_figures

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from simworld.embedding import HashingEmbedder
from simworld.memory import InProcessMemory, MemoryRecord, RetrievalConfig


class FixedDim:
    """An embedder stand-in of any dimension (benchmarks pass vectors, never texts)."""

    def __init__(self, dim: int):
        self.dim = dim
        self._hash = HashingEmbedder(dim)

    def embed(self, texts):
        return self._hash.embed(texts)


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def timed(fn, repeat: int = 1):
    """(best seconds, last result) over `repeat` runs."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def records_for(agent: int, vecs: np.ndarray, rng: np.random.Generator, rounds: int) -> list[MemoryRecord]:
    imps = rng.random(len(vecs))
    made = rng.integers(0, rounds, len(vecs))
    return [MemoryRecord(agent_id=agent, text=f"{agent} memory {i}", importance=float(imps[i]),
                         created_round=int(made[i]), embedding=vecs[i], extra={"item_id": i})
            for i in range(len(vecs))]


def line(label: str, value: str) -> None:
    print(f"  {label:<58} {value}")


def bench_retrieval(args, rng, data, queries) -> dict:
    agents, m, k = args.agents, args.memories, args.k
    print(f"\nretrieval: one round, {agents} agents x {m} memories, top-{k}, dim {args.dim}")
    figures = {}
    store = InProcessMemory(FixedDim(args.dim), RetrievalConfig(k=k))
    t_build, _ = timed(lambda: [store.add_many(records_for(a, data[a], rng, args.rounds))
                                 for a in range(agents)])
    line("build in-process index (add_many per agent)", f"{t_build:.2f} s")
    requests = [(a, queries[a], k) for a in range(agents)]
    t_ours, _ = timed(lambda: store.retrieve_many(requests, now=args.rounds, touch=False), repeat=args.repeat)
    figures["ours_s"] = t_ours
    line("InProcessMemory.retrieve_many (recency+importance+relevance)", f"{t_ours * 1000:.1f} ms")
    t_touch, _ = timed(lambda: store.retrieve_many(requests, now=args.rounds, touch=True), repeat=args.repeat)
    figures["ours_touch_s"] = t_touch
    line("  ... with touch_on_retrieve (access statistics updated)", f"{t_touch * 1000:.1f} ms")

    def brute_loop():
        out = []
        for a in range(agents):
            sims = data[a] @ queries[a]
            top = np.argpartition(-sims, k)[:k]
            out.append(top[np.argsort(-sims[top])])
        return out

    t_loop, _ = timed(brute_loop, repeat=args.repeat)
    figures["brute_loop_s"] = t_loop
    line("brute-force numpy top-k, per-agent loop (relevance only)", f"{t_loop * 1000:.1f} ms")

    def brute_vec():
        sims = np.einsum("amd,ad->am", data, queries)
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        vals = np.take_along_axis(sims, top, 1)
        return np.take_along_axis(top, np.argsort(-vals, axis=1), 1)

    t_vec, _ = timed(brute_vec, repeat=args.repeat)
    figures["brute_vec_s"] = t_vec
    line("brute-force numpy top-k, one batched einsum (relevance only)", f"{t_vec * 1000:.1f} ms")
    line("ratio ours / brute-force loop", f"{t_ours / t_loop:.2f}x")
    line("ratio ours / brute-force batched", f"{t_ours / t_vec:.2f}x")
    store.close()
    return figures


def bench_naive_chroma(args, rng, data, queries) -> dict:
    import chromadb
    from chromadb.config import Settings

    figures = {}
    n_coll_agents = min(args.naive_agents, args.agents)
    print(f"\nnaive chroma: one query per agent, timed on {n_coll_agents} agents and extrapolated")
    tmp = Path(tempfile.mkdtemp(prefix="bench-chroma-"))
    try:
        client = chromadb.PersistentClient(path=str(tmp / "naive"), settings=Settings(anonymized_telemetry=False))
        batch = int(client.get_max_batch_size())
        shared = client.create_collection("shared", configuration={"hnsw": {"space": "cosine"}},
                                          embedding_function=None)
        ids, embs, metas = [], [], []
        for a in range(n_coll_agents):
            for i in range(args.memories):
                ids.append(f"{a}-{i}")
                embs.append(data[a, i])
                metas.append({"agent_id": a})
        t0 = time.perf_counter()
        for s in range(0, len(ids), batch):
            shared.add(ids=ids[s:s + batch], embeddings=np.stack(embs[s:s + batch]), metadatas=metas[s:s + batch])
        line(f"load {len(ids)} vectors into one collection", f"{time.perf_counter() - t0:.1f} s")
        sample = list(range(min(args.naive_sample, n_coll_agents)))
        t0 = time.perf_counter()
        for a in sample:
            shared.query(query_embeddings=queries[a][None, :], n_results=args.k, where={"agent_id": a})
        per = (time.perf_counter() - t0) / len(sample)
        figures["naive_filtered_ms"] = per * 1000
        line(f"filtered query (where agent_id) over {len(ids)} vectors", f"{per * 1000:.1f} ms/agent")
        line(f"  -> extrapolated round for {args.agents} agents", f"{per * args.agents:.1f} s")

        per_agent = []
        for a in sample:
            coll = client.create_collection(f"agent-{a}", configuration={"hnsw": {"space": "cosine"}},
                                            embedding_function=None)
            coll.add(ids=[f"{i}" for i in range(args.memories)], embeddings=data[a])
            per_agent.append(coll)
        t0 = time.perf_counter()
        for a, coll in zip(sample, per_agent):
            coll.query(query_embeddings=queries[a][None, :], n_results=args.k)
        per_q = (time.perf_counter() - t0) / len(sample)
        figures["naive_per_agent_collection_ms"] = per_q * 1000
        line("query on a per-agent collection", f"{per_q * 1000:.2f} ms/agent")
        line(f"  -> extrapolated round for {args.agents} agents", f"{per_q * args.agents:.2f} s")
        t0 = time.perf_counter()
        for j, coll in enumerate(per_agent):
            coll.add(ids=[f"new-{j}-{i}" for i in range(args.per_round)],
                     embeddings=unit_rows(rng, args.per_round, args.dim))
        per_add = (time.perf_counter() - t0) / len(per_agent)
        figures["naive_add_call_ms"] = per_add * 1000
        line(f"one add() of {args.per_round} rows per agent collection", f"{per_add * 1000:.1f} ms/agent")
        line(f"  -> extrapolated writes per round for {args.agents} agents", f"{per_add * args.agents:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


def bench_writes(args, rng, data) -> dict:
    from chromadb.api.client import SharedSystemClient

    from simworld.memory.chroma import ChromaMemory

    figures = {}
    rows = args.agents * args.per_round
    print(f"\nchroma commits ({args.per_round} new memories per agent per round = {rows} rows)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    try:
        store = ChromaMemory.persistent(tmp / "memory", FixedDim(args.dim),
                                        retrieval=RetrievalConfig(k=args.k))
        line("write batch size (client max)", str(store.write_batch_size))
        preload_agents = min(args.agents, args.preload_agents)
        recs = [r for a in range(preload_agents)
                for r in records_for(a, data[a, : args.memories], rng, args.rounds)]
        store.add_many(recs)
        t_pre, _ = timed(store.commit)
        figures["preload_rows_per_s"] = len(recs) / t_pre
        line(f"commit of {len(recs)} rows (preload: {preload_agents} agents' full memory)",
             f"{t_pre:.1f} s = {len(recs) / t_pre:.0f} rows/s")
        times, captures, sizes, pickles = [], [], [], []
        for r in range(args.write_rounds):
            vecs = unit_rows(rng, rows, args.dim)
            store.add_many([MemoryRecord(agent_id=i % args.agents, text=f"round {r} memory {i}",
                                         importance=0.5, created_round=args.rounds + r, embedding=vecs[i])
                            for i in range(rows)])
            t_cap, delta = timed(store.pending_changes)
            t_pickle, blob = timed(lambda d=delta: pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL))
            captures.append(t_cap)
            pickles.append(t_pickle)
            sizes.append(len(blob))
            t, _ = timed(store.commit)
            times.append(t)
        t_round = statistics.median(times)
        figures["round_commit_s"] = t_round
        figures["round_commit_rows_per_s"] = rows / t_round
        figures["delta_capture_s"] = statistics.median(captures)
        figures["delta_pickle_s"] = statistics.median(pickles)
        figures["delta_pickle_mb"] = statistics.median(sizes) / 1e6
        line(f"one round's commit ({rows} new rows), median of {len(times)}",
             f"{t_round:.2f} s = {rows / t_round:.0f} rows/s")
        line("  its delta for the checkpoint: capture + pickle",
             f"{figures['delta_capture_s'] * 1000:.0f} ms + {figures['delta_pickle_s'] * 1000:.0f} ms, "
             f"{figures['delta_pickle_mb']:.1f} MB")
        requests = [(a, data[a, 0], args.k) for a in range(args.agents)]
        store.retrieve_many(requests, now=args.rounds + args.write_rounds)
        touched = len(store.pending_changes().touched)
        t_commit, _ = timed(store.commit)
        figures["touch_commit_rows_per_s"] = touched / t_commit if t_commit else 0.0
        line(f"commit of {touched} access-statistics updates (collection.update)",
             f"{t_commit:.2f} s = {touched / t_commit:.0f} rows/s")
        total = store.collection.count()
        store.close()
        SharedSystemClient.clear_system_cache()
        t_open, reopened = timed(lambda: ChromaMemory.persistent(tmp / "memory", FixedDim(args.dim)))
        figures["reopen_s"] = t_open
        line(f"reopen: rebuild the index from {total} rows", f"{t_open:.2f} s")
        assert reopened.count() == total
        reopened.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


def bench_embedding(args) -> dict:
    from simworld.embedding import MiniLMEmbedder

    print(f"\nembedding: MiniLM, {args.sentences} short sentences, batch 64")
    t_load, emb = timed(lambda: MiniLMEmbedder(batch_size=64))
    line("load all-MiniLM-L6-v2 from its package", f"{t_load:.2f} s")
    sents = [f"User {i} watched film {i % 97} and rated it {i % 5 + 1} stars: a {['tense', 'warm', 'slow', 'funny'][i % 4]} story"
             for i in range(args.sentences)]
    emb.embed(sents[:64])  # warm-up
    t, _ = timed(lambda: emb.embed(sents))
    line("sentences/s", f"{len(sents) / t:.0f}")
    line(f"  -> embedding {args.agents} text queries (one round)", f"{args.agents / (len(sents) / t):.2f} s")
    return {"sentences_per_s": len(sents) / t}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--memories", type=int, default=200, help="memories per agent")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--rounds", type=int, default=50, help="spread of created_round")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--naive-agents", type=int, default=200,
                   help="agents loaded into the naive shared collection (x memories vectors)")
    p.add_argument("--naive-sample", type=int, default=50, help="agents timed for the naive queries")
    p.add_argument("--per-round", type=int, default=5, help="new memories per agent per round")
    p.add_argument("--write-rounds", type=int, default=3)
    p.add_argument("--preload-agents", type=int, default=100,
                   help="agents whose full memory is written before timing a round's writes")
    p.add_argument("--sentences", type=int, default=640)
    p.add_argument("--skip", action="append", default=[],
                   choices=["retrieval", "naive", "writes", "embedding"])
    p.add_argument("--quick", action="store_true", help="small sizes everywhere")
    add_json_option(p)
    args = p.parse_args(argv)
    if args.quick:
        args.naive_agents, args.naive_sample, args.preload_agents = 20, 10, 10
        args.write_rounds, args.sentences, args.repeat = 1, 128, 1
    rng = np.random.default_rng(0)
    data = unit_rows(rng, args.agents * args.memories, args.dim).reshape(args.agents, args.memories, args.dim)
    queries = unit_rows(rng, args.agents, args.dim)
    figures = {}
    if "retrieval" not in args.skip:
        figures |= bench_retrieval(args, rng, data, queries)
    if "naive" not in args.skip:
        figures |= bench_naive_chroma(args, rng, data, queries)
    if "writes" not in args.skip:
        figures |= bench_writes(args, rng, data)
    if "embedding" not in args.skip:
        figures |= bench_embedding(args)
    print("\nsummary")
    for key, value in figures.items():
        line(key, f"{value:.4g}")
    write_figures(args.json, {"agents": args.agents, "memories_per_agent": args.memories, **figures})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
