"""Branch: start a new run from any completed round of this one with one setting changed (a
counterfactual from the same state), as `simworld branch RUN --round R --set KEY=VALUE` does.

Pick the round on the slider, the setting and its new value, press Branch: the branch's first
rounds are replayed from the run's response cache (no LLM call), then it runs live here."""

from __future__ import annotations

import streamlit as st

from simworld.branch import FIXED, setting_value
from simworld.config import load_scenario
from simworld.errors import SimworldError
from simworld.viewer import controls
from simworld.viewer.registry import View
from simworld.viewer.ui import ViewContext, round_slider

# The settings researchers branch on most; any other dotted key works through "other".
SETTINGS = ("recommender.name", "recommender.retrain_every", "recommender.page_size", "activity.probability",
            "activity.model", "policy.kind", "policy.llm_fraction", "llm.model", "llm.budget_tokens",
            controls.OTHER_SETTING)


def render(ctx: ViewContext) -> None:
    run_dir = ctx.data.run_dir
    done = ctx.data.rounds_done
    branch = ctx.data.summary.get("branch")
    if branch:
        st.caption(f"This run is a branch of {branch['parent_run_id']} after round {branch['round']} "
                   f"({', '.join(f'{k}={v}' for k, v in branch['settings'].items()) or 'no setting changed'}).")
    if done < 1:
        st.info("Branching starts from a completed round: let the run finish one and come back.")
        return
    try:
        scenario = load_scenario(run_dir / "scenario.yaml")
    except SimworldError as exc:
        st.error(f"This run's scenario cannot be read, so it cannot be branched: {exc}")
        return
    st.markdown("Start a **new run** that shares this run's rounds up to the one you pick and goes on from "
                "there with one setting changed. Those rounds are replayed from the response cache, with no "
                "LLM call; the new run opens here and runs live.")
    chosen = round_slider(list(range(done + 1)), "branch_round", "Branch after round (0 = from the start)")
    left, right = st.columns(2)
    key = left.selectbox("Setting", SETTINGS, key="branch_setting")
    if key == controls.OTHER_SETTING:
        key = left.text_input("Dotted key", key="branch_key", placeholder="e.g. memory.retrieval.k").strip()
    now = setting_value(scenario, key) if key else None
    right.text_input("New value", key="branch_value", placeholder=f"now: {now}" if now is not None else "",
                     help="Read as YAML: mf, 0.3, true, {factors: 8}")
    st.number_input("Rounds in all", min_value=1, max_value=100_000, value=None, step=1,
                    key="branch_rounds", placeholder=f"the scenario's ({scenario.rounds})")
    st.caption(f"Fixed for a branch, as a run cannot change them midway: {', '.join(FIXED)}.")
    st.button(f"🌿 Branch after round {chosen}", type="primary", key="branch_go", on_click=controls.branch,
              args=(run_dir,))


VIEW = View(key="branch", title="Branch", icon="🌿", render=render, order=60, live=False)
