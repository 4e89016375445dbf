"""The viewer's run controller and data layer, without Streamlit: threads, interventions, readers."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from simworld import recorder
from simworld.errors import ScenarioError
from simworld.viewer import data, scenarios
from simworld.viewer.session import FINISHED, PAUSED, STOPPED, RunController
from tests.helpers import viewer_scenario  # noqa: E402

SMALL = viewer_scenario("viewer-small", seed=7)


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "scenarios" / "small.yaml"
    path.parent.mkdir()
    path.write_text(SMALL)
    return path


def start(small: Path, tmp_path: Path, **kw) -> RunController:
    return RunController.start(small, out_dir=tmp_path / "runs", autoplay=False, **kw)


def test_step_then_play_to_the_end(small, tmp_path):
    ctl = start(small, tmp_path)
    try:
        assert ctl.status().state == PAUSED and ctl.status().rounds_done == 0
        assert ctl.step()
        st = ctl.wait(30)
        assert st.rounds_done == 1 and st.state == PAUSED and not st.busy
        ctl.play()
        st = ctl.wait(60)
        assert st.state == FINISHED and st.rounds_done == 5
        assert recorder.read_summary(ctl.run_dir)["status"] == "finished"
        assert (ctl.run_dir / "events.parquet").exists()  # the log is consolidated like Simulation.run()
        assert recorder.read_metrics(ctl.run_dir).height == 5
    finally:
        ctl.stop()


def test_pause_holds_rounds_and_stop_leaves_a_resumable_run(small, tmp_path):
    ctl = start(small, tmp_path, pace_s=0.3)
    ctl.play()
    ctl.wait(30, rounds=1)
    ctl.pause()
    held = ctl.wait(30)
    assert held.state == PAUSED
    import time

    time.sleep(0.6)
    assert ctl.status().rounds_done == held.rounds_done < 5
    ctl.stop()
    assert ctl.status().state == STOPPED
    assert recorder.read_summary(ctl.run_dir)["status"] == "stopped"
    again = RunController.resume(ctl.run_dir, autoplay=True)
    try:
        st = again.wait(60)
        assert st.state == FINISHED and st.rounds_done == 5
        rounds = recorder.read_events(ctl.run_dir)["round"].unique().sort().to_list()
        assert rounds == sorted(set(rounds)) and max(rounds) == 5
    finally:
        again.stop()


def test_persona_edit_takes_effect_next_round(small, tmp_path):
    ctl = start(small, tmp_path)
    try:
        ctl.step()
        ctl.wait(30)
        agent = sorted(ctl.world.users)[2]
        taste = {g: 0.0 for g in ctl.world.catalog.genres} | {"Horror": 1.0}
        assert ctl.edit_persona(agent, notes="Now only watches horror.", genre_taste=taste) == "applied"
        assert "horror" not in recorder.read_personas(ctl.run_dir).filter(
            pl.col("agent_id") == agent)["notes"][0].lower()
        ctl.step()
        ctl.wait(30)
        row = recorder.read_personas(ctl.run_dir).filter(pl.col("agent_id") == agent).row(0, named=True)
        assert row["notes"] == "Now only watches horror."
        assert row["top_genres"].startswith("Horror")
        assert ctl.world.users[agent].persona.notes == "Now only watches horror."
    finally:
        ctl.stop()


def test_edit_during_a_round_is_queued_until_it_ends(small, tmp_path):
    ctl = start(small, tmp_path)
    try:
        with ctl._lock:  # a round in progress holds the lock
            assert ctl.edit_persona(1, notes="queued edit") == "queued"
            assert ctl.status().queued == 1
            assert ctl.world.users[1].persona.notes == ""
        ctl.step()
        ctl.wait(30)
        assert ctl.world.users[1].persona.notes == "queued edit"
        assert ctl.status().queued == 0
    finally:
        ctl.stop()


def test_inject_an_ad_pins_the_item_atop_the_next_page(small, tmp_path):
    ctl = start(small, tmp_path)
    try:
        ids = sorted(ctl.world.users)
        item = int(ctl.world.catalog.ids[-1])
        assert ctl.inject(ids, "Sponsored: a forgotten classic", item_id=item) == "applied"
        assert "news: Sponsored: a forgotten classic" in list(ctl.world.users[ids[0]].state.recent)
        ctl.step()
        ctl.wait(30)
        ev = recorder.read_events(ctl.run_dir)
        first_pages = ev.filter((pl.col("action") == "page") & (pl.col("text") == "page 1"))
        assert first_pages.height > 0
        assert all(items[0] == item for items in first_pages["items"].to_list())
    finally:
        ctl.stop()


def test_memories_fall_back_to_recent_events(small, tmp_path):
    ctl = start(small, tmp_path)
    try:
        ctl.inject([1], "hello")
        source, items = ctl.memories(1)  # this scenario has no memory store
        assert source.startswith("recent") and items[-1] == "news: hello"
    finally:
        ctl.stop()


def test_broken_yaml_gives_problems_not_a_traceback(tmp_path):
    with pytest.raises(ScenarioError) as err:
        scenarios.scenario_from_text("population: [1, 2\n", source="edited", base_dir=tmp_path)
    assert "not valid YAML" in err.value.problems[0]
    with pytest.raises(ScenarioError) as err:
        scenarios.scenario_from_text("population:\n  size: -3\n", source="edited", base_dir=tmp_path)
    assert any("population.size" in p for p in err.value.problems)


def test_edited_text_keeps_masked_secrets(small, tmp_path):
    original = SMALL
    masked = data.masked_yaml("llm:\n  api_key: sk-abcdefghijkl\n  model: x\n")
    assert "sk-abc" not in masked and data.HIDDEN in masked
    restored = data.unmask({"llm": {"api_key": data.HIDDEN, "model": "y"}},
                           {"llm": {"api_key": "sk-abcdefghijkl", "model": "x"}})
    assert restored == {"llm": {"api_key": "sk-abcdefghijkl", "model": "y"}}
    assert data.mask_secrets({"prompt_tokens": 3, "token": "abc", "nested": [{"password": "p"}]}) == {
        "prompt_tokens": 3, "token": data.HIDDEN, "nested": [{"password": data.HIDDEN}]}
    assert scenarios.scenario_from_text(original.replace("rounds: 5", "rounds: 2"), source="e",
                                        base_dir=tmp_path).rounds == 2


def test_scenario_files_lists_local_then_bundled(small, tmp_path):
    files = scenarios.scenario_files(tmp_path)
    assert files[0].label == "scenarios/small.yaml"
    assert any(f.path.name == "movies.yaml" for f in files)
    assert files[scenarios.default_index(files, "small")].name == "small"
    assert files[scenarios.default_index(files, None)].name == "movies"


def test_derived_frames(small, tmp_path):
    ctl = start(small, tmp_path)
    ctl.play()
    ctl.wait(60)
    ctl.stop()
    run = data.load_run(ctl.run_dir)
    assert {"watches", "mean_rating", "coverage"} <= set(data.metric_columns(run.metrics))
    assert "round" not in data.metric_columns(run.metrics)
    pop = data.popularity(run.events, top=5)
    assert pop["item_id"].n_unique() <= 5 and set(pop["round"].unique()) == set(run.events["round"].unique())
    mapped, ratio = data.taste_map(run.agents)
    assert mapped.height == run.agents.height == 20 * 6 and 0 < ratio.sum() <= 1.0 + 1e-9
    spread = data.spread_by_round(mapped)
    assert spread["round"].to_list() == list(range(6))
    assert data.token_frame(run.events).is_empty()  # a rule-only run has no tokens to chart


def test_registry_finds_every_view():
    from simworld.viewer.registry import discover

    keys = [v.key for v in discover()]
    assert keys[:6] == ["feed", "charts", "social", "map", "inspector", "compare"]
