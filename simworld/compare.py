"""A/B runs: the same seeded population under several recommenders, side by side.

`compare(paths, out_dir)` takes scenario files (each is run) or finished run folders (read
as they are) and writes `report.html`: one plotly chart per metric with a line per variant,
and a table of each metric's last-round value and its mean over rounds. The page embeds
plotly.js, so it opens offline. Variants are named by their run folder.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
import polars as pl

from simworld.errors import SimworldError
from simworld.metrics import METRIC_KEYS
from simworld.recorder import read_metrics, read_summary

# the filter bubble first: what A/B studies of recommenders look at most
REPORT_METRICS = ("genre_entropy", "exposure_gini", "coverage", "ctr", "mean_rating", "intra_list_diversity",
                  "novelty", "popularity_bias", "watches")
COLORS = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2"]


@dataclass(frozen=True)
class Variant:
    name: str
    run_dir: Path
    recommender: str
    seed: int
    metrics: pl.DataFrame


def run_variants(paths: Sequence[Path], out_dir: Path, rounds: int | None = None,
                 on_start: Callable[[str], None] | None = None) -> list[Path]:
    """Run each scenario file (a run folder is taken as it is); return the run folders."""
    from simworld import runner

    folders = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            read_summary(path)  # a clear error when it is not a run folder
            folders.append(path)
            continue
        if on_start:
            on_start(str(path))
        folders.append(runner.run_scenario(path, out_dir=out_dir, rounds=rounds))
    return folders


def load_variants(run_dirs: Sequence[Path]) -> list[Variant]:
    summaries = [read_summary(run_dir) for run_dir in run_dirs]
    names = [s["scenario"] for s in summaries]
    if len(set(names)) < len(names):  # the same scenario twice (e.g. two seeds): use run ids
        names = [s["run_id"] for s in summaries]
    variants = [Variant(name=name, run_dir=Path(run_dir), recommender=str(summary.get("recommender")),
                        seed=int(summary.get("seed", -1)), metrics=read_metrics(run_dir))
                for name, run_dir, summary in zip(names, run_dirs, summaries)]
    if len(variants) < 2:
        raise SimworldError("compare needs at least two scenarios or run folders")
    return variants


def summary_table(variants: Sequence[Variant]) -> pl.DataFrame:
    """One row per variant and metric: the last round's value and the mean over rounds."""
    rows = []
    for v in variants:
        for metric in _metrics(variants):
            values = [x for x in v.metrics[metric].to_list() if x is not None and not math.isnan(x)]
            rows.append({"variant": v.name, "recommender": v.recommender, "metric": metric,
                         "last": values[-1] if values else math.nan,
                         "mean": sum(values) / len(values) if values else math.nan})
    return pl.DataFrame(rows)


def metric_figure(variants: Sequence[Variant], metric: str) -> go.Figure:
    fig = go.Figure()
    for k, v in enumerate(variants):
        fig.add_trace(go.Scatter(x=v.metrics["round"].to_list(), y=v.metrics[metric].to_list(), mode="lines+markers",
                                 name=f"{v.recommender} ({v.name})", line=dict(color=COLORS[k % len(COLORS)], width=2.4)))
    fig.update_layout(title=metric.replace("_", " "), height=320, margin=dict(l=40, r=20, t=50, b=40),
                      xaxis_title="round", template="plotly_white", legend=dict(orientation="h", y=-0.25))
    return fig


def write_report(variants: Sequence[Variant], path: Path) -> Path:
    seeds = {v.seed for v in variants}
    warning = ("" if len(seeds) == 1 else
               "<p><b>Note:</b> the variants have different seeds, so their populations differ.</p>")
    parts = [f"<h1>simworld A/B report</h1><p>{len(variants)} variants: "
             + ", ".join(html.escape(f"{v.recommender} ({v.name})") for v in variants) + f"</p>{warning}"]
    for k, metric in enumerate(_metrics(variants)):
        parts.append(metric_figure(variants, metric).to_html(full_html=False, include_plotlyjs=(k == 0)))
    table = summary_table(variants)
    wide = table.pivot(on="variant", index="metric", values="last")
    parts.append("<h2>Last round</h2>" + _html_table(wide))
    parts.append("<h2>Mean over rounds</h2>" + _html_table(table.pivot(on="variant", index="metric", values="mean")))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<!doctype html><html><head><meta charset='utf-8'><title>simworld A/B report</title></head>"
                    "<body style='font-family:sans-serif;max-width:1100px;margin:auto'>"
                    + "\n".join(parts) + "</body></html>", encoding="utf-8")
    return path


def compare(paths: Sequence[Path], out_dir: Path, rounds: int | None = None,
            on_start: Callable[[str], None] | None = None) -> tuple[Path, pl.DataFrame]:
    """Run (or read) the variants and write `out_dir/report.html`; return it and the table."""
    variants = load_variants(run_variants(paths, out_dir, rounds, on_start))
    report = write_report(variants, Path(out_dir) / "report.html")
    return report, summary_table(variants)


def _metrics(variants: Sequence[Variant]) -> list[str]:
    present = set.intersection(*(set(v.metrics.columns) for v in variants))
    return [m for m in REPORT_METRICS if m in present] + [m for m in METRIC_KEYS if m in present and m not in REPORT_METRICS]


def _html_table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_cell(x)}</td>" for x in row) + "</tr>" for row in frame.iter_rows())
    return f"<table border='1' cellpadding='4' style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>"


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))
