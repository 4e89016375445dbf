"""CRS dialogues: generate a few from a CRS scenario, list a generation's dialogues with their
outcome, metrics and knobs, filter them, and read one as a chat with the films proposed each turn.

Needs no simulation run (a standalone page): it reads CRS run folders (`crs_summary.json`) in
the runs folder, with the readers of `simworld.crs.generation`, as a notebook would.
"""

from __future__ import annotations

import html
from pathlib import Path

import polars as pl
import streamlit as st

from simworld.crs.generation import (
    Generation, SCENARIO_FILE, SUMMARY_FILE, list_crs_runs, read_crs_summary, read_dialogues,
)
from simworld.crs.metrics import metrics_frame
from simworld.crs.records import END_REASONS, Dialogue
from simworld.crs.text import render as with_titles
from simworld.errors import ScenarioError, SimworldError
from simworld.viewer import scenarios
from simworld.viewer.registry import View

RUN = "crs_run"  # session key of the CRS run on show
MAX_DIALOGUES = 200  # a generation started from the page stays small: it runs while the page waits


@st.cache_resource(max_entries=16, show_spinner=False)
def _dialogues_at(path: str, stamp: int) -> tuple[list[Dialogue], pl.DataFrame]:
    dialogues = read_dialogues(Path(path))
    return dialogues, metrics_frame(dialogues)


@st.cache_resource(max_entries=8, show_spinner=False)
def _catalog_at(path: str):
    from simworld.build import build_catalog
    from simworld.crs.config import load_crs_scenario

    try:
        return build_catalog(load_crs_scenario(Path(path) / SCENARIO_FILE))  # type: ignore[arg-type]
    except (SimworldError, OSError):
        return None  # titles fall back to @ids


def _stamp(run_dir: Path) -> int:
    path = run_dir / SUMMARY_FILE
    return path.stat().st_mtime_ns if path.exists() else 0


def _generate(out_dir: Path) -> None:
    files = scenarios.scenario_files(crs=True)
    with st.expander("Generate dialogues", expanded=not list_crs_runs(out_dir)):
        if not files:
            st.caption("No CRS scenario (a YAML file with a `crs:` section) in scenarios/.")
            return
        labels = [f.label for f in files]
        c1, c2, c3 = st.columns([3, 1, 1])
        c1.selectbox("CRS scenario", labels, key="crs_scenario")
        c2.number_input("Dialogues", min_value=1, max_value=MAX_DIALOGUES, value=10, step=1, key="crs_n")
        c3.number_input("Seed", min_value=0, value=None, step=1, key="crs_seed", placeholder="scenario's")
        if not st.button("▶ Generate", type="primary", key="crs_generate"):
            return
        path = next(f.path for f in files if f.label == st.session_state["crs_scenario"])
        bar = st.progress(0.0, text="starting…")
        try:
            gen = Generation.start(path, out_dir=out_dir, dialogues=int(st.session_state["crs_n"]),
                                   seed=st.session_state.get("crs_seed"))
        except ScenarioError as exc:
            st.error(f"**The scenario {exc.source} is not valid**\n\n" + "\n".join(f"- {p}" for p in exc.problems))
            return
        except SimworldError as exc:
            st.error(f"The generation could not start: {exc}")
            return
        done = [0]

        def tick(_d) -> None:
            done[0] += 1
            bar.progress(done[0] / gen.scenario.dialogues, text=f"{done[0]} / {gen.scenario.dialogues} dialogues")

        try:
            gen.run(on_dialogue=tick)
        except SimworldError as exc:
            st.error(f"The generation stopped: {exc} (resume it with `simworld crs resume {gen.run_dir}`)")
        finally:
            gen.close()
        st.session_state[RUN] = gen.run_id
        st.success(f"Generated {gen.dialogues_done} dialogues into {gen.run_dir}")


def _pills(summary: dict) -> None:
    metrics = summary.get("metrics") or {}

    def fmt(key: str) -> str:
        value = metrics.get(key)
        return f"{value:.2f}" if isinstance(value, float) else "–"

    pills = [summary.get("status", "?"),
             f"{summary.get('dialogues_done')} / {summary.get('dialogues_planned')} dialogues",
             f"{summary.get('seeker')} seekers · {summary.get('crs_name')} CRS ({summary.get('crs_model')})",
             f"success {fmt('success_rate')}", f"Recall@10 {fmt('recall@10')}",
             f"persuasiveness {fmt('persuasiveness')}"]
    if summary.get("dialogues_per_minute"):
        pills.append(f"{summary['dialogues_per_minute']:.0f} dialogues/min")
    st.markdown('<div class="sw-status">' + "".join(
        f'<span class="sw-pill{" " + html.escape(p) if p in ("finished", "failed", "running") else ""}">'
        f"{html.escape(str(p))}</span>" for p in pills) + "</div>", unsafe_allow_html=True)
    human = metrics.get("human_likeness")
    if human:
        rows = [{"measure": m, "simulated": r["simulated"], "human (ReDial)": r["human_mean"], "z": r["z"]}
                for m, r in human.items()]
        with st.expander("Human-likeness of the seekers (z against ReDial's human seekers)"):
            st.dataframe(pl.DataFrame(rows), hide_index=True, key="crs_human")


def _filtered(frame: pl.DataFrame) -> pl.DataFrame:
    c1, c2, c3 = st.columns([2, 1, 2])
    present = [r for r in END_REASONS if r in set(frame["end_reason"].to_list())]
    ends = c1.multiselect("End reason", present, default=present, key="crs_end")
    only_success = c2.toggle("Successes only", key="crs_success")
    knobs = [c for c in frame.columns if c.startswith("knob_")]
    knob = c3.selectbox("Filter by knob", ["(none)", *[k.removeprefix("knob_") for k in knobs]], key="crs_knob")
    out = frame.filter(pl.col("end_reason").is_in(ends))
    if only_success:
        out = out.filter(pl.col("success") == 1)
    if knob != "(none)":
        col = f"knob_{knob}"
        low, high = float(frame[col].min()), float(frame[col].max())
        if high > low:
            lo, hi = st.slider(f"{knob} between", low, high, (low, high), key=f"crs_range_{knob}")
            out = out.filter(pl.col(col).is_between(lo, hi))
        else:
            st.caption(f"Every seeker has {knob} = {low:g}.")
    return out


def _chat(d: Dialogue, catalog) -> None:
    def title(i: int) -> str:
        return catalog.get(i).label if catalog is not None and i in catalog else f"@{i}"

    constraints = [f"{c['kind']}: {title(int(c['value'])) if c['kind'] == 'similar_to' else c['value']}"
                   for c in d.constraints]
    with st.expander("Hidden need, knobs and persona"):
        st.markdown(f"**Targets:** {', '.join(title(i) for i in d.targets) or '–'}  \n"
                    f"**Constraints:** {', '.join(constraints) or '–'}  \n"
                    f"**Knobs:** {', '.join(f'{k} {v:.2f}' for k, v in d.knobs.items())}  \n"
                    f"**Persona:** {d.persona.get('description', '–') if d.persona else '–'}")
    for t in d.turns:
        seeker = t.role == "seeker"
        with st.chat_message("user" if seeker else "assistant", avatar="🧑" if seeker else "🤖"):
            st.markdown(with_titles(t.text, catalog).replace("$", "\\$"))
            if seeker:
                bits = [t.act]
                if t.disclosed:
                    bits.append("revealed " + ", ".join(t.disclosed))
                if t.satisfaction is not None:
                    bits.append(f"satisfaction {t.satisfaction:.2f}")
                if t.patience_left is not None:
                    bits.append(f"patience left {t.patience_left}")
                if t.leaks:
                    bits.append(f"{t.leaks} leak(s) removed")
                st.caption(" · ".join(bits))
            else:
                proposed = ", ".join(title(i) for i in t.recommended) or "nothing (a question)"
                ranked = ", ".join(title(i) for i in t.ranking[:5])
                st.caption(f"{t.act} · proposed: {proposed}" + (f" · ranked first: {ranked}" if ranked else ""))
    st.caption(f"Ended: **{d.end_reason}**" + (f" · accepted {title(d.accepted_item)}" if d.accepted_item else ""))


def render(ctx) -> None:
    out_dir = Path(ctx.out_dir)
    st.markdown("#### Conversational recommendation")
    _generate(out_dir)
    runs = sorted(list_crs_runs(out_dir), key=lambda r: r["run_id"], reverse=True)
    if not runs:
        st.info(f"No CRS runs in {out_dir}/ yet: generate some dialogues above, or run "
                "`simworld crs generate scenarios/crs_movies.yaml`.")
        return
    ids = [r["run_id"] for r in runs]
    if st.session_state.get(RUN) not in ids:
        st.session_state[RUN] = ids[0]
    run_id = st.selectbox("CRS run", ids, key=RUN)
    run_dir = Path(next(r["path"] for r in runs if r["run_id"] == run_id))
    summary = read_crs_summary(run_dir)
    _pills(summary)
    dialogues, frame = _dialogues_at(str(run_dir.resolve()), _stamp(run_dir))
    if not dialogues:
        st.caption("No dialogue committed yet.")
        return
    shown = _filtered(frame)
    columns = [c for c in ("index", "seeker_id", "end_reason", "turns", "recall@10", "persuasiveness", "leaks",
                           "utterance_length") if c in shown.columns]
    knob_columns = [c for c in shown.columns if c.startswith("knob_")]
    table = shown.select(columns + knob_columns).rename({c: c.removeprefix("knob_") for c in knob_columns})
    table = table.with_columns(pl.col(pl.Float64).round(2))
    st.dataframe(table, hide_index=True, key="crs_table", height=260)
    st.caption(f"{shown.height} of {frame.height} dialogues")
    if shown.is_empty():
        return
    by_index = {d.index: d for d in dialogues}
    index = st.selectbox("Dialogue", shown["index"].to_list(), key="crs_dialogue",
                         format_func=lambda i: f"#{i} · {by_index[i].end_reason} · {len(by_index[i].turns)} turns")
    _chat(by_index[index], _catalog_at(str(run_dir.resolve())))


VIEW = View(key="crs", title="CRS dialogues", icon="💬", render=render, order=70, live=False, standalone=True)
