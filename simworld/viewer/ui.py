"""Shared Streamlit pieces: the context a view gets, cached readers, chart styling."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from simworld.build import build_catalog
from simworld.config import load_scenario
from simworld.viewer.data import RunData, item_titles, load_run, stamp
from simworld.viewer.session import RunController, Status

PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6",
           "#9D755D", "#BAB0AC", "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A",
           "#B68100", "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D"]

LABELS = {
    "active_agents": "Active agents", "wall_s": "Round time (s)", "watches": "Watches",
    "mean_rating": "Mean rating", "coverage": "Catalog coverage", "genre_entropy": "Genre entropy",
    "ctr": "Click-through", "exposure_gini": "Gini of exposure", "exposure_gini_cumulative": "Gini of exposure (all rounds)",
    "intra_list_diversity": "Intra-list diversity", "novelty": "Novelty", "popularity_bias": "Popularity bias",
    "coverage_round": "Coverage this round", "impressions": "Impressions", "prompt_tokens": "Prompt tokens", "completion_tokens": "Completion tokens",
    "llm_fallbacks": "LLM fallbacks", "llm_calls": "LLM calls", "llm_tokens": "LLM tokens",
    "llm_cost_usd": "LLM cost (USD)", "cost_usd": "Cost (USD)", "cost": "Cost",
    "recommended_share": "Watches from recommendations", "search_share": "Watches from search",
    "friend_share": "Watches after a friend's chat", "feed_share": "Watches after a post",
    "outside_share": "Watches found outside the platform",
}


def label(column: str) -> str:
    return LABELS.get(column, column.replace("_", " ").capitalize())


@dataclass
class ViewContext:
    """What a page gets: the run's files (`data`) and, when this session owns it, the live run."""

    data: RunData
    controller: RunController | None = None
    status: Status | None = None
    catalog: Any = None  # simworld.catalog.Catalog, or None when it cannot be loaded
    out_dir: Path = Path("runs")
    _names: dict[int, str] | None = field(default=None, repr=False)
    _titles: dict[int, str] | None = field(default=None, repr=False)

    @property
    def live(self) -> bool:
        return self.controller is not None and self.status is not None and self.status.state not in (
            "finished", "stopped", "failed")

    @property
    def names(self) -> dict[int, str]:
        if self._names is None:
            self._names = self.data.persona_names()
        return self._names

    @property
    def titles(self) -> dict[int, str]:
        if self._titles is None:
            self._titles = item_titles(self.catalog) if self.catalog is not None else {}
        return self._titles

    def agent_label(self, agent_id: int) -> str:
        name = self.names.get(agent_id)
        return f"{agent_id} · {name}" if name else f"agent {agent_id}"

    def title(self, item_id: int | None) -> str:
        if item_id is None:
            return ""
        return self.titles.get(int(item_id), f"item {item_id}")


# -- cached readers (shared across sessions; the frames are never mutated) ------------------------

@st.cache_resource(max_entries=48, show_spinner=False)
def _run_at(path: str, key: tuple) -> RunData:
    return load_run(Path(path))


def run_data(run_dir: Path) -> RunData:
    """The run folder's frames, re-read only when the folder gained a round."""
    return _run_at(str(Path(run_dir).resolve()), stamp(run_dir))


@st.cache_resource(max_entries=8, show_spinner=False)
def _catalog_at(path: str) -> Any:
    scenario = load_scenario(Path(path) / "scenario.yaml")
    return build_catalog(scenario)


def catalog_for(run_dir: Path) -> Any:
    """The run's catalog, rebuilt from its saved scenario (what a notebook would do); None if it fails."""
    try:
        return _catalog_at(str(Path(run_dir).resolve()))
    except Exception:  # noqa: BLE001 - titles fall back to item ids
        return None


def round_slider(rounds: list[int], key: str, label: str) -> int:
    """A slider over the rounds that follows the newest one as rounds arrive, unless the
    researcher pulled it back to look at an earlier round."""
    last = rounds[-1]
    prev = st.session_state.get(f"_{key}_last")
    current = st.session_state.get(key)
    if current not in rounds or (prev is not None and current >= prev):
        st.session_state[key] = last
    st.session_state[f"_{key}_last"] = last
    if len(rounds) == 1:
        st.caption(f"Round {last}")
        return last
    return st.select_slider(label, options=rounds, key=key)


# -- charts ---------------------------------------------------------------------------------------

def style(fig: go.Figure, *, height: int = 260, title: str | None = None, legend: bool = False) -> go.Figure:
    fig.update_layout(
        height=height, margin=dict(l=8, r=8, t=36 if title else 8, b=8),
        title=dict(text=title, x=0.0, xanchor="left", font=dict(size=14)) if title else None,
        showlegend=legend, hovermode="x unified" if not legend else "closest",
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
        font=dict(size=12),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, font=dict(size=11)) if legend else None,
    )
    fig.update_xaxes(showgrid=False, zeroline=False)
    fig.update_yaxes(gridcolor="rgba(128,128,128,0.18)", zeroline=False)
    return fig


def plot(fig: go.Figure, key: str) -> None:
    st.plotly_chart(fig, key=key, config={"displayModeBar": False}, **_WIDTH)




CSS = """
<style>
  .block-container {padding-top: 2.2rem; padding-bottom: 2rem;}
  [data-testid="stSidebar"] .block-container {padding-top: 1.2rem;}
  .sw-status {display:flex; gap:.5rem; flex-wrap:wrap; align-items:center; margin:.1rem 0 .6rem 0;}
  .sw-pill {border-radius:999px; padding:.12rem .65rem; font-size:.82rem; font-weight:600;
            background:rgba(128,128,128,.12); border:1px solid rgba(128,128,128,.25);}
  .sw-pill.running {background:#e8f5e9; color:#1b5e20; border-color:#a5d6a7;}
  .sw-pill.paused {background:#fff8e1; color:#8d6e00; border-color:#ffe082;}
  .sw-pill.finished {background:#e3f2fd; color:#0d47a1; border-color:#90caf9;}
  .sw-pill.stopped, .sw-pill.failed {background:#ffebee; color:#b71c1c; border-color:#ef9a9a;}
  .sw-feed {font-size:.92rem; line-height:1.35;}
  .sw-row {display:flex; gap:.6rem; align-items:baseline; padding:.32rem .2rem;
           border-bottom:1px solid rgba(128,128,128,.15);}
  .sw-round {flex:0 0 3.1rem; color:#888; font-variant-numeric:tabular-nums; font-size:.8rem;}
  .sw-icon {flex:0 0 1.4rem; text-align:center;}
  .sw-body {flex:1 1 auto;}
  .sw-agent {font-weight:600;}
  .sw-stars {color:#f5a623; letter-spacing:1px; white-space:nowrap;}
  .sw-feel {color:#666; font-style:italic;}
  .sw-muted {color:#888; font-size:.85rem;}
  .sw-say {color:#333;}
  .sw-line {margin:.1rem 0 0 .8rem;}
  .sw-chat {border:1px solid rgba(128,128,128,.2); border-radius:.6rem; padding:.4rem .6rem; margin:.3rem 0 .7rem 0;
            font-size:.9rem;}
  .sw-chat-head {color:#888; font-size:.8rem; margin-bottom:.25rem;}
  .sw-msg {border-radius:.8rem; padding:.25rem .6rem; margin:.2rem 0; max-width:88%; width:fit-content;}
  .sw-msg.left {background:rgba(76,120,168,.10);}
  .sw-msg.right {background:rgba(245,133,24,.12); margin-left:auto;}
</style>
"""


def _width_kwargs() -> dict[str, Any]:
    """`width="stretch"` where this Streamlit has it, else the older use_container_width."""
    import inspect

    params = inspect.signature(st.plotly_chart).parameters
    if "width" in params:
        return {"width": "stretch"}
    return {"use_container_width": True}


_WIDTH = _width_kwargs()
