"""Agent inspector: persona, history, memories; interview, persona edits and injected events."""

from __future__ import annotations

import html

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from simworld.social import files as social_files
from simworld.viewer import social_data
from simworld.viewer.registry import View
from simworld.viewer.ui import ViewContext, plot, style
from simworld.viewer.views.social import chat_html


def _persona(ctx: ViewContext, agent_id: int):
    """The live persona object when this session runs the world, else the personas.parquet row."""
    if ctx.controller is not None:
        user = ctx.controller.world.users.get(agent_id)
        if user is not None:
            return user.state.persona
    rows = ctx.data.personas.filter(pl.col("agent_id") == agent_id)
    return rows.row(0, named=True) if rows.height else None


def _field(p, name, default=None):
    return getattr(p, name, None) if not isinstance(p, dict) else p.get(name, default)


def _persona_card(ctx: ViewContext, agent_id: int, p) -> None:
    name = _field(p, "name") or f"agent {agent_id}"
    traits = _field(p, "traits")
    traits = ", ".join(traits) if isinstance(traits, (tuple, list)) else (traits or "")
    st.markdown(f"### {html.escape(name)}")
    st.caption(f"agent {agent_id} · {_field(p, 'age')} · {_field(p, 'occupation')} · {traits}")
    desc = p.describe() if hasattr(p, "describe") else _field(p, "description", "")
    st.write(desc)
    cols = st.columns(4)
    for col, key in zip(cols, ("activity", "diversity", "conformity", "curiosity")):
        value = _field(p, key)
        col.metric(key.capitalize(), f"{value:.2f}" if isinstance(value, (int, float)) else "–")
    taste = _field(p, "genre_taste")
    if isinstance(taste, dict) and taste:
        top = sorted(taste.items(), key=lambda kv: -kv[1])[:8][::-1]
        fig = go.Figure(go.Bar(x=[v for _, v in top], y=[g for g, _ in top], orientation="h",
                               marker_color="#4C78A8", hovertemplate="%{y}: %{x:.2f}<extra></extra>"))
        plot(style(fig, height=240, title="Genre taste (persona)"), key=f"insp_taste_{agent_id}")
    elif _field(p, "top_genres"):
        st.write(f"**Top genres:** {_field(p, 'top_genres')}")


def _history(ctx: ViewContext, agent_id: int) -> None:
    ev = ctx.data.events.filter(pl.col("agent_id") == agent_id)
    watches = ev.filter(pl.col("action") == "watch").sort(["round", "seq"], descending=True)
    c = st.columns(3)
    c[0].metric("Watches", watches.height)
    c[1].metric("Mean rating", f"{watches['rating'].mean():.2f}" if watches.height else "–")
    c[2].metric("Searches", ev.filter(pl.col("action") == "search").height)
    if watches.height:
        table = watches.select(
            "round", pl.col("item_id").replace_strict(ctx.titles, default=None, return_dtype=pl.String).alias("film"),
            "rating", pl.col("text").alias("feeling"), pl.col("source").alias("found via"))
        st.dataframe(table, hide_index=True, height=min(320, 38 + 35 * watches.height), key=f"insp_hist_{agent_id}",
                     column_config={"rating": st.column_config.NumberColumn(format="%.1f ★")})
    else:
        st.caption("No watches yet.")
    traj = ctx.data.agents.filter(pl.col("agent_id") == agent_id) if not ctx.data.agents.is_empty() else None
    if traj is not None and traj.height > 1:
        steps, last = [], None
        for round_no, genre in traj.sort("round").select("round", "dominant_genre").iter_rows():
            if genre != last:
                steps.append(f"R{round_no}: {genre}")
                last = genre
        st.caption("Dominant genre over time: " + " → ".join(steps))


def _social(ctx: ViewContext, agent_id: int) -> None:
    """The agent's friends and follows now, and its latest chats."""
    start = ctx.data.social.get(social_files.GRAPH)
    if start is None:
        return
    st.markdown("#### Friends and chats")
    edges = social_data.edges_at(start, ctx.data.events, ctx.data.rounds_done)
    friends = sorted(b for a, b in edges if a == agent_id and (b, a) in edges)
    follows = sorted(b for a, b in edges if a == agent_id and (b, a) not in edges)
    followers = sorted(a for a, b in edges if b == agent_id and (b, a) not in edges)
    relation = dict(((a, b), r) for a, b, r in start.select("source", "target", "relation").iter_rows())

    def people(ids: list[int], with_relation: bool = False) -> str:
        if not ids:
            return "nobody"
        return ", ".join(ctx.names.get(i, f"agent {i}") + (f" ({relation[(agent_id, i)]})" if with_relation and
                         relation.get((agent_id, i)) not in (None, "friend", "follow") else "") for i in ids)

    st.markdown(f"**Friends ({len(friends)}):** {html.escape(people(friends, True))}  \n"
                f"**Also follows ({len(follows)}):** {html.escape(people(follows))}  \n"
                f"**Followed by ({len(followers)} more):** {html.escape(people(followers))}")
    threads = social_data.chat_threads(ctx.data.events, agent_id=agent_id, limit=4)
    if not threads:
        st.caption("No chats yet.")
    for thread in threads:
        st.markdown(chat_html(ctx, thread), unsafe_allow_html=True)


def _memories(ctx: ViewContext, agent_id: int) -> None:
    if ctx.controller is None:
        st.caption("Memories are read from the live run; open this run live (resume) to see them.")
        return
    source, items = ctx.controller.memories(agent_id)
    st.caption(f"From: {source}")
    if not items:
        st.caption("Nothing remembered yet.")
    for m in reversed(items):
        st.markdown(f"- {html.escape(str(m))}")


def _interview(ctx: ViewContext, agent_id: int) -> None:
    log_key = f"interview_log_{agent_id}"
    log = st.session_state.setdefault(log_key, [])
    if ctx.controller is None:
        st.caption("Interviews need a live run: start one or resume this run.")
        return
    with st.form(f"interview_form_{agent_id}", clear_on_submit=True, border=False):
        question = st.text_input("Ask a question", key=f"interview_q_{agent_id}",
                                 placeholder="What kind of film would you like to watch tonight, and why?")
        remember = st.checkbox("Remember this (write the exchange to the agent's memory)", value=False,
                               key=f"interview_remember_{agent_id}")
        asked = st.form_submit_button("Ask")
    if asked and question.strip():
        with st.spinner("Waiting for the answer (after the round in progress)..."):
            try:
                answer = ctx.controller.interview(agent_id, question.strip(), remember=remember)
            except Exception as exc:  # noqa: BLE001 - shown as one line, never a traceback
                answer = f"(the interview failed: {type(exc).__name__}: {exc})"
        if answer is not None:
            log.append((question.strip(), answer, remember))
    for q, a, kept in reversed(log):
        with st.chat_message("user"):
            st.write(q)
        with st.chat_message("assistant", avatar="🎬"):
            st.write(a)
            st.caption("remembered" if kept else "not written to memory")


def _edit(ctx: ViewContext, agent_id: int, p) -> None:
    if ctx.controller is None or not ctx.live:
        st.caption("Persona edits need a live run.")
        return
    genres = list(ctx.controller.world.catalog.genres)
    with st.form(f"edit_form_{agent_id}", border=False):
        notes = st.text_area("Notes (added to the persona's description)", value=p.notes, key=f"edit_notes_{agent_id}")
        traits = st.text_input("Traits (comma separated)", value=", ".join(p.traits), key=f"edit_traits_{agent_id}")
        c = st.columns(4)
        sliders = {}
        for col, name in zip(c, ("activity", "diversity", "conformity", "curiosity")):
            sliders[name] = col.slider(name.capitalize(), 0.0, 1.0, float(getattr(p, name)), 0.05,
                                       key=f"edit_{name}_{agent_id}")
        st.caption("Genre tastes (normalised to sum to 1 when saved)")
        gcols = st.columns(4)
        tastes = {}
        for i, g in enumerate(genres):
            tastes[g] = gcols[i % 4].slider(g, 0.0, 1.0, float(round(p.genre_taste.get(g, 0.0), 2)), 0.01,
                                            key=f"edit_genre_{agent_id}_{g}")
        saved = st.form_submit_button("Save persona", type="primary")
    if saved:
        changes = persona_changes(p, notes=notes, traits=traits, sliders=sliders, tastes=tastes)
        if not changes:
            st.info("Nothing changed.")
            return
        when = ctx.controller.next_round_for_interventions()
        how = ctx.controller.edit_persona(agent_id, **changes)
        st.success(f"Persona of agent {agent_id} {how}: {', '.join(sorted(changes))}; "
                   f"takes effect from round {when}.")


def persona_changes(p, *, notes: str, traits: str, sliders: dict[str, float], tastes: dict[str, float]) -> dict:
    """Only the fields the researcher changed, in the Persona's own types."""
    changes: dict = {}
    if notes.strip() != p.notes:
        changes["notes"] = notes.strip()
    new_traits = tuple(t.strip() for t in traits.split(",") if t.strip())
    if new_traits != tuple(p.traits):
        changes["traits"] = new_traits
    for name, value in sliders.items():
        if abs(value - getattr(p, name)) > 0.004:
            changes[name] = float(value)
    old = {g: round(p.genre_taste.get(g, 0.0), 2) for g in tastes}
    if any(abs(tastes[g] - old[g]) > 0.004 for g in tastes):
        total = sum(tastes.values())
        if total > 0:
            changes["genre_taste"] = {g: round(v / total, 4) for g, v in tastes.items()}
    return changes


def _inject(ctx: ViewContext, agent_id: int) -> None:
    if ctx.controller is None or not ctx.live:
        st.caption("Injecting events needs a live run.")
        return
    ids = sorted(ctx.controller.world.users)
    with st.form(f"inject_form_{agent_id}", border=False):
        everyone = st.checkbox("All agents", value=False, key="inject_all")
        targets = st.multiselect("To agents", ids, default=[agent_id], format_func=ctx.agent_label, key="inject_to")
        kind = st.radio("Event", ["News post", "Ad for a film"], horizontal=True, key="inject_kind")
        text = st.text_input("Text", key="inject_text", placeholder="A critics' poll names the best film of the decade...")
        titles = ctx.titles
        item = st.selectbox("Film (for an ad)", sorted(titles, key=lambda i: titles[i]), format_func=titles.get,
                            index=None, key="inject_item", placeholder="search the catalog")
        sent = st.form_submit_button("Inject", type="primary")
    if sent:
        agents = ids if everyone else targets
        problem = None
        if not agents:
            problem = "Choose at least one agent."
        elif kind == "Ad for a film" and item is None:
            problem = "Choose the film the ad is for."
        elif not text.strip() and kind == "News post":
            problem = "Write the news text."
        if problem:
            st.warning(problem)
            return
        body = text.strip() or f"Sponsored: {titles.get(item, item)}"
        when = ctx.controller.next_round_for_interventions()
        how = ctx.controller.inject(agents, body, item if kind == "Ad for a film" else None)
        st.success(f"Event {how} for {len(agents)} agent(s); they see it in round {when}.")


def render(ctx: ViewContext) -> None:
    ids = sorted(ctx.names) or (sorted(ctx.controller.world.users) if ctx.controller else [])
    if not ids:
        st.info("No agents in this run yet.")
        return
    if st.session_state.get("inspect_agent") not in ids:
        st.session_state["inspect_agent"] = ids[0]
    agent_id = st.selectbox("Agent", ids, format_func=ctx.agent_label, key="inspect_agent")
    p = _persona(ctx, agent_id)
    if p is None:
        st.warning(f"No persona recorded for agent {agent_id}.")
        return
    left, right = st.columns([2, 3])
    with left:
        _persona_card(ctx, agent_id, p)
        st.markdown("#### Memories")
        _memories(ctx, agent_id)
    with right:
        st.markdown("#### History")
        _history(ctx, agent_id)
        _social(ctx, agent_id)
        tabs = st.tabs(["💬 Interview", "✏️ Edit persona", "📣 Inject event"])
        with tabs[0]:
            _interview(ctx, agent_id)
        with tabs[1]:
            if hasattr(p, "edited"):
                _edit(ctx, agent_id, p)
            else:
                st.caption("Persona edits need a live run.")
        with tabs[2]:
            _inject(ctx, agent_id)
    if ctx.controller is not None and ctx.controller.log:
        with st.expander(f"Interventions this session ({len(ctx.controller.log)})"):
            for line in reversed(ctx.controller.log):
                st.caption(line)


VIEW = View(key="inspector", title="Agent inspector", icon="🔍", render=render, order=40, live=False)
