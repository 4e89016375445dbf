"""Agent memory inside whole runs: written each round, retrieved into prompts, reflected on,
kept with the run's commit point, and exactly the same after a kill and resume."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pytest

from simworld import runner
from simworld.catalog import load_bundled_catalog
from simworld.embedding import HashingEmbedder
from simworld.memory import ChromaMemory, InProcessMemory, MemoryConfig, MemoryRecord
from simworld.recorder import read_events, read_summary
from simworld.world_memory import WorldMemory, search_memory, watch_memory
from tests.helpers import comparable, write_scenario
from tests.openai_server import openai_server  # noqa: F401  (fixture)

MEMORY = """
memory:
  backend: {backend}
  embedder: hashing
  reflection_threshold: {threshold}
  retrieval: {{k: 3}}
  consolidation_similarity: 0.8
  forget_after_rounds: 1
  forget_importance_below: 0.5
  forget_access_below: 1
"""


def scenario(tmp_path, *, seed=5, rounds=4, size=20, policy="rule", threshold=1.5, llm="", name="mem.yaml",
             backend="chroma"):
    text = f"""
name: mem
seed: {seed}
rounds: {rounds}
population: {{size: {size}}}
activity: {{model: constant, probability: 0.8}}
recommender: {{name: popularity, page_size: 5, max_pages: 2}}
policy: {policy}
{llm}
""" + MEMORY.format(threshold=threshold, backend=backend)
    return write_scenario(tmp_path, text, name)


def stored_memories(run_dir) -> dict[int, list[MemoryRecord]]:
    """The memories a run folder's chroma store holds, read as another process would."""
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()
    store = ChromaMemory.persistent(run_dir / "memory", HashingEmbedder())
    try:
        return {a: store.all(a) for a in store.agent_ids()}
    finally:
        store.close()


def snapshot(memory: WorldMemory, agent_ids) -> list[tuple]:
    """Every field of every memory (embeddings byte for byte) and the ids to come."""
    store = memory.store
    rows = [(r.agent_id, r.memory_id, r.seq, r.text, r.kind, r.importance, r.created_round,
             r.last_access_round, r.access_count, tuple(sorted(r.extra.items())), r.embedding.tobytes())
            for a in sorted(agent_ids) for r in store.all(a)]
    return rows + [store.pending_changes().next_seq]


# -- WorldMemory on its own ---------------------------------------------------------------

@pytest.fixture(scope="module")
def catalog():
    return load_bundled_catalog()


def world_memory(catalog, **config) -> WorldMemory:
    cfg = MemoryConfig(backend="inprocess", embedder="hashing", **config)
    return WorldMemory(InProcessMemory(HashingEmbedder(), cfg.retrieval), cfg, catalog)


def watched(catalog, agent_id: int, item_id: int, rating: float, round_no: int, taste) -> MemoryRecord:
    item = catalog.get(item_id)
    return watch_memory(agent_id, item, rating, "", round_no, taste, catalog.genre_matrix[catalog.row(item_id)], None)


def test_records_are_built_complete_and_filed_under_their_agent(catalog):
    memory = world_memory(catalog)
    taste = np.ones(len(catalog.genres), dtype=np.float32) / np.sqrt(len(catalog.genres))
    item = int(catalog.ids[0])
    rec = watched(catalog, 7, item, 5.0, 1, taste)
    assert rec.agent_id == 7 and rec.extra["item_id"] == item
    assert search_memory(7, "space", 1).agent_id == 7
    memory.remember({7: [rec, search_memory(7, "space", 1)]})
    assert [r.memory_id for r in memory.store.all(7)] == ["7-0", "7-1"]
    with pytest.raises(ValueError, match="filed under agent 8"):
        memory.remember({8: [rec]})


def test_peek_has_no_side_effect(catalog):
    memory = world_memory(catalog)
    memory.note(3, "a friend recommended Alien", kind="interview", importance=0.6, round_no=1)
    settings = memory.store.retrieval
    assert memory.peek(3, "Alien", now=4) == ("a friend recommended Alien",)
    assert memory.store.retrieval is settings
    (rec,) = memory.store.all(3)
    assert (rec.access_count, rec.last_access_round) == (0, 1)
    memory.recall({3: "Alien"}, now=5)
    assert memory.store.all(3)[0].access_count == 1  # recall, unlike peek, touches


def test_a_consolidated_insight_does_not_make_a_rule_agent_reflect_again(catalog):
    """Two films rated well make the agent reflect and pull its taste toward them; merging
    those memories into an insight afterwards (same round, as the forget stage does) must
    not make it reflect again next round, nor pull its taste toward the same films twice."""
    memory = world_memory(catalog, reflection_threshold=0.5, consolidation_similarity=0.5)
    genres = len(catalog.genres)
    taste = np.zeros(genres, dtype=np.float32)
    taste[0] = 1.0
    item = next(int(i) for i in catalog.ids if catalog.genre_matrix[catalog.row(int(i))][0] == 0)
    memory.remember({1: [watched(catalog, 1, item, 5.0, 1, taste), watched(catalog, 1, item, 5.0, 1, taste)]})
    assert memory.due_for_reflection([1]) == [1]
    reflection = memory.rule_reflection(1, taste, 1)
    assert not np.allclose(reflection.taste, taste)  # it moved toward the film
    memory.write_reflections([reflection], 1)
    report = memory.maintain([1], 1)
    assert (report.consolidated, report.insights) == (2, 1)
    assert [r.kind for r in memory.store.all(1)] == ["insight", "reflection"]
    assert memory.due_for_reflection([1]) == []
    assert memory.recent(1) == []
    again = memory.rule_reflection(1, reflection.taste, 2)
    np.testing.assert_array_equal(again.taste, reflection.taste)  # no second pull


@pytest.mark.parametrize("backend", ["inprocess", "chroma"])
def test_commit_and_restore(catalog, tmp_path, backend):
    """pending_changes -> (checkpoint) -> commit; a later, uncommitted round is not seen by
    a freshly opened store restored from the delta. restore(None): nothing committed."""
    from simworld.memory import open_memory

    cfg = MemoryConfig(backend=backend, embedder="hashing", reflection_threshold=0.5, consolidation_similarity=0.5,
                       forget_after_rounds=0, forget_importance_below=0.5, forget_access_below=1)

    def opened() -> WorldMemory:
        from chromadb.api.client import SharedSystemClient

        SharedSystemClient.clear_system_cache()
        return WorldMemory(open_memory(cfg, tmp_path, HashingEmbedder()), cfg, catalog)

    taste = np.ones(len(catalog.genres), dtype=np.float32) / np.sqrt(len(catalog.genres))
    items = [int(i) for i in catalog.ids[:4]]

    def a_round(memory: WorldMemory, now: int) -> None:
        memory.recall({1: "films", 2: "films"}, now)
        memory.remember({a: [watched(catalog, a, items[(a + now) % 4], 1.0 + now % 4, now, taste),
                             search_memory(a, f"query {now}", now)] for a in (1, 2)})
        memory.write_reflections([memory.rule_reflection(a, taste, now) for a in memory.due_for_reflection([1, 2])],
                                 now)
        memory.maintain([1, 2], now)

    memory = opened()
    for now in (1, 2):
        a_round(memory, now)
        delta = memory.pending_changes()
        memory.commit()
    expected = snapshot(memory, [1, 2])
    a_round(memory, 3)  # never committed
    memory.note(1, "an interview after the last commit", kind="interview", importance=0.6, round_no=3)
    assert snapshot(memory, [1, 2]) != expected
    memory.close()

    resumed = opened()
    resumed.restore(delta)
    assert snapshot(resumed, [1, 2]) == expected
    resumed.restore(None)
    assert resumed.store.count() == 0
    resumed.close()
    assert opened().store.count() == 0  # chroma too


# -- whole runs -----------------------------------------------------------------------------

def test_rule_agents_remember_reflect_and_their_taste_moves(tmp_path):
    run_dir = runner.run_scenario(scenario(tmp_path), out_dir=tmp_path / "runs", run_id="r")
    events = read_events(run_dir)
    watches = events.filter(pl.col("action") == "watch")
    memories = stored_memories(run_dir)
    assert memories and all(type(a) is int and all(r.agent_id == a for r in recs) for a, recs in memories.items())
    texts = [r.text for recs in memories.values() for r in recs if r.kind in ("observation", "insight")]
    watched_texts = [t for t in texts if " watched " in t]
    # every watch became one memory (consolidation may merge, forgetting may drop, never invent)
    assert 0 < len(watched_texts) <= watches.height
    assert len(texts) - len(watched_texts) <= events.filter(pl.col("action") == "search").height
    reflections = events.filter(pl.col("action") == "reflect")
    assert reflections.height > 0 and set(reflections["policy"]) == {"rule"}
    assert all(t.startswith("Looking back on round") for t in reflections["text"])
    stored = [r for recs in memories.values() for r in recs if r.kind == "reflection"]
    assert len(stored) == reflections.height


def test_reflection_threshold_controls_when_agents_reflect(tmp_path):
    never = runner.run_scenario(scenario(tmp_path, threshold=1000.0, name="never.yaml"), out_dir=tmp_path / "a",
                                run_id="r")
    often = runner.run_scenario(scenario(tmp_path, threshold=0.5, name="often.yaml"), out_dir=tmp_path / "b",
                                run_id="r")
    assert read_events(never).filter(pl.col("action") == "reflect").height == 0
    assert read_events(often).filter(pl.col("action") == "reflect").height > 0
    # a rule agent's reflection moves its taste: the runs diverge once agents reflect
    a = pl.read_parquet(never / "agents.parquet").filter(pl.col("round") == 4).sort("agent_id")
    b = pl.read_parquet(often / "agents.parquet").filter(pl.col("round") == 4).sort("agent_id")
    assert not np.allclose(np.stack(a["taste"].to_list()), np.stack(b["taste"].to_list()))


def test_same_seed_same_run_with_memory(tmp_path):
    path = scenario(tmp_path)
    a = runner.run_scenario(path, out_dir=tmp_path / "a", run_id="r")
    b = runner.run_scenario(path, out_dir=tmp_path / "b", run_id="r")
    assert comparable(read_events(a)).equals(comparable(read_events(b)))


# Kills the run inside the memory's part of a round, by SIGKILL (no cleanup of any kind):
#   before-commit  round K's checkpoint is written, its memory delta not yet
#   during-commit  round K's deletes and new memories are written to chroma, its access
#                  statistics not yet
#   after-commit   round K's delta is written, nothing after it
#   mid-round      round K+1 has touched, written, reflected, consolidated and forgotten
#                  memories, and has not committed
KILLER = textwrap.dedent("""
    import os, signal, sys
    from simworld import runner
    from simworld.memory import ChromaMemory
    from simworld.world_memory import WorldMemory

    scenario, out, point, K = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    commits = [0]
    commit, maintain, write = WorldMemory.commit, WorldMemory.maintain, ChromaMemory._write

    def commit_then(self):
        commits[0] += 1
        if commits[0] == K and point == "before-commit":
            die()
        commit(self)
        if commits[0] == K and point == "after-commit":
            die()

    class DiesAtUpdate:
        def __init__(self, inner):
            self.inner = inner
        def __getattr__(self, name):
            if name == "update":
                die()
            return getattr(self.inner, name)

    def write_dying(self, delta):
        if commits[0] == K and point == "during-commit":
            self.collection = DiesAtUpdate(self.collection)
        write(self, delta)

    def maintain_then(self, agent_ids, now):
        report = maintain(self, agent_ids, now)
        if now == K + 1 and point == "mid-round":
            die()
        return report

    WorldMemory.commit, WorldMemory.maintain, ChromaMemory._write = commit_then, maintain_then, write_dying
    sim = runner.start(scenario, out_dir=out, run_id="r")
    sim.run()
    sys.exit(3)  # not killed
""")


@pytest.mark.slow
@pytest.mark.parametrize("backend,point", [
    ("chroma", "before-commit"), ("chroma", "during-commit"), ("chroma", "after-commit"), ("chroma", "mid-round"),
    ("inprocess", "before-commit"), ("inprocess", "mid-round"),
])
def test_memory_after_a_kill_and_resume_is_exactly_the_uninterrupted_runs(tmp_path, backend, point):
    K, rounds = 4, 6
    path = scenario(tmp_path, rounds=rounds, threshold=1.0, backend=backend)
    reference = runner.start(path, out_dir=tmp_path / "ref", run_id="r")
    agents = sorted(reference.world.users)
    memory, reports = reference.world.memory, {}
    maintain = memory.maintain
    memory.maintain = lambda ids, now: reports.setdefault(now, maintain(ids, now))
    for _ in range(K):
        reference.step()
    at_commit = snapshot(memory, agents)
    reference.run()
    at_end = snapshot(memory, agents)
    reference.close()
    # both the committed round and the one cut off consolidate, forget and reflect
    assert all(reports[r].consolidated and reports[r].forgotten for r in (K, K + 1))
    assert read_events(tmp_path / "ref" / "r").filter((pl.col("action") == "reflect")
                                                     & pl.col("round").is_in([K, K + 1]))["round"].n_unique() == 2

    out = tmp_path / "cut"
    killed = subprocess.run([sys.executable, "-c", KILLER, str(path), str(out), point, str(K)],
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    resumed = runner.resume(out / "r")
    try:
        assert resumed.world.round == K  # the checkpoint of round K was written
        got = snapshot(resumed.world.memory, agents)
        assert [r[:-1] for r in got[:-1]] == [r[:-1] for r in at_commit[:-1]]
        assert got == at_commit
        resumed.run()
        assert snapshot(resumed.world.memory, agents) == at_end
    finally:
        resumed.close()
    assert read_summary(out / "r")["status"] == "finished"
    assert comparable(read_events(out / "r")).equals(comparable(read_events(tmp_path / "ref" / "r")))
    if backend == "chroma":
        ref_mem, cut_mem = stored_memories(tmp_path / "ref" / "r"), stored_memories(out / "r")
        assert ref_mem.keys() == cut_mem.keys() and all(ref_mem[a] == cut_mem[a] for a in ref_mem)


def test_llm_agents_see_their_memories_and_write_insights(tmp_path, openai_server):
    server = openai_server()
    llm = f"llm: {{model: openai/test-model, api_base: '{server.url}', retry_base_s: 0.01}}"
    path = scenario(tmp_path, policy="llm", llm=llm, size=6, rounds=3, threshold=0.5)
    run_dir = runner.run_scenario(path, out_dir=tmp_path / "runs", run_id="r")
    prompts = [m["content"] for body in server.requests for m in body["messages"] if m["role"] == "user"]
    later = [p for p in prompts if p.startswith("Round 3")]
    assert later and any("Round 1: watched" in p or "Round 2: watched" in p for p in later)
    assert any("importance" in str(body.get("response_format")) for body in server.requests)
    reflections = read_events(run_dir).filter(pl.col("action") == "reflect")
    assert reflections.height > 0 and set(reflections["policy"]) == {"llm"}
    assert any(body["messages"][-1]["content"].startswith("Round") and "insights" in body["messages"][-1]["content"]
               for body in server.requests)


def test_interview_reads_memories_and_writes_only_when_asked(tmp_path, openai_server):
    server = openai_server()
    llm = f"llm: {{model: openai/test-model, api_base: '{server.url}', retry_base_s: 0.01}}"
    sim = runner.start(scenario(tmp_path, llm=llm, rounds=3), out_dir=tmp_path / "runs", run_id="r")
    try:
        for _ in range(2):
            sim.step()
        store = sim.world.memory.store
        agent = next(a for a in sorted(sim.world.users) if sim.memories(a))
        before = [(r.memory_id, r.access_count, r.last_access_round) for r in store.all(agent)]
        answer = sim.interview(agent, "What did you watch last?")
        assert answer and "Round" in server.requests[-1]["messages"][-1]["content"]  # memories in the prompt
        after = [(r.memory_id, r.access_count, r.last_access_round) for r in store.all(agent)]
        assert after == before  # not even access statistics change
        sim.interview(agent, "Your friend recommends Alien.", remember=True)
        kinds = [r.kind for r in store.all(agent)]
        assert kinds.count("interview") == 1
        assert read_events(sim.run_dir).height > 0 and "interview" in set(
            pl.read_parquet(sim.run_dir / "llm_calls.parquet")["purpose"])
    finally:
        sim.close()
