"""The fidelity report as one HTML page with plotly charts (plotly.js embedded: it opens offline)."""

from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go
import polars as pl

from simworld.compare import COLORS, _html_table


def _layout(fig: go.Figure, title: str, **kw) -> go.Figure:
    fig.update_layout(title=title, height=340, margin={"l": 40, "r": 20, "t": 50, "b": 40}, template="plotly_white",
                      legend={"orientation": "h", "y": -0.25}, **kw)
    return fig


def alignment_figure(result, metric: str = "accuracy") -> go.Figure:
    """One bar per policy and 1:m protocol: `metric` (accuracy, precision, recall or f1)."""
    frame = pl.DataFrame(result.alignment)
    fig = go.Figure()
    for k, policy in enumerate(frame["policy"].unique(maintain_order=True).to_list()):
        part = frame.filter(pl.col("policy") == policy)
        fig.add_trace(go.Bar(x=[f"1:{m}" for m in part["m"]], y=part[metric], name=policy,
                             marker_color=COLORS[k % len(COLORS)]))
    name = "F1" if metric == "f1" else metric
    return _layout(fig, f"preference alignment: {name} per 1:m protocol", barmode="group", yaxis_range=[0, 1])


def rating_figure(result) -> go.Figure:
    frame = pl.DataFrame(result.ratings)
    fig = go.Figure(go.Bar(x=frame["predictor"], y=frame["rmse"], name="RMSE", marker_color=COLORS[0]))
    fig.add_trace(go.Bar(x=frame["predictor"], y=frame["mae"], name="MAE", marker_color=COLORS[1]))
    return _layout(fig, "rating prediction on held-out ratings (lower is better)", barmode="group")


def _pair_figure(sim: dict, real: dict, title: str) -> go.Figure:
    keys = sorted(set(sim) | set(real), key=lambda k: (float(k) if k.replace(".", "").isdigit() else 0, k))
    fig = go.Figure(go.Bar(x=keys, y=[real.get(k, 0) for k in keys], name="real (held-out)", marker_color=COLORS[0]))
    fig.add_trace(go.Bar(x=keys, y=[sim.get(k, 0) for k in keys], name="simulated", marker_color=COLORS[1]))
    return _layout(fig, title, barmode="group")


def write_report(result, path: Path) -> Path:
    figures = [alignment_figure(result), alignment_figure(result, "f1"), rating_figure(result)]
    real = result.realism
    if real:
        figures.append(_pair_figure(real["ratings"]["sim"], real["ratings"]["real"],
                                    f"rating histogram (total variation {real['ratings']['tvd']:.3f})"))
        figures.append(_pair_figure(real["genres"]["sim"], real["genres"]["real"],
                                    f"genre shares (total variation {real['genres']['tvd']:.3f})"))
    parts = [f"<h1>simworld fidelity report: {html.escape(result.scenario)}</h1>",
             f"<p>{result.users} MovieLens-grounded users; held-out part of each user's ratings in time.</p>"]
    for k, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(k == 0)))
    parts.append("<h2>Preference alignment</h2>" + _html_table(result.alignment_table()))
    parts.append("<h2>Rating prediction</h2>" + _html_table(result.ratings_table()))
    if real:
        rows = [{"measure": f"{section} {key}", "value": value} for section in ("activity", "long_tail")
                for key, value in real[section].items()]
        rows += [{"measure": f"{s} tvd", "value": real[s]["tvd"]} for s in ("genres", "ratings")]
        parts.append("<h2>Distributional realism</h2>" + _html_table(pl.DataFrame(rows)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<!doctype html><html><head><meta charset='utf-8'><title>simworld fidelity</title></head>"
                    "<body style='font-family:sans-serif;max-width:1100px;margin:auto'>" + "\n".join(parts)
                    + "</body></html>", encoding="utf-8")
    return path
