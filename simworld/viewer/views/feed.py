"""Activity feed: what agents did, newest first, filtered by agent, action and round."""

from __future__ import annotations

import html

import polars as pl
import streamlit as st

from simworld.viewer.data import ACTIONS, FEED_ACTIONS
from simworld.viewer.registry import View
from simworld.viewer.ui import ViewContext

ICONS = {"watch": "🎬", "search": "🔎", "leave": "🚪", "fallback": "⚠️", "page": "📄", "next_page": "➡️",
         "idle": "💤", "reflect": "💭", "chat": "💬", "post": "📝", "repost": "🔁", "like": "❤️", "read_feed": "📱",
         "follow": "➕", "unfollow": "➖"}
SOURCE_NOTE = {"friend": "after a friend's chat", "feed": "after a post in the feed", "search": "found by search",
               "outside": "found outside the platform"}
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
        note = SOURCE_NOTE.get(row.get("source") or "")
        source = f' <span class="sw-muted">({note})</span>' if note else ""
        return (f'{who} watched <b>{html.escape(ctx.title(row["item_id"]))}</b> '
                f'<span class="sw-stars">{stars(row["rating"])}</span>{feel}{source}')
    other = row.get("target_id")
    whom = f'<span class="sw-agent">{html.escape(ctx.names.get(other) or f"agent {other}")}</span>' \
        if other is not None else ""
    if action == "chat":
        return f'{who} → {whom}: <span class="sw-say">{text}</span>'
    if action == "post":
        return f'{who} posted: <span class="sw-say">{text}</span>'
    if action == "repost":
        return f'{who} reposted {whom}’s post on <b>{html.escape(ctx.title(row["item_id"]))}</b>: ' \
               f'<span class="sw-say">{text}</span>'
    if action == "like":
        return f'{who} liked {whom}’s post on <b>{html.escape(ctx.title(row["item_id"]))}</b>'
    if action == "read_feed":
        return f'{who} read the feed <span class="sw-muted">({text})</span>'
    if action in ("follow", "unfollow"):
        return f"{who} {action}ed {whom}"
    if action == "reflect":
        return f'{who} reflected: <span class="sw-feel">“{text}”</span>'
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


def _chat_threads(view: pl.DataFrame) -> dict[int, list[dict]]:
    chats = view.filter((pl.col("action") == "chat") & pl.col("thread_id").is_not_null()).sort("seq")
    out: dict[int, list[dict]] = {}
    for row in chats.iter_rows(named=True):
        out.setdefault(row["thread_id"], []).append(row)
    return out


def describe_chat(messages: list[dict], ctx: ViewContext) -> str:
    """A chat as one feed entry: who talked, then each message on its own line."""
    first = messages[0]
    a, b = (ctx.names.get(x) or f"agent {x}" for x in (first["agent_id"], first["target_id"]))
    short = {first["agent_id"]: a.split()[0], first["target_id"]: b.split()[0]}
    if short[first["agent_id"]] == short[first["target_id"]]:  # two Euns: full names
        short = {first["agent_id"]: a, first["target_id"]: b}
    lines = "".join(f'<div class="sw-line"><b>{html.escape(short.get(m["agent_id"], "?"))}:</b> '
                    f'<span class="sw-say">{html.escape(m["text"] or "")}</span></div>' for m in messages)
    return (f'<span class="sw-agent">{html.escape(a)}</span> chatted with '
            f'<span class="sw-agent">{html.escape(b)}</span>{lines}')


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
    threads = _chat_threads(view)
    shown_threads: set[int] = set()
    for row in view.head(FEED_ROWS * 6).iter_rows(named=True):
        if len(rows) >= FEED_ROWS:
            break
        thread = row["thread_id"] if row["action"] == "chat" else None
        if thread is not None:  # a chat is one entry, its messages in the order they were said
            if thread in shown_threads:
                continue
            shown_threads.add(thread)
            body = describe_chat(threads[thread], ctx)
        else:
            body = describe(row, ctx)
        rows.append(f'<div class="sw-row"><span class="sw-round">R{row["round"]}</span>'
                    f'<span class="sw-icon">{ICONS.get(row["action"], "•")}</span>'
                    f'<span class="sw-body">{body}</span></div>')
    with st.container(key="feed_rows", height=430 if len(rows) > 8 else "content", border=True):
        if rows:
            st.markdown(f'<div class="sw-feed">{"".join(rows)}</div>', unsafe_allow_html=True)
        else:
            st.caption("No event matches these filters.")
        if view.height > FEED_ROWS:
            st.caption(f"The newest {len(rows)} entries shown; the table below holds all {view.height} events.")

    with st.expander("All matching events (table)"):
        table = view.select(
            "round", "agent_id",
            pl.col("agent_id").replace_strict(ctx.names, default=None, return_dtype=pl.String).alias("agent"),
            "action",
            pl.col("item_id").replace_strict(ctx.titles, default=None, return_dtype=pl.String).alias("item"),
            "rating", "text", "source",
            pl.col("target_id").replace_strict(ctx.names, default=None, return_dtype=pl.String).alias("to"),
            "policy", "latency_ms",
        )
        st.dataframe(table, hide_index=True, key="feed_table")
        st.download_button("Download CSV", table.write_csv(), file_name=f"{ctx.data.name}-feed.csv",
                           mime="text/csv", key="feed_csv")


VIEW = View(key="feed", title="Activity feed", icon="📰", render=render, order=10)
