"""The social layer's figures (issue 11).

    python benchmarks/bench_social.py [--skip rule,llm,recommenders]

1. rule: 1,000 rule-driven agents with a taste-SBM friend graph, 6 rounds: chats, chat
   messages, posts, reposts, likes, follows per round, and each round's wall time (from
   timings.parquet: every stage, the social ones included, plus recording).
2. llm: a round of 200 LLM-driven agents (every decision and every chat message by the LLM)
   against the OpenAI-protocol test server (its own process, `--latency` per answer, chats
   that end at their third message). Round 2 is measured (round 1 has no chats: nobody has
   watched anything to talk about). The floor is max(ceil(calls / concurrency), the longest
   chain of calls that must follow each other) x latency: the chain is an agent's pages or a
   chat's messages, each waiting for the one before.
3. recommenders: the share of watches that followed word of mouth (a friend's chat or a
   post in the feed) under popularity vs MF ranking, 300 agents x 10 rounds, same seed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import polars as pl  # noqa: E402

from simworld import runner  # noqa: E402
from simworld.config import parse_scenario  # noqa: E402
from simworld.recorder import read_events  # noqa: E402
from simworld.social import files  # noqa: E402


def rule_figures(agents: int, rounds: int) -> None:
    scenario = parse_scenario({
        "name": "social-rule", "seed": 1, "rounds": rounds, "population": {"size": agents},
        "activity": {"model": "pareto", "probability": 0.5},
        "recommender": {"name": "popularity", "page_size": 10, "max_pages": 3}, "policy": "rule",
        "social": {"graph": {"source": "taste_sbm", "degree": 6}},
    })
    with tempfile.TemporaryDirectory() as tmp:
        sim = runner.start(scenario, out_dir=Path(tmp), run_id="bench")
        walls = []
        for _ in range(rounds):
            started = time.perf_counter()
            sim.step()
            walls.append(time.perf_counter() - started)
        sim.finish()
        sim.close()
        social = files.read(Path(tmp) / "bench", files.ROUNDS)
        timings = pl.read_parquet(Path(tmp) / "bench" / "timings.parquet")
        events = read_events(Path(tmp) / "bench")
    per_stage = timings.filter(pl.col("stage").str.starts_with("social")).group_by("stage") \
        .agg(pl.col("seconds").mean())
    print(f"\n1. {agents} rule agents, {rounds} rounds (taste SBM, degree 6)")
    print(f"{'round':>5} {'active':>6} {'chats':>5} {'msgs':>5} {'posts':>5} {'repost':>6} {'likes':>5} "
          f"{'follow':>6} {'wall s':>7}")
    active = events.filter(pl.col("action").is_in(["page", "search", "idle", "chat", "read_feed"])) \
        .group_by("round").agg(pl.col("agent_id").n_unique()).sort("round")["agent_id"].to_list()
    for row, wall, n in zip(social.iter_rows(named=True), walls, active):
        print(f"{row['round']:>5} {n:>6} {row['chats']:>5} {row['chat_messages']:>5} {row['posts']:>5} "
              f"{row['reposts']:>6} {row['likes']:>5} {row['follows']:>6} {wall:>7.2f}")
    print("mean s per round in the social stages: " +
          ", ".join(f"{s} {v:.3f}" for s, v in sorted(per_stage.iter_rows())))


# -- 2. LLM agents against the test server ------------------------------------------------------------

def chat_answer(body: dict) -> str:
    """The test server's answer: its default for every schema, except chat messages, which
    name a film and end the chat from the third message on."""
    from tests.openai_server import default_answer

    schema = json.dumps(body.get("response_format") or {})
    if '"done"' not in schema:
        return default_answer(body)
    prompt = body["messages"][-1]["content"]
    transcript = prompt.split("The chat so far:\n", 1)[-1].split("\nWrite your next message", 1)[0]
    number = 0 if transcript.startswith("(you start") else len(transcript.splitlines())
    return json.dumps({"message": "Have you seen Alien? Properly scary.", "done": number >= 2})


def serve(latency: float) -> None:
    """The benchmark's server process: the test server with `chat_answer`."""
    from tests.openai_server import FakeOpenAIServer

    server = FakeOpenAIServer(latency_s=latency, answer=chat_answer).start()
    print(f"PORT {server.port}", flush=True)
    while True:
        time.sleep(3600)


def llm_figures(agents: int, concurrency: int, latency: float) -> None:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(latency)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        line = proc.stdout.readline().split()
        url = f"http://127.0.0.1:{line[1]}/v1"
        scenario = parse_scenario({
            "name": "social-llm", "seed": 2, "rounds": 2, "population": {"size": agents},
            "activity": {"model": "constant", "probability": 1.0},
            "recommender": {"name": "popularity", "page_size": 5, "max_pages": 2}, "policy": "llm",
            "llm": {"model": "openai/gpt-4o-mini", "api_base": url, "concurrency": concurrency, "cache": False},
            "social": {"mix": {"watch": 0.6, "talk": 0.3, "post": 0.1}, "chat": {"max_turns": 4}},
        })
        with tempfile.TemporaryDirectory() as tmp:
            sim = runner.start(scenario, out_dir=Path(tmp), run_id="bench")
            sim.step()  # round 1: decisions only (nothing watched yet to talk about); warms litellm up
            started = time.perf_counter()
            result, _ = sim.step()
            wall = time.perf_counter() - started
            sim.finish()
            sim.close()
            from simworld.llm import read_ledger

            ledger = read_ledger(Path(tmp) / "bench").filter(pl.col("round") == 2)
            events = result.events
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    calls = ledger.height
    purposes = dict(ledger.group_by("purpose").len().iter_rows())
    chats = events.filter(pl.col("action") == "chat")
    longest_chat = int(chats.group_by("thread_id").len()["len"].max() or 0)
    per_agent = ledger.filter(pl.col("purpose") != "chat").group_by("agent_id").len()["len"].max() or 0
    chain = max(longest_chat, int(per_agent))
    floor = max(math.ceil(calls / concurrency), chain) * latency
    stages = {k: round(v, 2) for k, v in result.timings.items() if v >= 0.05}
    print(f"\n2. a round of {agents} LLM agents with chats, test server at {latency * 1000:.0f} ms, "
          f"concurrency {concurrency}")
    print(f"   {calls} calls ({', '.join(f'{k} {v}' for k, v in sorted(purposes.items()))}), "
          f"{chats['thread_id'].n_unique()} chats, {chats.height} messages")
    print(f"   wall {wall:.2f} s; floor max(ceil({calls}/{concurrency}), chain {chain}) x {latency} = {floor:.2f} s; "
          f"ratio {wall / floor:.2f}")
    print(f"   stages (s): {stages}")


# -- 3. word of mouth under popularity vs MF ---------------------------------------------------------

def recommender_figures(agents: int, rounds: int) -> None:
    print(f"\n3. word of mouth under two recommenders ({agents} agents x {rounds} rounds, same seed)")
    for name in ("popularity", "mf"):
        scenario = parse_scenario({
            "name": f"social-{name}", "seed": 11, "rounds": rounds, "population": {"size": agents},
            "activity": {"model": "pareto", "probability": 0.5},
            "recommender": {"name": name, "page_size": 10, "max_pages": 2}, "policy": "rule",
            "social": {},
        })
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = runner.run_scenario(scenario, out_dir=Path(tmp), run_id="bench")
            watches = read_events(run_dir).filter(pl.col("action") == "watch")
        counts = dict(watches.group_by("source").len().iter_rows())
        total = watches.height

        def share(*sources: str, counts=counts, total=total) -> float:
            return sum(counts.get(x, 0) for x in sources) / total
        print(f"   {name:>10}: {total} watches; after a friend's chat {share('friend'):.1%}, after a post "
              f"{share('feed'):.1%} (word of mouth {share('friend', 'feed'):.1%}); recommended {share('page'):.1%}, "
              f"search {share('search'):.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: rule, llm, recommenders")
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--llm-agents", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2)
    args = ap.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    skip = set(filter(None, args.skip.split(",")))
    if "rule" not in skip:
        rule_figures(args.agents, 6)
    if "llm" not in skip:
        llm_figures(args.llm_agents, args.concurrency, args.latency)
    if "recommenders" not in skip:
        recommender_figures(300, 10)


if __name__ == "__main__":
    main()
