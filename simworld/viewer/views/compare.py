"""Compare runs (or A/B variants): their metric curves overlaid on the same charts."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from simworld import runner
from simworld.formatting import cell
from simworld.viewer.data import metric_columns, token_frame
from simworld.viewer.registry import View
from simworld.viewer.ui import PALETTE, ViewContext, label, plot, run_data, style
from simworld.viewer.views.charts import ordered

DASHES = ["solid", "dash", "dot", "dashdot"]
SUMMARY_FIELDS = ["scenario", "status", "seed", "agents", "rounds_done", "recommender", "policy", "events",
                  "watches", "mean_rating", "prompt_tokens", "completion_tokens", "wall_s"]


def _runs(ctx: ViewContext) -> dict[str, Path]:
    found = {}
    folders = {Path(ctx.out_dir), ctx.data.run_dir.parent}
    for folder in folders:
        for row in runner.list_runs(folder):
            found[str(Path(row["path"]).resolve())] = row
    current = str(ctx.data.run_dir.resolve())
    ordered_rows = sorted(found.items(), key=lambda kv: (kv[0] != current, kv[1].get("run_id", "")))
    return {f"{row.get('run_id')} · {row.get('status')} · {row.get('rounds_done')}/{row.get('rounds_planned')} rounds":
            Path(path) for path, row in ordered_rows}


def render(ctx: ViewContext) -> None:
    runs = _runs(ctx)
    labels = list(runs)
    if len(labels) < 2:
        st.info("Comparing needs two runs in the runs folder; start another run (a different seed or "
                "recommender) and come back.")
    default = labels[:2]
    chosen = st.multiselect("Runs to compare (up to 4)", labels, default=default, max_selections=4,
                            key="compare_runs")
    if not chosen:
        return
    datas = [run_data(runs[c]) for c in chosen]
    frames = []
    for d in datas:
        m = d.metrics
        tokens = token_frame(d.events)
        if not tokens.is_empty() and not m.is_empty():
            m = m.join(tokens, on="round", how="left")
        frames.append(m)
    seen: list[str] = []
    for m in frames:
        seen += [c for c in metric_columns(m) if c not in seen]
    columns = ordered(seen)

    st.markdown("##### Runs")
    table = {"field": SUMMARY_FIELDS}
    for d in datas:
        table[d.name] = [cell(d.summary.get(f)) for f in SUMMARY_FIELDS]
    st.dataframe(pl.DataFrame(table), hide_index=True, key="compare_summary")

    if not columns:
        st.caption("No metrics recorded in these runs yet.")
        return
    picked = st.multiselect("Metrics", columns, default=columns, format_func=label, key="compare_metrics")
    per_row = 2
    for start in range(0, len(picked), per_row):
        cols = st.columns(per_row)
        for j, column in enumerate(picked[start:start + per_row]):
            fig = go.Figure()
            for i, (d, m) in enumerate(zip(datas, frames)):
                if m.is_empty() or column not in m.columns:
                    continue
                fig.add_trace(go.Scatter(x=m["round"].to_list(), y=m[column].to_list(), mode="lines+markers",
                                         name=d.name, line=dict(color=PALETTE[i], width=2.4, dash=DASHES[i % 4]),
                                         hovertemplate=f"{d.name}<br>round %{{x}}: %{{y:.4g}}<extra></extra>"))
            with cols[j]:
                plot(style(fig, height=280, title=label(column), legend=True), key=f"compare_{column}")


VIEW = View(key="compare", title="Compare runs", icon="⚖️", render=render, order=50, live=False)
