"""The round as an open schedule: stage order, plug-in stages at their place, timings."""

from __future__ import annotations

import pytest

from simworld import runner
from simworld.errors import ScenarioError, SimworldError
from simworld.recorder import read_checkpoint, read_events
from simworld.stages import FunctionStage, Round, Schedule, default_stages
from tests.helpers import write_scenario

BUILT_IN = ["activate", "recommend", "recall", "observe", "decide", "apply", "remember", "reflect", "forget", "learn"]

SCENARIO = """
name: staged
seed: 3
rounds: 3
population: {{size: 15}}
activity: {{model: constant, probability: 0.8}}
recommender: {{name: popularity, page_size: 5, max_pages: 2}}
policy: rule
stages: {stages}
"""


def test_built_in_stages_run_in_order():
    order = []
    schedule = Schedule(FunctionStage(s.name, lambda w, r, n=s.name: order.append(n)) for s in default_stages())
    schedule.run(None, Round(number=1, events=None))
    assert order == BUILT_IN == schedule.names


def test_insert_before_after_and_errors():
    schedule = Schedule(default_stages())
    schedule.insert(FunctionStage("chat", lambda w, r: None), after="apply")
    schedule.insert(FunctionStage("audit", lambda w, r: None), before="activate")
    schedule.insert(FunctionStage("last", lambda w, r: None))
    names = schedule.names
    assert names.index("chat") == names.index("apply") + 1
    assert names[0] == "audit" and names[-1] == "last"
    with pytest.raises(ValueError, match="already has"):
        schedule.insert(FunctionStage("chat", lambda w, r: None))
    with pytest.raises(KeyError, match="no stage 'nope'"):
        schedule.insert(FunctionStage("x", lambda w, r: None), after="nope")


def test_plugin_stage_from_the_scenario_runs_at_its_place(tmp_path):
    stages = '[{path: "tests.plugins.stages:make", after: apply, params: {label: after_apply}}]'
    path = write_scenario(tmp_path, SCENARIO.format(stages=stages))
    sim = runner.start(path, out_dir=tmp_path / "runs", run_id="r")
    try:
        assert sim.world.schedule.names.index("after_apply") == BUILT_IN.index("apply") + 1
        sim.run()
        counts = sim.world.schedule["after_apply"].seen
    finally:
        sim.close()
    events = read_events(sim.run_dir)
    notes = events.filter(events["action"] == "stage_note")
    assert notes.height == 3
    # it ran after apply: each note counts exactly the watch rows of its round written before it
    for rnd, count in zip(range(1, 4), counts):
        watches = events.filter((events["round"] == rnd) & (events["action"] == "watch")).height
        assert count == watches
    assert sum(counts) > 0
    # the stage's state is in the checkpoint, and its time in timings.parquet
    state = read_checkpoint(sim.run_dir, catalog=sim.world.catalog, **{k: v for k, v in sim.world.shared_objects().items() if k != "catalog"})
    assert state["stages"]["after_apply"]["seen"] == counts
    import polars as pl

    timings = pl.read_parquet(sim.run_dir / "timings.parquet")
    assert set(timings["stage"]) == {*BUILT_IN, "after_apply", "record"}
    assert timings.filter(pl.col("stage") == "decide")["round"].to_list() == [1, 2, 3]


def test_plugin_stage_errors_are_clear(tmp_path):
    bad_anchor = '[{path: "tests.plugins.stages:make", after: nowhere}]'
    with pytest.raises(SimworldError, match="no stage 'nowhere'"):
        runner.start(write_scenario(tmp_path, SCENARIO.format(stages=bad_anchor), "a.yaml"), out_dir=tmp_path / "a")
    assert not any((tmp_path / "a").iterdir())  # no run folder left behind
    missing = '[{path: "tests.plugins.nothing:make"}]'
    with pytest.raises(SimworldError, match="cannot be imported"):
        runner.start(write_scenario(tmp_path, SCENARIO.format(stages=missing), "b.yaml"), out_dir=tmp_path / "b")
    both = '[{path: "tests.plugins.stages:make", before: learn, after: apply}]'
    with pytest.raises(ScenarioError):
        runner.start(write_scenario(tmp_path, SCENARIO.format(stages=both), "c.yaml"), out_dir=tmp_path / "c")
