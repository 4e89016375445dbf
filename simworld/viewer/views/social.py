"""Social page: the friend graph by round, word of mouth, cascades of the top items, chats.

Read from the run folder: graph.parquet (the starting graph) plus the follow/unfollow events,
communities.parquet (taste communities per round), social.parquet (homophily and counts per
round), cascades.parquet and the event log (posts, reposts, chats)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl
import streamlit as st

from simworld.social import files
from simworld.viewer import social_data
from simworld.viewer.registry import View
from simworld.viewer.ui import PALETTE, ViewContext, plot, round_slider, style

SOURCES = {"recommended_share": ("recommended", "#4C78A8"), "search_share": ("search", "#BAB0AC"),
           "friend_share": ("a friend's chat", "#F58518"), "feed_share": ("a post in the feed", "#54A24B"),
           "outside_share": ("found outside the platform", "#B279A2")}


@st.cache_data(max_entries=8, show_spinner=False)
def _layout(path: str, agents: tuple[int, ...], _start: pl.DataFrame) -> dict[int, tuple[float, float]]:
    edges = {(int(a), int(b)) for a, b in _start.select("source", "target").iter_rows()}
    return social_data.layout(list(agents), edges)


def _community_names(ctx: ViewContext, communities: dict[int, int], round_no: int) -> dict[int, str]:
    """'Horror & Thriller' for a community whose members' mean taste leans that way."""
    agents = ctx.data.agents
    genres = getattr(ctx.catalog, "genres", None)
    if agents.is_empty() or not genres or not communities:
        return {c: f"community {c + 1}" for c in set(communities.values())}
    rounds = agents["round"].unique().to_list()
    at = max((r for r in rounds if r <= round_no), default=min(rounds))
    part = agents.filter(pl.col("round") == at).select("agent_id", "taste")
    tastes = {a: np.asarray(t) for a, t in part.iter_rows()}
    names: dict[int, object] = {}
    for c in sorted(set(communities.values())):
        members = [tastes[a] for a, k in communities.items() if k == c and a in tastes]
        if not members:
            names[c] = f"community {c + 1}"
            continue
        mean = np.mean(members, axis=0)
        top = [genres[i] for i in np.argsort(-mean)[:3] if mean[i] > 0]
        names[c] = top
    out: dict[int, str] = {}
    for c, top in names.items():
        if isinstance(top, str):
            out[c] = top
            continue
        twins = [t for k, t in names.items() if k != c and not isinstance(t, str) and set(t[:2]) == set(top[:2])]
        shown = top[:3] if twins else top[:2]  # "Drama & Comedy" twice: the third genre tells them apart
        out[c] = " & ".join(shown) or f"community {c + 1}"
    return out


def _network(ctx: ViewContext, round_no: int) -> None:
    social = ctx.data.social
    start = social[files.GRAPH]
    agents = tuple(sorted(ctx.names)) or tuple(sorted(set(start["source"]) | set(start["target"])))
    pos = _layout(str(Path(ctx.data.run_dir).resolve()), agents, start)
    edges = social_data.edges_at(start, ctx.data.events, round_no)
    mutual = social_data.friendships(edges)
    one_way = sorted((a, b) for a, b in edges if (b, a) not in edges)
    communities = social_data.communities_at(social.get(files.COMMUNITIES, pl.DataFrame()), round_no)
    names = _community_names(ctx, communities, round_no)
    active = social_data.activity(ctx.data.events, round_no)
    fig = go.Figure()
    for pairs, colour, width, label in ((one_way, "rgba(128,128,128,0.18)", 0.6, "follows"),
                                        (mutual, "rgba(90,90,90,0.45)", 1.0, "friends")):
        xs, ys = [], []
        for a, b in pairs:
            if a in pos and b in pos:
                xs += [pos[a][0], pos[b][0], None]
                ys += [pos[a][1], pos[b][1], None]
        fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line=dict(color=colour, width=width), hoverinfo="skip",
                                   name=label, showlegend=False))
    friend_count: dict[int, int] = {}
    for a, b in mutual:
        friend_count[a] = friend_count.get(a, 0) + 1
        friend_count[b] = friend_count.get(b, 0) + 1
    for c in sorted(set(communities.values()) or {0}):
        members = [a for a in agents if communities.get(a, 0) == c and a in pos]
        if not members:
            continue
        sizes = [6 + 2.2 * np.sqrt(active.get(a, 0)) for a in members]
        text = [f"{html.escape(ctx.names.get(a, f'agent {a}'))}<br>{names.get(c, '')}<br>"
                f"{friend_count.get(a, 0)} friends · {active.get(a, 0)} actions so far" for a in members]
        fig.add_trace(go.Scattergl(x=[pos[a][0] for a in members], y=[pos[a][1] for a in members], mode="markers",
                                   marker=dict(size=sizes, color=PALETTE[c % len(PALETTE)],
                                               line=dict(width=0.5, color="white")),
                                   name=names.get(c, f"community {c + 1}"), text=text,
                                   hovertemplate="%{text}<extra></extra>"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    plot(style(fig, height=520, legend=True), key="social_network")
    st.caption(f"Round {round_no}: {len(mutual)} friendships, {len(one_way)} one-way follows. Colour: taste "
               "community (agents' genre tastes, which drift as they watch); size: what the agent has done so far.")


def _below(fig: go.Figure, title: str, key: str, height: int = 260) -> None:
    """A chart with its legend under the plot (above it, it would cover the title)."""
    fig = style(fig, height=height, title=title, legend=True)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.14, x=0), margin=dict(b=8))
    plot(fig, key=key)


def _figures(ctx: ViewContext) -> None:
    rounds = ctx.data.social.get(files.ROUNDS, pl.DataFrame())
    metrics = ctx.data.metrics
    if not rounds.is_empty():
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=rounds["round"].to_list(), y=rounds["homophily"].to_list(), mode="lines+markers",
                                 name="homophily (taste communities)", line=dict(color="#E45756", width=2.4)))
        fig.add_trace(go.Scatter(x=rounds["round"].to_list(), y=rounds["friend_taste_similarity"].to_list(),
                                 mode="lines", name="friends' taste similarity", line=dict(color="#72B7B2")))
        fig.add_trace(go.Scatter(x=rounds["round"].to_list(), y=rounds["all_taste_similarity"].to_list(),
                                 mode="lines", name="everyone's taste similarity",
                                 line=dict(color="#BAB0AC", dash="dot")))
        _below(fig, "Homophily of the graph", "social_homophily")
    shares = [c for c in SOURCES if c in metrics.columns]
    if shares and metrics.height:
        fig = go.Figure()
        for column in shares:
            label, colour = SOURCES[column]
            fig.add_trace(go.Bar(x=metrics["round"].to_list(), y=metrics[column].fill_nan(0).to_list(), name=label,
                                 marker_color=colour))
        fig.update_layout(barmode="stack")
        fig.update_yaxes(range=[0, 1], tickformat=".0%")
        _below(fig, "Where watches came from", "social_sources")
    if not rounds.is_empty():
        fig = go.Figure()
        for column, colour in (("chats", "#F58518"), ("posts", "#54A24B"), ("reposts", "#B279A2"),
                               ("likes", "#EECA3B"), ("follows", "#4C78A8"), ("unfollows", "#9D755D")):
            fig.add_trace(go.Scatter(x=rounds["round"].to_list(), y=rounds[column].to_list(), mode="lines+markers",
                                     name=column, line=dict(color=colour, width=2)))
        _below(fig, "Social actions per round", "social_counts")


def _cascades(ctx: ViewContext) -> None:
    top = social_data.top_cascades(ctx.data.social.get(files.CASCADES, pl.DataFrame()), n=8)
    if top.is_empty():
        st.caption("No posts yet: cascades appear once agents post about films.")
        return
    table = top.select(pl.col("item_id").replace_strict(ctx.titles, default=None, return_dtype=pl.String).alias("film"),
                       "size", "depth", "max_breadth", pl.col("structural_virality").round(2), "cascades", "reposts",
                       "likes", pl.col("adoptions_friend").alias("watches after chats"),
                       pl.col("adoptions_feed").alias("watches after posts"))
    left, right = st.columns([2, 3])
    with left:
        st.dataframe(table, hide_index=True, key="social_cascade_table")
        items = top["item_id"].to_list()
        chosen = st.selectbox("Cascade of", items, format_func=ctx.title, key="social_cascade_item")
    with right:
        tree = social_data.cascade_tree(ctx.data.events, chosen)
        if tree.is_empty():
            st.caption("No post about this film in the event log.")
            return
        xy = {p: (x, y) for p, x, y in tree.select("post_id", "x", "y").iter_rows()}
        xs, ys = [], []
        for post, parent in tree.select("post_id", "parent_id").iter_rows():
            if parent in xy:
                xs += [xy[parent][0], xy[post][0], None]
                ys += [xy[parent][1], xy[post][1], None]
        fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#999", width=1.2), hoverinfo="skip"))
        hover = [f"{html.escape(ctx.names.get(a, f'agent {a}'))} (round {r})<br>{html.escape((t or '')[:90])}"
                 for a, r, t in tree.select("agent_id", "round", "text").iter_rows()]
        fig.add_trace(go.Scatter(x=tree["x"].to_list(), y=tree["y"].to_list(), mode="markers",
                                 marker=dict(size=12, color=["#E45756" if d == 0 else "#4C78A8"
                                                             for d in tree["depth"]]),
                                 text=hover, hovertemplate="%{text}<extra></extra>"))
        fig.update_xaxes(title="reposts from the original post", dtick=1)
        fig.update_yaxes(visible=False, autorange="reversed")
        plot(style(fig, height=280, title=f"Largest cascade of {ctx.title(chosen)}"), key="social_cascade_tree")


def chat_html(ctx: ViewContext, thread: pl.DataFrame) -> str:
    first = thread.row(0, named=True)
    who = " and ".join(html.escape(ctx.names.get(a, f"agent {a}")) for a in (first["agent_id"], first["target_id"]))
    lines = [f'<div class="sw-chat-head">R{first["round"]} · {who}</div>']
    speaker0 = first["agent_id"]
    full = {a: ctx.names.get(a) or f"agent {a}" for a in (first["agent_id"], first["target_id"])}
    short = {a: n.split()[0] for a, n in full.items()}
    if len(set(short.values())) < len(short):  # two people of the same first name: full names
        short = full
    for row in thread.iter_rows(named=True):
        side = "left" if row["agent_id"] == speaker0 else "right"
        name = html.escape(short.get(row["agent_id"], f"agent {row['agent_id']}"))
        lines.append(f'<div class="sw-msg {side}"><b>{name}</b> {html.escape(row["text"] or "")}</div>')
    return f'<div class="sw-chat">{"".join(lines)}</div>'


def _chats(ctx: ViewContext) -> None:
    threads = social_data.chat_threads(ctx.data.events, limit=6)
    if not threads:
        st.caption("No chats yet.")
        return
    cols = st.columns(2)
    for i, thread in enumerate(threads):
        with cols[i % 2]:
            st.markdown(chat_html(ctx, thread), unsafe_allow_html=True)


def render(ctx: ViewContext) -> None:
    social = ctx.data.social
    if files.GRAPH not in social:
        st.info("This run has no social side. Add a `social:` section to the scenario (see the README's "
                "Social section) and agents get friends, chat, post and repost, and hear about films "
                "from each other.")
        return
    rounds_frame = social.get(files.ROUNDS, pl.DataFrame())
    ev = ctx.data.events
    watches = ev.filter(pl.col("action") == "watch")
    friend = watches.filter(pl.col("source").is_in(["friend", "feed"])).height
    last = rounds_frame.row(-1, named=True) if rounds_frame.height else {}
    tiles = st.columns(6)
    tiles[0].metric("Friendships", last.get("friendships", len(social_data.friendships(
        social_data.edges_at(social[files.GRAPH], ev, 0)))))
    tiles[1].metric("Chats", int(rounds_frame["chats"].sum()) if rounds_frame.height else 0)
    tiles[2].metric("Posts", int(rounds_frame["posts"].sum()) if rounds_frame.height else 0)
    tiles[3].metric("Reposts", int(rounds_frame["reposts"].sum()) if rounds_frame.height else 0)
    homophily = last.get("homophily") if last else None
    tiles[4].metric("Homophily", f"{homophily:.2f}" if homophily is not None and homophily == homophily else "–")
    tiles[5].metric("Word-of-mouth watches", f"{friend / watches.height:.1%}" if watches.height else "–")
    rounds = sorted({0, *(rounds_frame["round"].to_list() if rounds_frame.height else [])})
    left, right = st.columns([3, 2])
    with left:
        _network(ctx, round_slider(rounds, "social_round", "Round (0 = the starting graph)"))
    with right:
        _figures(ctx)
    st.subheader("Cascades of the top films")
    _cascades(ctx)
    st.subheader("Latest chats")
    _chats(ctx)


VIEW = View(key="social", title="Social", icon="👥", render=render, order=25)
