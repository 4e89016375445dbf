"""app.py under Streamlit's AppTest: start, step, pause, inspect, edit, inject, broken YAML, interview, branch."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from streamlit.testing.v1 import AppTest

from simworld import recorder, runner
from simworld.viewer.session import FINISHED, PAUSED, RUNNING
from tests.helpers import viewer_scenario

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SMALL = viewer_scenario("apptest-small", seed=5)
SOCIAL = viewer_scenario("apptest-social", seed=6, social=True)


@pytest.fixture
def app(tmp_path, monkeypatch):
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "small.yaml").write_text(SMALL)
    (tmp_path / "scenarios" / "social.yaml").write_text(SOCIAL)
    monkeypatch.chdir(tmp_path)  # the page lists ./scenarios and writes to ./runs
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="scenario_file").set_value("scenarios/small.yaml").run()
    yield at
    ctl = at.session_state["controller"] if "controller" in at.session_state else None
    if ctl is not None:
        ctl.stop()


def controller(at):
    return at.session_state["controller"]


def texts(at) -> str:
    return "\n".join(m.value for m in at.markdown) + "\n".join(c.value for c in at.caption)


def start(at, paused: bool = False):
    if paused:
        at.checkbox(key="start_paused").check()
    at.button(key="start").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return controller(at)


def test_welcome_page_lists_scenarios(app):
    assert "simworld live viewer" in [t.value for t in app.title]
    assert app.selectbox(key="scenario_file").options[0] == "scenarios/small.yaml"


CRS_SMALL = """
name: crs-small
seed: 3
dialogues: 12
population: {size: 12}
seeker: {knobs: {patience: {dist: choice, values: [3, 8]}}}
crs: {kind: retrieval}
generation: {batch_size: 6}
"""


def crs_table(at):
    return next(d.value for d in at.dataframe if "end_reason" in d.value.columns)


def write_crs(tmp_path):
    path = tmp_path / "scenarios" / "crs.yaml"
    path.write_text(CRS_SMALL)
    return path


def test_crs_page_generates_lists_filters_and_shows_a_dialogue(app, tmp_path):
    write_crs(tmp_path)
    app.run()
    assert "scenarios/crs.yaml" not in app.selectbox(key="scenario_file").options  # not a simulation
    app.button_group(key="view").set_value("crs").run()  # no simulation run needed
    assert not app.exception, app.exception
    app.selectbox(key="crs_scenario").set_value("scenarios/crs.yaml")
    app.number_input(key="crs_n").set_value(10)
    app.button(key="crs_generate").click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    assert any("Generated 10 dialogues" in s.value for s in app.success)
    assert len(list((tmp_path / "runs").glob("crs-small-*/dialogues.parquet"))) == 1
    table = crs_table(app)
    assert len(table) == 10 and {"end_reason", "recall@10", "patience"} <= set(table.columns)
    app.multiselect(key="crs_end").set_value(["gave_up"]).run()
    assert set(crs_table(app)["end_reason"]) <= {"gave_up"}
    app.multiselect(key="crs_end").set_value(["accepted", "gave_up", "max_turns"]).run()
    app.selectbox(key="crs_knob").set_value("patience").run()
    app.slider(key="crs_range_patience").set_value((5.0, 8.0)).run()
    patient = crs_table(app)
    assert 0 < len(patient) < 10 and set(patient["patience"]) == {8.0}
    first = int(patient["index"].iloc[0])
    app.selectbox(key="crs_dialogue").set_value(first).run()
    assert not app.exception, app.exception
    chat = app.chat_message
    assert len(chat) >= 3 and chat[0].name == "user" and chat[1].name == "assistant"
    captions = " ".join(c.value for c in app.caption)
    assert "patience left" in captions and "proposed:" in captions and "Ended:" in captions


def test_crs_page_beside_an_open_simulation_run(app, tmp_path):
    from simworld.crs.generation import generate

    generate(write_crs(tmp_path), out_dir=tmp_path / "runs", run_id="crs-one", dialogues=4)
    runner.run_scenario(tmp_path / "scenarios" / "small.yaml", out_dir=tmp_path / "runs")
    app.run()
    assert all("crs-one" not in o for o in app.selectbox(key="open_choice").options)  # not a simulation run
    app.button(key="open_run").click().run()
    app.button_group(key="view").set_value("crs").run()
    assert not app.exception, app.exception
    assert len(crs_table(app)) == 4


def test_start_runs_to_the_end_and_shows_every_view(app):
    ctl = start(app)
    assert ctl.wait(60).state == FINISHED
    app.run()
    assert not app.exception, app.exception
    assert "finished" in texts(app)
    for key in ("feed", "charts", "social", "map", "inspector", "compare"):
        app.button_group(key="view").set_value(key).run()
        assert not app.exception, (key, app.exception)
    events = recorder.read_events(ctl.run_dir)
    assert events.filter(pl.col("action") == "watch").height > 0


def test_step_pause_resume(app):
    ctl = start(app, paused=True)
    assert ctl.status().state == PAUSED and ctl.status().rounds_done == 0
    app.button(key="step").click().run()
    ctl.wait(30)
    app.run()
    assert ctl.status().rounds_done == 1 and ctl.status().state == PAUSED
    ctl.pace_s = 0.4
    app.button(key="resume").click().run()
    assert ctl.status().state == RUNNING
    ctl.wait(30, rounds=2)
    app.run()
    app.button(key="pause").click().run()
    held = ctl.wait(30)
    assert held.state == PAUSED and held.rounds_done < 5
    app.button(key="stop").click().run()
    assert recorder.read_summary(ctl.run_dir)["status"] == "stopped"


def test_inspect_edit_persona_takes_effect_next_round(app):
    ctl = start(app, paused=True)
    app.button(key="step").click().run()
    ctl.wait(30)
    app.run()
    app.button_group(key="view").set_value("inspector").run()
    agent = sorted(ctl.world.users)[3]
    app.selectbox(key="inspect_agent").set_value(agent).run()
    assert not app.exception, app.exception
    name = ctl.world.users[agent].persona.name
    assert any(name in m.value for m in app.markdown)
    app.text_area(key=f"edit_notes_{agent}").input("Has just discovered film noir.")
    app.slider(key=f"edit_diversity_{agent}").set_value(0.95)
    submit = next(b for b in app.button if b.label == "Save persona")
    submit.click().run()
    assert not app.exception, app.exception
    assert any("takes effect from round 2" in s.value for s in app.success)
    before = recorder.read_personas(ctl.run_dir).filter(pl.col("agent_id") == agent).row(0, named=True)
    assert before["notes"] == ""  # the file changes with the round the edit affects
    app.button(key="step").click().run()
    ctl.wait(30)
    after = recorder.read_personas(ctl.run_dir).filter(pl.col("agent_id") == agent).row(0, named=True)
    assert after["notes"] == "Has just discovered film noir."
    assert after["diversity"] == pytest.approx(0.95)


def test_inject_news_and_ad(app):
    ctl = start(app, paused=True)
    app.button_group(key="view").set_value("inspector").run()
    app.checkbox(key="inject_all").check()
    app.radio(key="inject_kind").set_value("Ad for a film")
    item = int(ctl.world.catalog.ids[0])
    app.selectbox(key="inject_item").set_value(item)
    app.text_input(key="inject_text").input("Now streaming!")
    next(b for b in app.button if b.label == "Inject").click().run()
    assert not app.exception, app.exception
    assert any("they see it in round 1" in s.value for s in app.success)
    app.button(key="step").click().run()
    ctl.wait(30)
    ev = recorder.read_events(ctl.run_dir)
    first = ev.filter((pl.col("action") == "page") & (pl.col("text") == "page 1"))
    assert first.height and all(items[0] == item for items in first["items"].to_list())


def test_broken_yaml_shows_the_problems(app):
    app.toggle(key="scenario_edit").set_value(True).run()
    app.text_area(key="scenario_text").input("name: broken\npopulation:\n  size: -3\nrounds: zero\n").run()
    app.button(key="start").click().run()
    assert not app.exception, app.exception
    message = " ".join(e.value for e in app.error)
    assert "population.size" in message and "rounds" in message
    assert "Traceback" not in message
    assert "controller" not in app.session_state or app.session_state["controller"] is None
    app.text_area(key="scenario_text").input("population: [1, 2\n").run()
    app.button(key="start").click().run()
    assert "not valid YAML" in " ".join(e.value for e in app.error)


def test_open_a_finished_run(app, tmp_path):
    folder = runner.run_scenario(tmp_path / "scenarios" / "small.yaml", out_dir=tmp_path / "runs")
    app.run()
    app.button(key="open_run").click().run()
    assert not app.exception, app.exception
    assert folder.name in texts(app)
    for key in ("feed", "charts", "social", "map", "inspector", "compare"):
        app.button_group(key="view").set_value(key).run()
        assert not app.exception, (key, app.exception)


def test_interview_does_not_write_memory_unless_ticked(app):
    ctl = start(app, paused=True)
    app.button(key="step").click().run()
    ctl.wait(30)
    app.button_group(key="view").set_value("inspector").run()
    agent = sorted(ctl.world.users)[0]
    app.selectbox(key="inspect_agent").set_value(agent).run()
    before = ctl.memories(agent)[1]
    app.text_input(key=f"interview_q_{agent}").input("What did you watch last?")
    next(b for b in app.button if b.label == "Ask").click().run()
    assert not app.exception, app.exception
    assert ctl.memories(agent)[1] == before
    app.text_input(key=f"interview_q_{agent}").input("Remember: your friend recommends Alien.")
    app.checkbox(key=f"interview_remember_{agent}").check()
    next(b for b in app.button if b.label == "Ask").click().run()
    assert ctl.memories(agent)[1] != before


def test_social_run_shows_graph_cascades_chats_and_friends(app):
    app.selectbox(key="scenario_file").set_value("scenarios/social.yaml").run()
    ctl = start(app)
    assert ctl.wait(60).state == FINISHED
    app.run()
    assert not app.exception, app.exception
    feed = texts(app)
    assert "chatted with" in feed and "sw-say" in feed  # chats in the live feed
    app.button_group(key="view").set_value("social").run()
    assert not app.exception, app.exception
    assert any("sw-chat" in m.value for m in app.markdown)  # chat transcripts
    assert any("friendships" in c.value for c in app.caption)  # under the network picture
    assert app.selectbox(key="social_cascade_item").options  # cascades of the top films
    app.select_slider(key="social_round").set_value(0).run()  # the starting graph
    assert not app.exception, app.exception
    app.button_group(key="view").set_value("inspector").run()
    talker = recorder.read_events(ctl.run_dir).filter(pl.col("action") == "chat")["agent_id"][0]
    app.selectbox(key="inspect_agent").set_value(talker).run()
    assert not app.exception, app.exception
    shown = texts(app)
    assert "Friends (" in shown and "sw-chat" in shown


def open_finished_run(app, tmp_path):
    parent = runner.run_scenario(tmp_path / "scenarios" / "small.yaml", out_dir=tmp_path / "runs", run_id="parent")
    app.run()
    app.button(key="open_run").click().run()
    app.button_group(key="view").set_value("branch").run()
    assert not app.exception, app.exception
    return parent


def test_branch_from_the_round_slider_opens_the_new_run(app, tmp_path):
    parent = open_finished_run(app, tmp_path)
    app.select_slider(key="branch_round").set_value(2).run()
    app.selectbox(key="branch_setting").set_value("recommender.name").run()
    assert "now: popularity" in app.text_input(key="branch_value").placeholder
    app.text_input(key="branch_value").input("mf").run()
    app.button(key="branch_go").click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    ctl = controller(app)
    assert ctl.run_dir == tmp_path / "runs" / "parent-branch-r2"  # the branch is the run on show, live
    assert ctl.wait(60).state == FINISHED
    app.run()
    assert "branch of parent after round 2" in texts(app)
    summary = recorder.read_summary(ctl.run_dir)
    assert summary["recommender"] == "mf" and summary["branch"]["round"] == 2
    mine, theirs = recorder.read_events(ctl.run_dir), recorder.read_events(parent)
    assert mine.filter(pl.col("round") <= 2).drop("run_id").equals(theirs.filter(pl.col("round") <= 2).drop("run_id"))


def test_a_branch_with_a_bad_value_shows_one_problem_and_opens_nothing(app, tmp_path):
    open_finished_run(app, tmp_path)
    app.selectbox(key="branch_setting").set_value(app.selectbox(key="branch_setting").options[-1]).run()
    app.text_input(key="branch_key").input("population.size").run()
    app.text_input(key="branch_value").input("7").run()
    app.button(key="branch_go").click().run()
    assert not app.exception, app.exception
    message = " ".join(e.value for e in app.error)
    assert "population.size cannot change in a branch" in message and "Traceback" not in message
    assert "controller" not in app.session_state or app.session_state["controller"] is None
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["parent"]
