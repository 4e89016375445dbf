"""Studies with error bars: every arm of an A/B comparison run over the same seeds.

`simworld compare A.yaml B.yaml --seeds N` runs each arm once per seed (the scenario's seed,
plus 1, 2, ... N-1), so arm A and arm B share each seed's population. The report charts each
metric's mean over seeds per round with a 95% t-interval band, and a table gives, for the
last round (or the mean of the last `window` rounds), each arm's difference from the first
arm: the mean of the per-seed differences, its 95% t-interval and a paired t-test's p-value.
One seed per arm can show a "difference" that is noise; paired seeds cannot hide it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl
from scipy import stats

from simworld.compare import COLORS, REPORT_METRICS, _html_table
from simworld.errors import SimworldError
from simworld.metrics import METRIC_KEYS
from simworld.recorder import read_metrics


@dataclass(frozen=True)
class Arm:
    name: str
    seeds: tuple[int, ...]
    runs: tuple[Path, ...]
    metrics: tuple[pl.DataFrame, ...]  # one per seed, in seed order


def run_arms(paths: Sequence[Path], seeds: int, out_dir: Path, rounds: int | None = None,
             on_start: Callable[[str], None] | None = None) -> list[Arm]:
    """Run every scenario file once per seed; the seeds are the first scenario's seed + 0..N-1."""
    from simworld import runner
    from simworld.config import load_scenario

    if seeds < 2:
        raise SimworldError("--seeds needs at least 2 seeds for an interval")
    scenarios = []
    for path in paths:
        if Path(path).is_dir():
            raise SimworldError(f"{path}: --seeds runs scenario files, not finished run folders")
        scenarios.append(load_scenario(path))
    base = scenarios[0].seed
    seed_list = tuple(base + k for k in range(seeds))
    names = [s.name for s in scenarios]
    seen: dict[str, int] = {}
    for k, n in enumerate(names):  # the same scenario name twice: the second is "name-2"
        seen[n] = seen.get(n, 0) + 1
        names[k] = n if seen[n] == 1 else f"{n}-{seen[n]}"
    arms = []
    for name, scenario in zip(names, scenarios):
        runs = []
        for seed in seed_list:
            if on_start:
                on_start(f"{name} seed {seed}")
            sim = runner.start(scenario.with_overrides(seed=seed, rounds=rounds), out_dir=out_dir,
                               run_id=f"{name}-s{seed}")
            try:
                sim.run()
            finally:
                sim.close()
            runs.append(sim.run_dir)
        arms.append(Arm(name, seed_list, tuple(runs), tuple(read_metrics(r) for r in runs)))
    return arms


def interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval of the mean (a zero-width one when all values agree)."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2 or float(x.std(ddof=1)) == 0.0:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """b - a per seed: mean difference, its 95% interval and the paired t-test's p-value
    (1.0 when every difference is the same number 0, 0.0 when it is the same nonzero number)."""
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    mean, low, high = interval(diff)
    if len(diff) < 2 or float(diff.std(ddof=1)) == 0.0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(stats.ttest_rel(b, a).pvalue)
    return {"difference": mean, "low": low, "high": high, "p": p}


def _metric_names(arms: Sequence[Arm]) -> list[str]:
    present = set.intersection(*(set(m.columns) for arm in arms for m in arm.metrics))
    return [m for m in REPORT_METRICS if m in present] + [m for m in METRIC_KEYS if m in present and m not in REPORT_METRICS]


def _window_value(metrics: pl.DataFrame, metric: str, window: int) -> float:
    values = [v for v in metrics[metric].to_list()[-window:] if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def difference_table(arms: Sequence[Arm], window: int = 1) -> pl.DataFrame:
    """Per metric and arm after the first: each arm's mean, and its paired difference from the first."""
    first = arms[0]
    rows = []
    for metric in _metric_names(arms):
        a = [_window_value(m, metric, window) for m in first.metrics]
        for arm in arms[1:]:
            b = [_window_value(m, metric, window) for m in arm.metrics]
            test = paired_test(a, b)
            rows.append({"metric": metric, "arm": arm.name, "baseline": first.name,
                         "baseline_mean": interval(a)[0], "arm_mean": interval(b)[0], **test,
                         "significant": bool(test["p"] < 0.05)})
    return pl.DataFrame(rows)


def band_figure(arms: Sequence[Arm], metric: str) -> go.Figure:
    fig = go.Figure()
    for k, arm in enumerate(arms):
        color = COLORS[k % len(COLORS)]
        rounds = arm.metrics[0]["round"].to_list()
        cols = [interval([m[metric][i] for m in arm.metrics]) for i in range(len(rounds))]
        mean, low, high = zip(*cols)
        fig.add_trace(go.Scatter(x=rounds + rounds[::-1], y=list(high) + list(low)[::-1], fill="toself",
                                 fillcolor=color, opacity=0.2, line=dict(width=0), hoverinfo="skip",
                                 name=f"{arm.name} 95% interval", showlegend=False))
        fig.add_trace(go.Scatter(x=rounds, y=list(mean), mode="lines+markers", name=f"{arm.name} (mean of "
                                 f"{len(arm.seeds)} seeds)", line=dict(color=color, width=2.4)))
    fig.update_layout(title=metric.replace("_", " "), height=320, margin=dict(l=40, r=20, t=50, b=40),
                      xaxis_title="round", template="plotly_white", legend=dict(orientation="h", y=-0.25))
    return fig


def write_study_report(arms: Sequence[Arm], table: pl.DataFrame, path: Path, window: int = 1) -> Path:
    seeds = ", ".join(str(s) for s in arms[0].seeds)
    what = "the last round" if window == 1 else f"the mean of the last {window} rounds"
    parts = [f"<h1>simworld A/B study</h1><p>{len(arms)} arms, seeds {seeds} (paired: every arm ran every seed). "
             f"Differences are for {what}, arm minus {html.escape(arms[0].name)}, with 95% t-intervals "
             "and paired t-tests.</p>"]
    parts.append("<h2>Differences</h2>" + _html_table(table))
    for k, metric in enumerate(_metric_names(arms)):
        parts.append(band_figure(arms, metric).to_html(full_html=False, include_plotlyjs=(k == 0)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("<!doctype html><html><head><meta charset='utf-8'><title>simworld A/B study</title></head>"
                    "<body style='font-family:sans-serif;max-width:1100px;margin:auto'>" + "\n".join(parts)
                    + "</body></html>", encoding="utf-8")
    return path


def study(paths: Sequence[Path], seeds: int, out_dir: Path, rounds: int | None = None, window: int = 1,
          on_start: Callable[[str], None] | None = None) -> tuple[Path, pl.DataFrame]:
    """Run every arm over `seeds` seeds and write `out_dir/report.html`; return it and the differences."""
    if window < 1:
        raise SimworldError("--window must be at least 1 round")
    arms = run_arms(paths, seeds, Path(out_dir), rounds, on_start)
    table = difference_table(arms, window)
    return write_study_report(arms, table, Path(out_dir) / "report.html", window), table
