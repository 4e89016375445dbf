"""Activity feed: what agents did, newest first, filtered by agent, action and round."""

from __future__ import annotations

import html

import polars as pl
import streamlit as st

from simworld.viewer.data import ACTIONS, FEED_ACTIONS
from simworld.viewer.registry import View
from simworld.viewer.ui import ViewContext

ICONS = {"watch": "🎬", "search": "🔎", "leave": "🚪", "fallback": "⚠️", "page": "📄", "next_page": "➡️",
         "idle": "💤"}
FEED_ROWS = 60


def stars(rating: float | None) -> str:
    if rating is None:
        return ""
    full = int(round(rating))
    return "★" * full + "☆" * max(0, 5 - full) + f" {rating:.1f}"


def describe(row: dict, ctx: ViewContext) -> str:
    """One event as a line of HTML (every dynamic value escaped)."""
    name = ctx.names.get(row["agent_id"]) or f"agent {row['agent_id']}"
    who = f'<span class="sw-agent">{html.escape(name)}</span>'
    text = html.escape(row["text"] or "")
    action = row["action"]
    if action == "watch":
        feel = f' <span class="sw-feel">“{text}”</span>' if text else ""
        return (f'{who} watched <b>{html.escape(ctx.title(row["item_id"]))}</b> '
                f'<span class="sw-stars">{stars(row["rating"])}</span>{feel}')
    if action == "search":
        n = len(row["items"] or [])
        return f'{who} searched for <b>“{text}”</b> <span class="sw-muted">({n} results)</span>'
    if action == "leave":
        return f'{who} left the platform for this round <span class="sw-muted">{text}</span>'
    if action == "fallback":
        return f'{who}: LLM decision failed, rule policy used <span class="sw-muted">({text})</span>'
    if action == "page":
        return f'{who} looked at {text or "a page"} <span class="sw-muted">({len(row["items"] or [])} items)</span>'
    if action == "next_page":
        return f"{who} went to the next page"
    if action == "idle":
        return f"{who} opened the app and did nothing"
    return f"{who} {html.escape(action)} {text}"


def _round_filter(ev: pl.DataFrame) -> tuple[int, int]:
    first, last = int(ev["round"].min()), int(ev["round"].max())
    if first == last:
        return first, last
    key = "feed_rounds"
    prev_last = st.session_state.get("_feed_last_round")
    current = st.session_state.get(key)
    if current is None or prev_last is None:
        st.session_state[key] = (first, last)
    else:
        lo, hi = current
        # follow the newest round while the researcher has not pulled the right handle back
        hi = last if hi >= prev_last else min(hi, last)
        st.session_state[key] = (max(first, min(lo, hi)), hi)
    st.session_state["_feed_last_round"] = last
    return st.slider("Rounds", first, last, key=key)


def render(ctx: ViewContext) -> None:
    ev = ctx.data.events
    if ev.is_empty():
        st.info("No activity yet. Start the run, or step one round, and the feed fills in as rounds finish.")
        return
    c1, c2, c3 = st.columns([3, 3, 4])
    with c1:
        actions = st.multiselect("Actions", ACTIONS, default=list(FEED_ACTIONS), key="feed_actions")
    with c2:
        ids = sorted(ev["agent_id"].unique().to_list())
        agents = st.multiselect("Agents", ids, format_func=ctx.agent_label, key="feed_agents",
                                placeholder="all agents")
    with c3:
        lo, hi = _round_filter(ev)
    view = ev.filter(pl.col("round").is_between(lo, hi))
    if actions:
        view = view.filter(pl.col("action").is_in(actions))
    if agents:
        view = view.filter(pl.col("agent_id").is_in(agents))
    view = view.sort(["round", "seq"], descending=True)

    counts = view.group_by("action").len().sort("len", descending=True)
    summary = " · ".join(f"{ICONS.get(a, '')} {n} {a}" for a, n in counts.iter_rows())
    st.caption(f"{view.height} events shown of {ev.height} · {summary}")

    rows = []
    for row in view.head(FEED_ROWS).iter_rows(named=True):
        rows.append(f'<div class="sw-row"><span class="sw-round">R{row["round"]}</span>'
                    f'<span class="sw-icon">{ICONS.get(row["action"], "•")}</span>'
                    f'<span class="sw-body">{describe(row, ctx)}</span></div>')
    with st.container(key="feed_rows", height=430 if len(rows) > 8 else "content", border=True):
        if rows:
            st.markdown(f'<div class="sw-feed">{"".join(rows)}</div>', unsafe_allow_html=True)
        else:
            st.caption("No event matches these filters.")
        if view.height > FEED_ROWS:
            st.caption(f"Newest {FEED_ROWS} shown; the table below holds all {view.height}.")

    with st.expander("All matching events (table)"):
        table = view.select(
            "round", "agent_id",
            pl.col("agent_id").replace_strict(ctx.names, default=None, return_dtype=pl.String).alias("agent"),
            "action",
            pl.col("item_id").replace_strict(ctx.titles, default=None, return_dtype=pl.String).alias("item"),
            "rating", "text", "policy", "latency_ms",
        )
        st.dataframe(table, hide_index=True, key="feed_table")
        st.download_button("Download CSV", table.write_csv(), file_name=f"{ctx.data.name}-feed.csv",
                           mime="text/csv", key="feed_csv")


VIEW = View(key="feed", title="Activity feed", icon="📰", render=render, order=10)
