"""The page: sidebar run control, a live status bar, and the selected view.

While rounds are coming the status bar and the live views are Streamlit fragments that rerun
on a timer (`st.fragment(run_every=...)`); the simulation itself runs in the session's
background thread, so the page never waits for a round.
"""

from __future__ import annotations

import html
import inspect
from pathlib import Path

import streamlit as st

from simworld import runner
from simworld.errors import SimworldError
from simworld.viewer import controls
from simworld.viewer.registry import PageContext, View, discover
from simworld.viewer.session import RunController, Status
from simworld.viewer.ui import CSS, ViewContext, catalog_for, run_data

REFRESH_S = 1.0  # how often live parts of the page look for new rounds
WAS_LIVE = "_was_live"


def main() -> None:
    st.set_page_config(page_title="simworld viewer", page_icon="🎬", layout="wide",
                       initial_sidebar_state="expanded")
    st.markdown(CSS, unsafe_allow_html=True)
    controls.sidebar()
    _problems()
    run_dir, ctl = _target()
    if run_dir is None:
        _without_run()
        return
    status = ctl.status() if ctl is not None else None
    live = bool(status and status.live)
    st.session_state[WAS_LIVE] = live
    every = REFRESH_S if live else None
    st.fragment(_status_area, run_every=every)(run_dir)
    view = _nav(discover())
    if view.live:
        st.fragment(_view_area, run_every=every)(run_dir, view.key)
    else:
        _render_view(run_dir, view)


def _target() -> tuple[Path | None, RunController | None]:
    """The run folder on show, and this session's live controller when that is the run on show."""
    ctl = controls.controller()
    opened = st.session_state.get(controls.OPENED)
    if opened and (ctl is None or Path(opened).resolve() != ctl.run_dir.resolve()):
        return Path(opened), None
    if ctl is not None:
        return ctl.run_dir, ctl
    return None, None


def _problems() -> None:
    shown = st.session_state.get(controls.PROBLEMS)
    if not shown:
        return
    title, problems = shown
    lines = "\n".join(f"- {p}" for p in problems)
    st.error(f"**{title}**\n\n{lines}", icon="⚠️")


def _without_run() -> None:
    """No run open: the welcome page, and beside it the pages that need no run (the CRS page)."""
    home = View(key="home", title="Welcome", icon="🏠", render=lambda ctx: _welcome(), order=0, live=False)
    standalone = tuple(v for v in discover() if v.standalone)
    view = _nav((home, *standalone)) if standalone else home
    with st.container(key=f"view_{view.key}"):
        view.render(PageContext(out_dir=controls.out_dir()))


def _welcome() -> None:
    st.title("simworld live viewer")
    st.markdown(
        "Pick a scenario in the sidebar and press **Start run**: a population of simulated users "
        "browses, searches, watches and rates on a recommender platform, and this page follows them "
        "round by round. Or open a finished run from the **Open run** tab.\n\n"
        "Every number here is read from the run folder (`events`, `metrics.parquet`, `agents.parquet`, "
        "`personas.parquet`), so a notebook reading the same folder sees the same thing.")
    runs = runner.list_runs(controls.out_dir())
    if runs:
        st.markdown(f"##### Runs in `{controls.out_dir()}/`")
        rows = [{k: r.get(k) for k in ("run_id", "status", "rounds_done", "rounds_planned", "agents", "recommender",
                                       "watches", "mean_rating")} for r in sorted(runs, key=lambda r: r["run_id"],
                                                                                  reverse=True)]
        st.dataframe(rows, hide_index=True, key="welcome_runs")


def _nav(views: tuple[View, ...]) -> View:
    keys = [v.key for v in views]
    titles = {v.key: f"{v.icon} {v.title}".strip() for v in views}
    wanted = st.query_params.get("view")
    default = wanted if wanted in keys else keys[0]
    if st.session_state.get("view") not in (None, *keys):
        del st.session_state["view"]  # a page that no longer exists
    if "required" in inspect.signature(st.segmented_control).parameters:
        choice = st.segmented_control("View", keys, default=default, required=True, format_func=titles.get,
                                      key="view", label_visibility="collapsed")
    else:  # older Streamlit: a horizontal radio does the same job
        choice = st.radio("View", keys, index=keys.index(default), format_func=titles.get, horizontal=True,
                          key="view", label_visibility="collapsed")
    return next((v for v in views if v.key == choice), views[0])


def _status(run_dir: Path) -> Status | None:
    _, ctl = _target()
    return ctl.status() if ctl is not None else None


def _status_bar(run_dir: Path, status: Status | None) -> None:
    try:
        data = run_data(run_dir)
    except SimworldError as exc:
        st.error(str(exc))
        return
    s = data.summary
    state = status.state if status else s.get("status", "?")
    done = status.rounds_done if status else s.get("rounds_done", 0)
    planned = status.rounds_planned if status else s.get("rounds_planned", 0)
    busy = status is not None and status.busy
    pills = [f'<span class="sw-pill {html.escape(state)}">{html.escape(state)}</span>',
             f'<span class="sw-pill">round {done} / {planned}</span>',
             f'<span class="sw-pill">{s.get("agents", "?")} agents · {s.get("recommender", "?")} · '
             f'{s.get("policy", "?")} policy</span>',
             f'<span class="sw-pill">{s.get("watches", 0)} watches</span>']
    if s.get("branch"):
        pills.append(f'<span class="sw-pill">branch of {html.escape(str(s["branch"]["parent_run_id"]))} after round '
                     f'{int(s["branch"]["round"])}</span>')
    if s.get("mean_rating") is not None:
        pills.append(f'<span class="sw-pill">mean rating {s["mean_rating"]:.2f}</span>')
    if busy:
        pills.append(f'<span class="sw-pill running">computing round {done + 1}…</span>')
    if status and status.last_round_s is not None:
        pills.append(f'<span class="sw-pill">last round {status.last_round_s:.2f}s</span>')
    if status and status.queued:
        pills.append(f'<span class="sw-pill paused">{status.queued} intervention(s) queued</span>')
    st.markdown(f'<h3 style="margin:0 0 .2rem 0">{html.escape(data.name)}</h3>'
                f'<div class="sw-status">{"".join(pills)}</div>', unsafe_allow_html=True)
    if planned:
        st.progress(min(1.0, done / planned))
    if status and status.error:
        st.error(f"The run stopped: {status.error}")
        _, ctl = _target()
        if ctl is not None and ctl.traceback_text:
            with st.expander("Details"):
                st.code(ctl.traceback_text)


def _check_transition(status: Status | None) -> None:
    """When rounds stop coming (finished, paused, a step done), refresh the whole page once."""
    live = bool(status and status.live)
    if st.session_state.get(WAS_LIVE) and not live:
        st.session_state[WAS_LIVE] = False
        st.rerun()
    st.session_state[WAS_LIVE] = live


def _status_area(run_dir: Path) -> None:
    status = _status(run_dir)
    _status_bar(run_dir, status)
    _check_transition(status)


def _view_area(run_dir: Path, view_key: str) -> None:
    view = next(v for v in discover() if v.key == view_key)
    _render_view(run_dir, view)


def _render_view(run_dir: Path, view: View) -> None:
    _, ctl = _target()
    try:
        data = run_data(run_dir)
    except SimworldError as exc:
        st.error(str(exc))
        return
    catalog = ctl.world.catalog if ctl is not None else catalog_for(run_dir)
    ctx = ViewContext(data=data, controller=ctl, status=ctl.status() if ctl else None, catalog=catalog,
                      out_dir=controls.out_dir())
    with st.container(key=f"view_{view.key}"):
        view.render(ctx)
