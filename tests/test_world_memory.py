"""Agent memory inside whole runs: written each round, retrieved into prompts, reflected on,
kept in the run folder (chromadb) and consistent across resume."""

from __future__ import annotations

import numpy as np
import polars as pl

from simworld import runner
from simworld.memory import ChromaMemory, MemoryRecord
from simworld.embedding import HashingEmbedder
from simworld.recorder import read_events, read_summary
from tests.helpers import comparable, write_scenario
from tests.openai_server import openai_server  # noqa: F401  (fixture)

MEMORY = """
memory:
  embedder: hashing
  reflection_threshold: {threshold}
  retrieval: {{k: 3}}
"""


def scenario(tmp_path, *, seed=5, rounds=4, size=20, policy="rule", threshold=1.5, llm="", name="mem.yaml"):
    text = f"""
name: mem
seed: {seed}
rounds: {rounds}
population: {{size: {size}}}
activity: {{model: constant, probability: 0.8}}
recommender: {{name: popularity, page_size: 5, max_pages: 2}}
policy: {policy}
{llm}
""" + MEMORY.format(threshold=threshold)
    return write_scenario(tmp_path, text, name)


def stored_memories(run_dir) -> dict[str, list]:
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()  # read the folder again, as another process would
    store = ChromaMemory.persistent(run_dir / "memory", HashingEmbedder())
    try:
        found = {str(a): store.all(str(a)) for a in range(1, 21)}
        return {a: recs for a, recs in found.items() if recs}
    finally:
        store.close()


def test_rule_agents_remember_reflect_and_their_taste_moves(tmp_path):
    run_dir = runner.run_scenario(scenario(tmp_path), out_dir=tmp_path / "runs", run_id="r")
    events = read_events(run_dir)
    watches = events.filter(pl.col("action") == "watch")
    memories = stored_memories(run_dir)
    texts = [r.text for recs in memories.values() for r in recs if r.kind == "observation"]
    watched = [t for t in texts if " watched " in t]
    # every watch became one memory (consolidation may merge near-duplicates, never invent)
    assert 0 < len(watched) <= watches.height
    assert len(texts) - len(watched) <= events.filter(pl.col("action") == "search").height
    reflections = events.filter(pl.col("action") == "reflect")
    assert reflections.height > 0 and set(reflections["policy"]) == {"rule"}
    assert all(t.startswith("Looking back on round") for t in reflections["text"])
    stored = [r for recs in memories.values() for r in recs if r.kind == "reflection"]
    assert len(stored) == reflections.height


def test_reflection_threshold_controls_when_agents_reflect(tmp_path):
    never = runner.run_scenario(scenario(tmp_path, threshold=1000.0, name="never.yaml"), out_dir=tmp_path / "a", run_id="r")
    often = runner.run_scenario(scenario(tmp_path, threshold=0.5, name="often.yaml"), out_dir=tmp_path / "b", run_id="r")
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


def test_memories_survive_resume(tmp_path):
    path = scenario(tmp_path, rounds=6)
    reference = runner.run_scenario(path, out_dir=tmp_path / "ref", run_id="r")

    sim = runner.start(path, out_dir=tmp_path / "cut", run_id="r")
    for _ in range(3):
        sim.step()
    # the process dies in round 4 after writing some of that round's memories
    sim.world.memory.remember({1: [MemoryRecord(agent_id="", text="half of round 4", created_round=4)]})
    sim.world.memory.flush()
    sim.close()

    resumed = runner.resume(tmp_path / "cut" / "r")
    assert resumed.world.round == 3
    assert [r.created_round for r in resumed.world.memory.store.all("1") if r.created_round > 3] == []
    resumed.run()
    resumed.close()
    assert read_summary(tmp_path / "cut" / "r")["status"] == "finished"
    assert comparable(read_events(tmp_path / "cut" / "r")).equals(comparable(read_events(reference)))
    ref_mem, cut_mem = stored_memories(reference), stored_memories(tmp_path / "cut" / "r")
    assert {a: [r.text for r in recs] for a, recs in ref_mem.items()} == \
        {a: [r.text for r in recs] for a, recs in cut_mem.items()}


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
        agent = next(a for a in sim.world.order if sim.memories(a))
        before = [(r.memory_id, r.access_count, r.last_access_round) for r in sim.world.memory.store.all(str(agent))]
        answer = sim.interview(agent, "What did you watch last?")
        assert answer and "Round" in server.requests[-1]["messages"][-1]["content"]  # memories in the prompt
        after = [(r.memory_id, r.access_count, r.last_access_round) for r in sim.world.memory.store.all(str(agent))]
        assert after == before  # not even access statistics change
        sim.interview(agent, "Your friend recommends Alien.", remember=True)
        kinds = [r.kind for r in sim.world.memory.store.all(str(agent))]
        assert kinds.count("interview") == 1
        assert read_events(sim.run_dir).height > 0 and "interview" in set(
            pl.read_parquet(sim.run_dir / "llm_calls.parquet")["purpose"])
    finally:
        sim.close()
