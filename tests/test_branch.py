"""Branching (issue 14 part 5): a branch reproduces its parent's run up to the branch round and
differs after it only through the changed setting; LLM rounds replay with no call, memories
are rebuilt exactly, bad input is one line, and a branch killed anywhere resumes to the same
result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from simworld import runner
from simworld.branch import BRANCH_FILE, branch_run, start_branch
from simworld.cli import app
from simworld.errors import SimworldError
from simworld.llm import read_ledger
from simworld.recorder import read_agents, read_events, read_metrics, read_summary
from tests.helpers import comparable, write_scenario

pytest_plugins = ["tests.openai_server"]  # the openai_server fixture

REPO = Path(__file__).resolve().parents[1]
RULE = """
name: branchy
seed: 7
rounds: 6
population: {size: 20}
activity: {model: constant, probability: 0.8}
recommender: {name: popularity, page_size: 5, max_pages: 2}
policy: rule
"""
MEMORY = RULE + "memory: {backend: chroma, embedder: hashing}\n"


def parent_run(tmp_path: Path, text: str = RULE, run_id: str = "parent", **kwargs) -> Path:
    return runner.run_scenario(write_scenario(tmp_path, text), out_dir=tmp_path / "runs", run_id=run_id, **kwargs)


def upto(frame: pl.DataFrame, round_no: int) -> pl.DataFrame:
    return frame.filter(pl.col("round") <= round_no)


def after(frame: pl.DataFrame, round_no: int) -> pl.DataFrame:
    return frame.filter(pl.col("round") > round_no)


def pages(events: pl.DataFrame) -> pl.DataFrame:
    return events.filter(pl.col("action") == "page").select("round", "agent_id", "text", "items")


def test_a_branch_shares_its_parents_rounds_and_differs_after_them_only_through_the_setting(tmp_path):
    parent = parent_run(tmp_path)
    mf = branch_run(parent, 3, {"recommender.name": "mf"})
    control = branch_run(parent, 3, {"recommender.name": "popularity"})
    assert mf == tmp_path / "runs" / "parent-branch-r3" and control.name == "parent-branch-r3-2"
    theirs, mine = read_events(parent), read_events(mf)
    # rounds 1..3 are the parent's records, latencies included; only the run id is the branch's
    assert set(mine["run_id"]) == {"parent-branch-r3"}
    assert upto(mine, 3).drop("run_id").equals(upto(theirs, 3).drop("run_id"))
    assert upto(read_metrics(mf), 3).equals(upto(read_metrics(parent), 3))
    assert upto(read_agents(mf), 3).equals(upto(read_agents(parent), 3))
    # after round 3 the recommender changed the pages served, but not who came to the platform
    assert after(mine, 3)["round"].unique().sort().to_list() == [4, 5, 6]
    assert not pages(after(mine, 3)).equals(pages(after(theirs, 3)))
    def acted(events: pl.DataFrame) -> set[int]:
        return set(events.filter(pl.col("round") == 4)["agent_id"])

    assert acted(mine) == acted(theirs)
    # the same setting again changes nothing at all: the control branch is its parent
    assert comparable(read_events(control)).drop("run_id").equals(comparable(theirs).drop("run_id"))
    summary = read_summary(mf)
    assert summary["status"] == "finished" and summary["recommender"] == "mf" and summary["rounds_done"] == 6
    assert summary["branch"] == {"parent": str(parent.resolve()), "parent_run_id": "parent", "round": 3,
                                 "settings": {"recommender.name": "mf"}}
    assert json.loads((mf / BRANCH_FILE).read_text())["replayed"] is True


def test_a_branch_of_a_branch_and_of_a_run_that_stopped_early(tmp_path):
    sim = runner.start(write_scenario(tmp_path, RULE), out_dir=tmp_path / "runs", run_id="stopped")
    for _ in range(4):
        sim.step()
    sim.mark("stopped", "stopped by hand")
    sim.close()
    stopped = sim.run_dir
    first = branch_run(stopped, 2, {"recommender.name": "mf", "activity.probability": 0.5}, rounds=5)
    assert read_summary(first)["rounds_done"] == 5
    assert upto(read_events(first), 2).drop("run_id").equals(upto(read_events(stopped), 2).drop("run_id"))
    second = branch_run(first, 4, {"recommender.name": "random"}, run_id="grandchild")
    assert upto(read_events(second), 4).drop("run_id").equals(upto(read_events(first), 4).drop("run_id"))
    assert read_summary(second)["branch"]["parent_run_id"] == first.name
    assert read_summary(second)["rounds_planned"] == 5  # the branch's own scenario is the one branched
    with pytest.raises(SimworldError, match=r"--round 5: run stopped has committed rounds 0 to 4"):
        start_branch(stopped, 5, {"recommender.name": "mf"})


def test_the_recommender_switched_at_the_branch_round_learned_every_watch_so_far(tmp_path):
    parent = parent_run(tmp_path)
    sim = start_branch(parent, 3, {"recommender.name": "mf"})
    try:
        learned = sim.world.recommender.history
        watches = upto(read_events(parent), 3).filter(pl.col("action") == "watch")
        assert type(sim.world.recommender).__name__ != "Popularity" and sim.world.pending == []
        assert learned.height == watches.height > 0
        assert sorted(zip(learned["user_id"], learned["item_id"])) == sorted(zip(watches["agent_id"],
                                                                                   watches["item_id"]))
    finally:
        sim.close()


def llm_scenario(url: str, extra: str = "") -> str:
    return f"""
name: llmbranch
seed: 3
rounds: 4
population: {{size: 6}}
activity: {{model: constant, probability: 1.0}}
recommender: {{name: popularity, page_size: 4, max_pages: 2}}
policy: {{kind: llm}}
llm: {{model: openai/test-model, api_base: "{url}", retry_base_s: 0.01, timeout_s: 5{extra}}}
"""


def test_an_llm_run_branches_with_no_call_up_to_the_branch_round(openai_server, tmp_path):
    server = openai_server()
    parent = parent_run(tmp_path, llm_scenario(server.url))
    calls = server.count
    assert calls > 0
    sim = start_branch(parent, 2, {"recommender.name": "random"})
    try:
        assert server.count == calls  # rounds 1-2 came from the cache
        ledger = read_ledger(sim.run_dir)  # what those rounds cost when they ran
        assert ledger.drop("run_id").equals(upto(read_ledger(parent), 2).drop("run_id"))
        assert set(ledger["run_id"]) == {sim.run_id} and not ledger["cached"].any()
        sim.run()
    finally:
        sim.close()
    assert server.count > calls  # new pages, new prompts: rounds 3-4 ask the model
    branch = sim.run_dir
    assert upto(read_events(branch), 2).drop("run_id").equals(upto(read_events(parent), 2).drop("run_id"))
    late = after(read_ledger(branch), 2)
    assert set(late["round"]) == {3, 4}
    assert late.filter(~pl.col("cached")).height == server.count - calls  # a page seen before hits the cache
    assert read_summary(branch)["llm"]["calls"] == upto(read_ledger(parent), 2).height + late.height
    calls = server.count
    again = runner.replay(branch)  # the branch made again, from the caches alone
    assert server.count == calls and again.name == f"{branch.name}-replay"
    assert comparable(read_events(again)).drop("run_id").equals(comparable(read_events(branch)).drop("run_id"))
    assert after(read_ledger(again), 2)["cached"].all()


def test_a_run_stopped_by_its_budget_branches_with_a_bigger_budget(openai_server, tmp_path):
    server = openai_server()
    parent = parent_run(tmp_path, llm_scenario(server.url, ", budget_tokens: 50"))
    assert read_summary(parent)["status"] == "budget_exhausted" and read_summary(parent)["rounds_done"] == 1
    same = branch_run(parent, 1, {"recommender.name": "random"})
    assert read_summary(same)["status"] == "budget_exhausted"  # the budget goes on from the parent's spend
    more = branch_run(parent, 1, {"recommender.name": "random", "llm.budget_tokens": 10**9})
    assert read_summary(more)["status"] == "finished" and read_summary(more)["rounds_done"] == 4


def test_memories_at_the_branch_round_are_the_parents(tmp_path):
    parent = parent_run(tmp_path, MEMORY)
    prefix = parent_run(tmp_path, MEMORY, run_id="prefix", rounds=3)  # the parent as it was at round 3
    then = runner.resume(prefix)
    sim = start_branch(parent, 3, {"recommender.name": "mf"})
    try:
        agents = sorted(sim.world.users)
        remembered = [then.memories(a) for a in agents]
        assert sum(map(len, remembered)) > 0
        assert [sim.memories(a) for a in agents] == remembered
        sim.run()
        assert any(sim.memories(a) != m for a, m in zip(agents, remembered))  # and the branch goes on
    finally:
        sim.close()
        then.close()


@pytest.mark.parametrize("args, message", [
    (["--round", "2", "--set", "recommender.nme=mf"], "error: --set recommender.nme: unknown field"),
    (["--round", "9", "--set", "recommender.name=mf"], "error: --round 9: run parent has committed rounds 0 to 6"),
    (["--round", "two"], "error: --round must be a round number, got 'two'"),
    (["--round", "2", "--set", "population.size=5"], "error: population.size cannot change in a branch"),
    (["--round", "2", "--set", "memory.embedder=minilm"], "error: memory cannot be turned on or off"),
    (["--round", "2", "--set", "recommender.name"], "error: --set 'recommender.name': expected key=value"),
    (["--round", "6"], "error: the branch must go past round 6"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    parent = parent_run(tmp_path)
    result = CliRunner().invoke(app, ["branch", str(parent), *args], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.output
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["parent"]  # nothing left behind


def test_a_missing_run_is_one_line_and_exit_code_2(tmp_path):
    result = CliRunner().invoke(app, ["branch", str(tmp_path / "nope"), "--round", "1"], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and result.output.strip() == f"error: run folder not found: {tmp_path / 'nope'}"


def test_the_command_branches_and_prints_the_new_run(tmp_path):
    parent = parent_run(tmp_path)
    result = CliRunner().invoke(app, ["branch", str(parent), "--round", "2", "--set", "recommender.name=mf",
                                      "--rounds", "4", "--run-id", "mf-from-2", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "branch of parent after round 2" in result.output
    summary = read_summary(tmp_path / "b" / "mf-from-2")
    assert summary["status"] == "finished" and summary["rounds_done"] == 4 and summary["recommender"] == "mf"


KILL = """
import sys
from tests import killer
point, round_no, parent, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
if point == "before:switch":  # the replay is adopted, the branch's own world not yet built
    import simworld.branch
    simworld.branch._open = lambda *args: killer.die()
else:
    killer.install(point, round_no)
from simworld.branch import branch_run
branch_run(parent, 3, {"recommender.name": "mf"}, run_id="b", out_dir=out)
raise SystemExit("the branch ended without reaching the kill point")
"""


@pytest.mark.parametrize("point, round_no", [
    ("before:decide", 2),  # in the replay
    ("after:checkpoint", 3),  # the replay's last round committed, its records not adopted
    ("before:switch", 0),
    ("before:learn", 5),  # in the branch's own rounds
])
def test_a_branch_killed_anywhere_resumes_to_the_uninterrupted_branch(tmp_path, point, round_no):
    parent = parent_run(tmp_path, MEMORY)
    whole = branch_run(parent, 3, {"recommender.name": "mf"}, run_id="b", out_dir=tmp_path / "whole")
    out = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", KILL, point, str(round_no), str(parent), str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=300, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    result = CliRunner().invoke(app, ["resume", str(out / "b")])
    assert result.exit_code == 0, result.output
    a, b = whole, out / "b"
    assert comparable(read_events(b)).equals(comparable(read_events(a)))
    assert read_metrics(b).drop("wall_s").equals(read_metrics(a).drop("wall_s"))
    assert read_agents(b).equals(read_agents(a))
    assert read_summary(b)["status"] == "finished" and read_summary(b)["branch"] == read_summary(a)["branch"]
    done = runner.resume(b), runner.resume(a)
    try:
        agents = sorted(done[0].world.users)
        assert [done[0].memories(x) for x in agents] == [done[1].memories(x) for x in agents]
    finally:
        for sim in done:
            sim.close()


GRANDCHILD = """
import sys
from tests import killer
point, round_no, child, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
killer.install(point, round_no)
from simworld.branch import branch_run
branch_run(child, 4, {"recommender.name": "random"}, run_id="g", out_dir=out)
raise SystemExit("the branch ended without reaching the kill point")
"""


@pytest.mark.parametrize("point, round_no", [
    ("after:checkpoint", 2),  # round 2 committed, the summary still says 1: the replay crosses its parent's switch
    ("before:decide", 3),  # in the parent's own rounds, replayed with the parent's settings
])
def test_a_branch_of_a_branch_killed_in_its_replay_resumes_across_the_parents_branch_point(tmp_path, point,
                                                                                             round_no):
    parent = parent_run(tmp_path, MEMORY)
    child = branch_run(parent, 2, {"recommender.name": "mf"}, run_id="child")
    whole = branch_run(child, 4, {"recommender.name": "random"}, run_id="g", out_dir=tmp_path / "whole")
    out = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", GRANDCHILD, point, str(round_no), str(child), str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    sim = runner.resume(out / "g")
    try:
        sim.run()
    finally:
        sim.close()
    assert comparable(read_events(out / "g")).equals(comparable(read_events(whole)))
    assert upto(read_events(whole), 4).drop("run_id").equals(upto(read_events(child), 4).drop("run_id"))


def test_a_parent_changed_while_it_ran_cannot_be_branched(tmp_path):
    sim = runner.start(write_scenario(tmp_path, RULE), out_dir=tmp_path / "runs", run_id="edited")
    sim.step()
    sim.inject(sorted(sim.world.users), "Now streaming!", item_id=int(sim.world.catalog.ids[0]))  # an ad
    sim.run()
    sim.close()
    with pytest.raises(SimworldError, match=r"^round 2 of edited does not replay to the same events"):
        start_branch(sim.run_dir, 3, {"recommender.name": "mf"})
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["edited"]  # nothing left behind


def test_an_llm_branch_killed_after_its_ledger_flush_resumes_to_the_uninterrupted_ledger(openai_server, tmp_path):
    server = openai_server()
    parent = parent_run(tmp_path, llm_scenario(server.url))
    whole = branch_run(parent, 3, {"recommender.name": "mf"}, run_id="b", out_dir=tmp_path / "whole")
    out = tmp_path / "killed"  # its own response cache: round 4's answers are paid for again
    killed = subprocess.run([sys.executable, "-c", KILL, "after:ledger_flush", "4", str(parent), str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    calls = server.count
    result = CliRunner().invoke(app, ["resume", str(out / "b")])
    assert result.exit_code == 0, result.output
    assert server.count == calls  # round 4's answers were paid before the kill: the resume asks nothing
    assert comparable(read_events(out / "b")).equals(comparable(read_events(whole)))
    a, b = (read_ledger(d).drop("latency_s", "call_id").sort("round", "agent_id", "purpose", "prompt_tokens")
            for d in (whole, out / "b"))  # concurrent calls take call ids in the order they start
    assert b.equals(a) and not after(b, 3)["cached"].any() and after(b, 3).height > 0
    assert read_summary(out / "b")["llm"] == read_summary(whole)["llm"]


def test_a_run_decided_in_worker_processes_replays_in_this_process_and_branches(tmp_path):
    parent = parent_run(tmp_path, RULE + "execution: {backend: processes, workers: 2}\n")
    branch = branch_run(parent, 3, {"recommender.name": "mf", "execution.backend": "local"})
    assert upto(read_events(branch), 3).drop("run_id").equals(upto(read_events(parent), 3).drop("run_id"))
    assert read_summary(branch)["rounds_done"] == 6
