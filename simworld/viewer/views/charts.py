"""Per-round charts of every metric the run records (plus LLM tokens), and item popularity."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from simworld.viewer.data import metric_columns, popularity, token_frame
from simworld.viewer.registry import View
from simworld.viewer.ui import PALETTE, ViewContext, label, plot, style

# shown first when present; any other numeric column follows in file order
PREFERRED = ["watches", "mean_rating", "ctr", "coverage", "exposure_gini", "genre_entropy",
             "intra_list_diversity", "novelty", "popularity_bias", "active_agents", "wall_s"]
PER_ROW = 3


def ordered(columns: list[str]) -> list[str]:
    return [c for c in PREFERRED if c in columns] + [c for c in columns if c not in PREFERRED]


def metric_figure(frame: pl.DataFrame, column: str, color: str) -> go.Figure:
    fig = go.Figure(go.Scatter(x=frame["round"].to_list(), y=frame[column].to_list(), mode="lines+markers",
                               line=dict(color=color, width=2.4), marker=dict(size=6), name=label(column),
                               hovertemplate="round %{x}: %{y:.4g}<extra></extra>"))
    fig.update_xaxes(title=None, dtick=1 if frame.height <= 20 else None)
    return style(fig, height=220, title=label(column))


def render(ctx: ViewContext) -> None:
    metrics = ctx.data.metrics
    if metrics.is_empty():
        st.info("Charts appear when the first round finishes.")
        return
    frames: list[tuple[pl.DataFrame, str]] = [(metrics, c) for c in ordered(metric_columns(metrics))]
    tokens = token_frame(ctx.data.events)
    frames += [(tokens, c) for c in tokens.columns if c != "round" and tokens[c].sum() > 0] if not tokens.is_empty() else []
    st.caption(f"{len(frames)} per-round series · {metrics.height} round(s) recorded · "
               "every numeric column of metrics.parquet is plotted")
    for start in range(0, len(frames), PER_ROW):
        cols = st.columns(PER_ROW)
        for i, (frame, column) in enumerate(frames[start:start + PER_ROW]):
            with cols[i]:
                plot(metric_figure(frame, column, PALETTE[(start + i) % len(PALETTE)]), key=f"chart_{column}")

    st.subheader("Item popularity over time")
    top = st.slider("Top items", 3, 20, 8, key="pop_top")
    pop = popularity(ctx.data.events, top=top)
    if pop.is_empty():
        st.caption("No watches yet.")
        return
    cumulative = st.toggle("Cumulative watches", value=True, key="pop_cumulative")
    y = "cumulative" if cumulative else "watches"
    fig = go.Figure()
    for i, (item_id,) in enumerate(pop.select("item_id").unique(maintain_order=True).iter_rows()):
        part = pop.filter(pl.col("item_id") == item_id)
        fig.add_trace(go.Scatter(x=part["round"].to_list(), y=part[y].to_list(), mode="lines+markers",
                                 name=ctx.title(item_id), line=dict(width=2, color=PALETTE[i % len(PALETTE)]),
                                 hovertemplate="%{fullData.name}<br>round %{x}: %{y}<extra></extra>"))
    fig.update_xaxes(title="round", dtick=1 if pop["round"].n_unique() <= 20 else None)
    fig.update_yaxes(title="watches (cumulative)" if cumulative else "watches in the round")
    plot(style(fig, height=380, legend=True), key="chart_popularity")


VIEW = View(key="charts", title="Metrics", icon="📈", render=render, order=20)
