"""Population map: agents placed by the first two principal components of their taste vectors.

Coloured by dominant genre, sized by activity; the round slider walks through agents.parquet
so a filter bubble shows as the cloud tightening and one colour taking over."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import polars as pl
import streamlit as st

from simworld.viewer.data import spread_by_round, taste_map
from simworld.viewer.registry import View
from simworld.viewer.ui import PALETTE, ViewContext, plot, round_slider, style


@st.cache_data(max_entries=16, show_spinner=False)
def _mapped(path: str, key: tuple, _agents: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray, pl.DataFrame]:
    mapped, ratio = taste_map(_agents)
    return mapped, ratio, spread_by_round(mapped)


def render(ctx: ViewContext) -> None:
    agents = ctx.data.agents
    if agents.is_empty() or "taste" not in agents.columns:
        st.info("The population map needs agents.parquet (written when the run starts).")
        return
    mapped, ratio, spread = _mapped(str(ctx.data.run_dir), (ctx.data.rounds_done, agents.height), agents)
    rounds = sorted(mapped["round"].unique().to_list())
    genres = sorted(mapped["dominant_genre"].unique().to_list())
    colours = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(genres)}

    left, right = st.columns([3, 2])
    with left:
        chosen = round_slider(rounds, "map_round", "Round (0 = before the first round)")
        part = mapped.filter(pl.col("round") == chosen)
        if ctx.names:
            part = part.with_columns(pl.col("agent_id").replace_strict(ctx.names, default="", return_dtype=pl.String)
                                     .alias("name"))
        else:
            part = part.with_columns(pl.lit("").alias("name"))
        pad = 0.05 * max(float(np.ptp(mapped["x"].to_numpy())), float(np.ptp(mapped["y"].to_numpy())), 1e-6)
        xr = [float(mapped["x"].min()) - pad, float(mapped["x"].max()) + pad]
        yr = [float(mapped["y"].min()) - pad, float(mapped["y"].max()) + pad]
        size_basis = part["watched"].to_numpy().astype(float) if "watched" in part.columns else np.ones(part.height)
        top = max(float(mapped["watched"].max() or 1), 1.0) if "watched" in mapped.columns else 1.0
        sizes = 7 + 23 * np.sqrt(size_basis / top)
        fig = go.Figure()
        for g in genres:
            mask = (part["dominant_genre"] == g).to_numpy()
            if not mask.any():
                continue
            sub = part.filter(pl.Series(mask))
            fig.add_trace(go.Scatter(
                x=sub["x"].to_list(), y=sub["y"].to_list(), mode="markers", name=f"{g} ({int(mask.sum())})",
                marker=dict(size=sizes[mask], color=colours[g], opacity=0.8, line=dict(width=0.6, color="white")),
                customdata=np.stack([sub["agent_id"].to_numpy(), sub["watched"].to_numpy(),
                                     sub["rounds_active"].to_numpy()], axis=1) if sub.height else None,
                text=sub["name"].to_list(),
                hovertemplate=(f"<b>%{{text}}</b> (agent %{{customdata[0]}})<br>dominant: {g}<br>"
                               "watched %{customdata[1]} · active %{customdata[2]} rounds<extra></extra>")))
        fig.update_xaxes(range=xr, title=f"PC1 ({ratio[0]:.0%} of variance)", showticklabels=False)
        fig.update_yaxes(range=yr, title=f"PC2 ({ratio[1]:.0%} of variance)", showticklabels=False)
        plot(style(fig, height=520, legend=True, title=f"Taste map · round {chosen}"), key="map_scatter")
        st.caption("Each dot is an agent, placed by PCA of its genre-taste vector (axes fitted over all rounds, "
                   "so movement is real); colour: dominant genre; size: films watched so far.")

    with right:
        if not spread.is_empty():
            fig = go.Figure(go.Scatter(x=spread["round"].to_list(), y=spread["taste_spread"].to_list(),
                                       mode="lines+markers", line=dict(color="#4C78A8", width=2.4),
                                       hovertemplate="round %{x}: %{y:.3f}<extra></extra>"))
            fig.add_vline(x=chosen, line=dict(color="#E45756", dash="dot"))
            plot(style(fig, height=230, title="Taste spread (mean distance to centroid)"), key="map_spread")
        shares = (mapped.group_by("round", "dominant_genre").len().sort("round"))
        fig = go.Figure()
        for g in genres:
            s = shares.filter(pl.col("dominant_genre") == g)
            full = pl.DataFrame({"round": rounds}).join(s, on="round", how="left").with_columns(pl.col("len").fill_null(0))
            fig.add_trace(go.Scatter(x=full["round"].to_list(), y=full["len"].to_list(), name=g, stackgroup="one",
                                     mode="lines", line=dict(width=0.5, color=colours[g]),
                                     hovertemplate=f"{g}: %{{y}}<extra></extra>"))
        fig.add_vline(x=chosen, line=dict(color="#333", dash="dot"))
        plot(style(fig, height=270, title="Agents by dominant genre"), key="map_genres")


VIEW = View(key="map", title="Population map", icon="🗺️", render=render, order=30)
