"""The sidebar: choose a scenario (file, edited YAML or upload) and drive the run; open past runs."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from simworld import runner
from simworld.errors import ScenarioError, SimworldError
from simworld.viewer import scenarios
from simworld.viewer.session import FINISHED, PAUSED, RUNNING, RunController

CONTROLLER = "controller"  # session_state key of this session's RunController
OPENED = "opened_run"  # session_state key of a run folder opened read-only
PROBLEMS = "start_problems"  # (title, [one line per problem]) to show on the page


def controller() -> RunController | None:
    return st.session_state.get(CONTROLLER)


def out_dir() -> Path:
    return Path(st.session_state.get("out_dir") or "runs")


def _set_problems(title: str, problems: list[str]) -> None:
    st.session_state[PROBLEMS] = (title, problems)


def _replace_controller(new: RunController | None) -> None:
    old = controller()
    if old is not None and old is not new:
        old.stop()
    st.session_state[CONTROLLER] = new


def _start() -> None:
    st.session_state.pop(PROBLEMS, None)
    files = scenarios.scenario_files()
    file = next((f for f in files if f.label == st.session_state.get("scenario_file")), None)
    upload = st.session_state.get("scenario_upload")
    uploaded = (upload.name, upload.getvalue()) if upload is not None else None
    edited = st.session_state.get("scenario_text") if st.session_state.get("scenario_edit") else None
    try:
        scenario = scenarios.resolve_choice(file, edited, uploaded)
        rounds = st.session_state.get("override_rounds") or None
        seed = st.session_state.get("override_seed")
        ctl = RunController.start(scenario, out_dir=out_dir(), rounds=rounds, seed=seed,
                                  pace_s=float(st.session_state.get("pace_s") or 0.0),
                                  autoplay=not st.session_state.get("start_paused", False))
    except ScenarioError as exc:
        _set_problems(f"The scenario {exc.source} is not valid", exc.problems)
        return
    except SimworldError as exc:
        _set_problems("The run could not start", [str(exc)])
        return
    _replace_controller(ctl)
    st.session_state.pop(OPENED, None)


def _open(path: Path, live: bool) -> None:
    st.session_state.pop(PROBLEMS, None)
    if live:
        try:
            ctl = RunController.resume(path, pace_s=float(st.session_state.get("pace_s") or 0.0))
        except SimworldError as exc:
            _set_problems(f"Cannot resume {path.name}", [str(exc)])
            return
        _replace_controller(ctl)
        st.session_state.pop(OPENED, None)
    else:
        st.session_state[OPENED] = str(path)  # a live run of this session keeps going meanwhile


def branch(run_dir: Path) -> None:
    """The Branch page's button: branch `run_dir` after the chosen round with the one changed
    setting, and show the branch as this session's live run."""
    from simworld.branch import parse_settings

    st.session_state.pop(PROBLEMS, None)
    key = st.session_state.get("branch_setting")
    if key == OTHER_SETTING:
        key = (st.session_state.get("branch_key") or "").strip()
    try:
        if not key:
            raise SimworldError("name the setting to change, e.g. recommender.name")
        settings = parse_settings([f"{key}={st.session_state.get('branch_value') or ''}"])
        ctl = RunController.branch(run_dir, int(st.session_state.get("branch_round") or 0), settings,
                                   rounds=st.session_state.get("branch_rounds") or None,
                                   pace_s=float(st.session_state.get("pace_s") or 0.0))
    except SimworldError as exc:
        _set_problems(f"Cannot branch {run_dir.name}", [str(exc)])
        return
    _replace_controller(ctl)
    st.session_state.pop(OPENED, None)


OTHER_SETTING = "other (type its dotted key)"


def _load_text() -> None:
    """Refill the editor when another scenario file is picked."""
    files = scenarios.scenario_files()
    file = next((f for f in files if f.label == st.session_state.get("scenario_file")), None)
    if file is not None:
        st.session_state["scenario_text"] = scenarios.read_masked(file.path)


def sidebar() -> None:
    with st.sidebar:
        st.markdown("## 🎬 simworld")
        st.caption("Simulated users on a recommender platform, live.")
        new_tab, open_tab = st.tabs(["New run", "Open run"])
        with new_tab:
            _new_run()
        with open_tab:
            _open_run()
        ctl = controller()
        if ctl is not None:
            st.divider()
            _run_buttons(ctl)


def _new_run() -> None:
    files = scenarios.scenario_files()
    labels = [f.label for f in files]
    if "scenario_file" not in st.session_state and labels:
        wanted = st.query_params.get("scenario")
        st.session_state["scenario_file"] = labels[scenarios.default_index(files, wanted)]
    st.selectbox("Scenario", labels, key="scenario_file", on_change=_load_text)
    if "scenario_text" not in st.session_state:
        _load_text()
    st.toggle("Edit the YAML", key="scenario_edit")
    if st.session_state.get("scenario_edit"):
        st.text_area("Scenario YAML", key="scenario_text", height=300,
                     help="Changes apply to this run only; the file is not modified. Secrets show as ••••.")
    with st.expander("Upload, overrides, output"):
        st.file_uploader("Or upload a scenario (.yaml)", type=["yaml", "yml"], key="scenario_upload")
        c1, c2 = st.columns(2)
        c1.number_input("Rounds", min_value=1, max_value=10_000, value=None, step=1, key="override_rounds",
                        placeholder="scenario's")
        c2.number_input("Seed", min_value=0, value=None, step=1, key="override_seed", placeholder="scenario's")
        st.session_state.setdefault("out_dir", st.query_params.get("out", "runs"))
        st.text_input("Runs folder", key="out_dir")
        st.slider("Pause between rounds (s)", 0.0, 3.0, 0.0, 0.25, key="pace_s",
                  help="Slow the run down to watch rounds arrive.")
        st.checkbox("Start paused (step round by round)", key="start_paused")
    st.button("▶ Start run", type="primary", on_click=_start, key="start", **_stretch())


def _open_run() -> None:
    runs = runner.list_runs(out_dir())
    if not runs:
        st.caption(f"No runs in {out_dir()}/ yet.")
        return
    runs = sorted(runs, key=lambda r: r.get("run_id", ""), reverse=True)
    by_label = {f"{r['run_id']} · {r.get('status')} · {r.get('rounds_done')}/{r.get('rounds_planned')}": r
                for r in runs}
    choice = st.selectbox("Run folder", list(by_label), key="open_choice")
    row = by_label[choice]
    c1, c2 = st.columns(2)
    c1.button("Open", key="open_run", on_click=_open, args=(Path(row["path"]), False), **_stretch())
    resumable = row.get("status") != "finished"
    c2.button("Resume", key="resume_run", on_click=_open, args=(Path(row["path"]), True), disabled=not resumable,
              help="Continue a stopped or interrupted run live" if resumable else "This run is finished",
              **_stretch())


def _run_buttons(ctl: RunController) -> None:
    status = ctl.status()
    st.markdown(f"**Live run** `{status.run_id}`")
    opened = st.session_state.get(OPENED)
    if opened and Path(opened).resolve() != ctl.run_dir.resolve():
        st.button("↩ Show the live run", key="show_live", on_click=lambda: st.session_state.pop(OPENED, None),
                  **_stretch())
    # two buttons a row: three in the sidebar's width cut their labels to "Re…" and "S…"
    c1, c2 = st.columns(2)
    if status.state == RUNNING:
        c1.button("⏸ Pause", key="pause", on_click=ctl.pause, **_stretch())
    else:
        c1.button("▶ Resume", key="resume", on_click=ctl.play, disabled=status.state != PAUSED, **_stretch())
    c2.button("⏭ Step", key="step", on_click=ctl.step, help="Run one round",
              disabled=status.state != PAUSED or status.busy, **_stretch())
    st.button("⏹ Stop", key="stop", on_click=ctl.stop, disabled=status.state not in (RUNNING, PAUSED),
              **_stretch())
    if status.state == FINISHED:
        st.caption("Finished: every round is in the run folder.")


def _stretch() -> dict:
    import inspect

    return {"width": "stretch"} if "width" in inspect.signature(st.button).parameters else {"use_container_width": True}
