"""The social side of a round, as five stages placed in the schedule:

    activate -> social_plan -> recommend -> recall -> observe -> social_observe -> social_decide
    -> decide -> apply -> social_apply -> remember -> reflect -> forget -> learn -> social_measure

- social_plan: each active agent spends its round on the platform (watch), chatting with a
  friend (talk) or on the feed (post), drawn from its persona's own mix. Talkers and posters
  leave the platform's list for this round.
- social_observe: a platform agent's observation carries its feed and the films it heard
  about lately (the rule policy's word-of-mouth uplift; an LLM agent reads them in memory).
- social_decide: chats, feed visits (likes, reposts, follows, unfollows) and posts are
  decided from the state at the start of the round. LLM messages start on the run's event
  loop here and run while the platform's decisions are made.
- social_apply: after the platform's actions, each watch learns where it came from (page,
  search, friend, feed), then the social actions are applied in agent-id order: event rows,
  graph changes, posts, mentions and memories.
- social_measure: per round, the graph's homophily, the cascades of the items touched and
  the taste communities, kept in the state and written next to metrics.parquet.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from simworld.agents.actions import ChatAction, DecisionMeta, FollowAction, PostAction, ReadFeedAction, SocialAction
from simworld.catalog import Catalog
from simworld.population import Persona
from simworld.social import files
from simworld.social.behaviour import appeal, draw_mode, persona_mix, pick_friend, post_topic, verdict, who_to_follow
from simworld.social.chat import LLMSpeaker, Participant, Speaker, run_chat
from simworld.social.config import SocialConfig
from simworld.social.diffusion import CASCADE_SCHEMA, homophily, item_cascades
from simworld.social.feed import posts_by_author, rank_feed
from simworld.social.graph import build_graph, taste_communities
from simworld.social.memories import chat_memory, heard_memory, post_memory, told_memory
from simworld.social.mentions import TitleMatcher
from simworld.social.state import DiaryEntry, Heard, Post, SocialState
from simworld.social.templates import TemplateSpeaker, post_text, repost_text
from simworld.streams import Streams

if TYPE_CHECKING:
    from simworld.stages import Round
    from simworld.world import SimWorld

CHAT_TIE_GAIN = 0.05  # a chat brings two friends this much closer (tie strength, capped at 1)
ROUND_SCHEMA = {
    "round": pl.Int64, "talkers": pl.Int64, "posters": pl.Int64, "chats": pl.Int64, "chat_messages": pl.Int64,
    "posts": pl.Int64, "reposts": pl.Int64, "likes": pl.Int64, "follows": pl.Int64, "unfollows": pl.Int64,
    "mentions": pl.Int64, "follow_edges": pl.Int64, "friendships": pl.Int64, "posts_in_feeds": pl.Int64,
    "agents_with_mentions": pl.Int64, "homophily": pl.Float64, "friend_taste_similarity": pl.Float64,
    "all_taste_similarity": pl.Float64,
}
COMMUNITY_SCHEMA = {"round": pl.Int64, "agent_id": pl.Int64, "community": pl.Int64}


@dataclass
class _Plan:
    """This round's social agents and what they decided (kept in the Round, never checkpointed)."""

    modes: dict[int, str] = field(default_factory=dict)  # social agent id -> talk | post
    rngs: dict[int, np.random.Generator] = field(default_factory=dict)
    heard: dict[int, dict[int, Heard]] = field(default_factory=dict)  # platform agents' mentions at the start
    actions: dict[int, list[Any]] = field(default_factory=dict)  # agent -> actions (or tasks) in order


class SocialLayer:
    """The social side of one run: its config, its state and the stages that change it."""

    def __init__(self, config: SocialConfig, catalog: Catalog, personas: list[Persona], streams: Streams,
                 run_dir: Path | None = None, base_dir: Path | None = None):
        self.config = config
        self.catalog = catalog
        self.run_dir = run_dir
        genres = catalog.genres
        people = sorted(personas, key=lambda p: p.agent_id)
        ids = [p.agent_id for p in people]
        tastes = np.array([p.taste_vector(genres) for p in people]) if people else np.zeros((0, len(genres)))
        communities = taste_communities(tastes, config.graph.communities, streams.generator("social_graph", 0)) \
            if people else None
        graph = build_graph(config.graph, ids, tastes, communities, streams, base_dir)
        self.state = SocialState(graph=graph, communities=communities)
        self.state.figures = {
            files.GRAPH: graph.edges_frame(),
            files.COMMUNITIES: _community_rows(communities, 0, ids, tastes),
            files.ROUNDS: pl.DataFrame(schema=ROUND_SCHEMA),
            files.CASCADES: pl.DataFrame(schema=CASCADE_SCHEMA),
        }
        self.mix = {p.agent_id: persona_mix(p, config.mix, streams.generator("social_style", p.agent_id))
                    for p in people}
        self.matcher = TitleMatcher(catalog)
        self.templates = TemplateSpeaker(catalog)
        self._llm_speaker: LLMSpeaker | None = None
        self._written_graph = False
        self._count: dict[str, int] = {}  # this round's social actions, by kind
        self._touched: set[int] = set()  # items whose cascades, likes or adoptions changed this round

    def stages(self) -> list[tuple[Any, dict[str, str]]]:
        """(stage, where) pairs for the schedule."""
        return [
            (_Stage("social_plan", self.plan), {"after": "activate"}),
            (_Stage("social_observe", self.observe), {"after": "observe"}),
            (_Stage("social_decide", self.decide), {"before": "decide"}),
            (_StatefulStage("social_apply", self.apply, self), {"after": "apply"}),
            (_Stage("social_measure", self.measure), {"after": "learn"}),
        ]

    # -- social_plan ------------------------------------------------------------------------
    def plan(self, world: "SimWorld", rnd: "Round") -> None:
        plan = _Plan()
        platform = []
        for agent in sorted(rnd.active, key=lambda a: a.agent_id):
            a = agent.agent_id
            rng = world.streams.generator("social", rnd.number, a)
            mix = self.mix.get(a)
            mode = draw_mode(mix, rng) if mix is not None else "watch"
            if mode == "talk" and not (self.state.graph.friends(a) and agent.state.watched):
                mode = "watch"  # nobody to talk to, or nothing seen to talk about: the platform instead
            if mode == "watch":
                platform.append(agent)
            else:
                plan.modes[a] = mode
                plan.rngs[a] = rng
        rnd.active = platform
        rnd.extra["social"] = plan

    # -- social_observe ---------------------------------------------------------------------
    def observe(self, world: "SimWorld", rnd: "Round") -> None:
        plan: _Plan = rnd.extra["social"]
        spec = self.config.word_of_mouth
        by_author = posts_by_author(self.state.posts)
        enriched = []
        for obs in rnd.observations:
            heard = self.state.fresh_heard(obs.agent_id, rnd.number, spec.fresh_rounds)
            heard = {i: h for i, h in heard.items() if i in self.catalog and i not in obs.watched}
            plan.heard[obs.agent_id] = heard
            feed = rank_feed(obs.agent_id, self.state.graph, by_author, self.state.likes,
                             self.state.seen.get(obs.agent_id, set()), rnd.number, self.config.feed)
            lines = tuple(f"{world.users[p.author].persona.name}: {p.text}" for p in feed)
            extra = dict(obs.extra)
            if heard:
                extra["heard"] = {i: spec.uplift * h.verdict for i, h in heard.items()}
                extra["lookup"] = spec.lookup
            enriched.append(replace(obs, feed=lines, extra=extra) if heard or lines else obs)
        rnd.observations = enriched

    # -- social_decide ----------------------------------------------------------------------
    def decide(self, world: "SimWorld", rnd: "Round") -> None:
        plan: _Plan = rnd.extra["social"]
        by_author = posts_by_author(self.state.posts)
        rec_scores = self._recommender_scores(world, [a for a, m in plan.modes.items() if m == "post"])
        for a in sorted(plan.modes):
            if plan.modes[a] == "talk":
                plan.actions[a] = [self._start_chat(world, rnd, a, plan.rngs[a])]
            else:
                plan.actions[a] = self._feed_visit(world, rnd, a, plan.rngs[a], by_author, rec_scores.get(a))

    def _speaker(self, world: "SimWorld", agent_id: int) -> Speaker:
        mode = self.config.chat.speaker
        if world.llm is None or mode == "template":
            return self.templates
        if mode == "auto" and getattr(world.users[agent_id].policy, "name", "") != "llm":
            return self.templates
        if self._llm_speaker is None:
            self._llm_speaker = LLMSpeaker(world.llm, self.catalog, self.templates)
        return self._llm_speaker

    def _participant(self, world: "SimWorld", agent_id: int, round_no: int, with_memories: bool) -> Participant:
        state = world.users[agent_id].state
        memories: tuple[str, ...] = ()
        if with_memories:
            if world.memory is not None:
                memories = world.memory.peek(agent_id, "films to talk about with a friend", round_no)
            else:
                memories = tuple(state.recent)
        return Participant(agent_id=agent_id, persona=state.persona, taste=state.taste.copy(),
                           watched=dict(state.watched), diary=tuple(self.state.diary.get(agent_id, ())),
                           memories=memories)

    def _start_chat(self, world: "SimWorld", rnd: "Round", a: int, rng: np.random.Generator):
        b = pick_friend(self.state.graph, a, rng)
        speakers = {a: self._speaker(world, a), b: self._speaker(world, b)}
        pa = self._participant(world, a, rnd.number, speakers[a] is not self.templates)
        pb = self._participant(world, b, rnd.number, speakers[b] is not self.templates)
        thread = self.state.new_thread_id()
        coro = run_chat(pa, pb, speakers, max_turns=self.config.chat.max_turns, round_no=rnd.number,
                        rng=world.streams.generator("social_chat", rnd.number, thread), matcher=self.matcher,
                        end_chance=self.config.chat.end_chance)

        async def chat() -> ChatAction:
            return ChatAction(thread_id=thread, partner=b, turns=await coro)

        return world.loop.start(chat())

    def _recommender_scores(self, world: "SimWorld", readers: list[int]) -> dict[int, dict[int, float]]:
        """Per reader, the recommender's view of each film (1 = its top pick, falling to 0)."""
        if not readers or not self.config.feed.w_recommender:
            return {}
        k = min(len(self.catalog), 100)
        ranked = world.recommender.recommend(sorted(readers), k, exclude_seen=False)
        return {r: {item: 1.0 - pos / k for pos, item in enumerate(items)} for r, items in zip(sorted(readers), ranked)}

    def _feed_visit(self, world: "SimWorld", rnd: "Round", a: int, rng: np.random.Generator, by_author,
                    rec_scores) -> list[Any]:
        """Read the feed (like, repost, follow, unfollow), then post about a recent film."""
        spec, follow = self.config.feed, self.config.follow
        graph, state = self.state.graph, self.state
        user = world.users[a]
        feed = rank_feed(a, graph, by_author, state.likes, state.seen.get(a, set()), rnd.number, spec, rec_scores)
        actions: list[Any] = []
        liked, reposts, follows = [], [], []
        followed = set(graph.following(a))
        for post in feed:
            suits, match = appeal(user.state.taste, self.catalog.genre_matrix[self.catalog.row(post.item_id)],
                                  post.verdict)
            if rng.random() < spec.like_rate * suits:
                liked.append(post.post_id)
                if rng.random() < spec.repost_rate and post.item_id not in state.posted.get(a, set()):
                    reposts.append(post)
                if post.root_author not in followed and post.root_author != a and rng.random() < follow.follow_rate:
                    follows.append(FollowAction(post.root_author, True))
                    followed.add(post.root_author)
            elif match < 0.25 and post.parent_id is None and post.author in followed \
                    and rng.random() < follow.unfollow_rate:
                follows.append(FollowAction(post.author, False))
                followed.discard(post.author)
        if follow.suggest_rate and rng.random() < follow.suggest_rate:
            suggested = who_to_follow(graph, a, followed)
            if suggested is not None:
                follows.append(FollowAction(suggested, True))
        actions.append(ReadFeedAction(post_ids=tuple(p.post_id for p in feed), liked=tuple(liked)))
        audience = tuple(graph.followers(a))
        for post in reposts:
            text = repost_text(self.catalog.get(post.item_id), world.users[post.root_author].persona.name, rng)
            actions.append(PostAction(post_id=state.new_post_id(), item_id=post.item_id, text=text, audience=audience,
                                      verdict=post.verdict, parent_id=post.post_id))
        actions.extend(follows)
        entry = post_topic(state.diary.get(a, ()), state.posted.get(a, set()), (p.item_id for p in reposts))
        if entry is not None:
            actions.append(self._start_post(world, rnd, a, entry, audience, rng))
        return actions

    def _start_post(self, world: "SimWorld", rnd: "Round", a: int, entry: DiaryEntry, audience: tuple[int, ...],
                    rng: np.random.Generator):
        post_id = self.state.new_post_id()
        item = self.catalog.get(entry.item_id)
        fallback = post_text(item, entry.rating, entry.feeling, rng)  # drawn now: the same draws either way
        speaker = self._speaker(world, a)
        base = PostAction(post_id=post_id, item_id=item.item_id, text=fallback, audience=audience,
                          verdict=verdict(entry.rating), meta=DecisionMeta(policy="rule"))
        if speaker is self.templates:
            return base
        me = self._participant(world, a, rnd.number, with_memories=False)

        async def write() -> PostAction:
            written = await speaker.write_post(me, entry, rnd.number)
            if written is None:
                return replace(base, meta=DecisionMeta(policy="fallback", fallback_reason="post text invalid twice"))
            text, meta = written
            return replace(base, text=text, meta=meta)

        return world.loop.start(write())

    # -- social_apply -----------------------------------------------------------------------
    def apply(self, world: "SimWorld", rnd: "Round") -> None:
        plan: _Plan = rnd.extra["social"]
        agents = sorted(plan.actions)
        tasks = [(a, k) for a in agents for k, act in enumerate(plan.actions[a]) if not _is_action(act)]
        done = world.gather([plan.actions[a][k] for a, k in tasks])
        for (a, k), action in zip(tasks, done):
            plan.actions[a][k] = action
        self._count = dict.fromkeys(("chats", "chat_messages", "posts", "reposts", "likes", "follows", "unfollows",
                                     "mentions"), 0)
        self._touched = set()
        self._attribute_watches(rnd, plan)
        lookup = {p: (post.author, post.item_id) for p, post in self.state.posts.items()}
        for a in agents:
            for action in plan.actions[a]:
                self._apply(world, rnd, a, action, lookup)
            state = world.users[a].state
            state.idle_rounds = 0  # end_round counted the round as idle: it was spent socially
            state.rounds_active += 1

    def _attribute_watches(self, rnd: "Round", plan: _Plan) -> None:
        """Each watch of a film heard about before the round came from that mention; every watch
        of the round also enters its agent's diary (what it chats and posts about)."""
        cols = rnd.events.cols
        for k, action in enumerate(cols["action"]):
            if action != "watch":
                continue
            a, item = cols["agent_id"][k], cols["item_id"][k]
            heard = plan.heard.get(a, {}).get(item)
            if heard is not None:
                cols["source"][k] = heard.source
                counts = self.state.adoptions.setdefault(item, [0, 0])
                counts[0 if heard.source == "friend" else 1] += 1
                self.state.heard.get(a, {}).pop(item, None)
                self._touched.add(item)
            self.state.remember_watch(a, DiaryEntry(rnd.number, item, float(cols["rating"][k] or 0.0),
                                                    cols["text"][k] or ""))

    def _apply(self, world: "SimWorld", rnd: "Round", a: int, action: SocialAction,
               lookup: dict[int, tuple[int, int]]) -> None:
        state, graph = self.state, self.state.graph
        if isinstance(action, ChatAction):
            rnd.events.add_social(a, action)
            self._count["chats"] += 1
            self._count["chat_messages"] += len(action.turns)
            graph.strengthen(a, action.partner, CHAT_TIE_GAIN)
            named = False
            for turn in action.turns:
                speaker = world.users[turn.speaker].state
                for item_id in turn.mentions:
                    named = True
                    self._count["mentions"] += 1
                    rating = speaker.watched.get(item_id)
                    teller_verdict = verdict(rating) if rating is not None else 0.0
                    self._hear(world, rnd, turn.listener, item_id, "friend", turn.speaker, teller_verdict, turn.text)
                    self._note(world, rnd, turn.speaker,
                               told_memory(turn.speaker, self.catalog.get(item_id),
                                           world.users[turn.listener].persona.name, rnd.number))
            if not named and action.turns:
                last = action.turns[-1].text
                for me, other in ((a, action.partner), (action.partner, a)):
                    self._note(world, rnd, me, chat_memory(me, world.users[other].persona.name, rnd.number, last))
        elif isinstance(action, ReadFeedAction):
            rnd.events.add_social(a, action, lookup)
            seen = state.seen.setdefault(a, set())
            for post_id in action.post_ids:
                post = state.posts[post_id]
                seen.add(post_id)
                self._hear(world, rnd, a, post.item_id, "feed", post.author, post.verdict, post.text)
            for post_id in action.liked:
                post = state.posts[post_id]
                state.likes.setdefault(post_id, []).append(a)
                state.item_likes[post.item_id] = state.item_likes.get(post.item_id, 0) + 1
                self._count["likes"] += 1
                self._touched.add(post.item_id)
        elif isinstance(action, PostAction):
            parent = state.posts.get(action.parent_id) if action.parent_id is not None else None
            post = Post(post_id=action.post_id, author=a, item_id=action.item_id, text=action.text, round=rnd.number,
                        verdict=action.verdict, parent_id=action.parent_id,
                        root_id=parent.root_id if parent else action.post_id,
                        root_author=parent.root_author if parent else a)
            rnd.events.add_social(a, action, lookup)
            state.posts[post.post_id] = post
            state.posted.setdefault(a, set()).add(post.item_id)
            state.post_log = pl.concat([state.post_log, pl.DataFrame(
                [(rnd.number, post.post_id, a, post.item_id, post.parent_id)], schema=state.post_log.schema,
                orient="row")])
            self._count["reposts" if parent else "posts"] += 1
            self._touched.add(post.item_id)
            repost_of = world.users[parent.root_author].persona.name if parent else None
            self._note(world, rnd, a, post_memory(a, self.catalog.get(post.item_id), post.text, rnd.number, repost_of))
        elif isinstance(action, FollowAction):
            changed = graph.follow(a, action.target) if action.follow else graph.unfollow(a, action.target)
            if changed:
                rnd.events.add_social(a, action)
                self._count["follows" if action.follow else "unfollows"] += 1

    def _hear(self, world: "SimWorld", rnd: "Round", agent_id: int, item_id: int, source: str, teller: int,
              teller_verdict: float, said: str) -> None:
        state = world.users[agent_id].state
        if item_id in state.watched or item_id not in self.catalog:
            return
        self.state.heard.setdefault(agent_id, {})[item_id] = Heard(item_id, rnd.number, source, teller, teller_verdict)
        record = heard_memory(agent_id, self.catalog.get(item_id), world.users[teller].persona.name, source,
                              teller_verdict, rnd.number, said)
        self._note(world, rnd, agent_id, record)

    def _note(self, world: "SimWorld", rnd: "Round", agent_id: int, record) -> None:
        """A memory: in the round's batch for the memory store, and in the agent's recent events."""
        world.users[agent_id].state.recent.append(record.text)
        if world.memory is not None:
            rnd.memories.setdefault(agent_id, []).append(record)

    # -- social_measure ---------------------------------------------------------------------
    def measure(self, world: "SimWorld", rnd: "Round") -> None:
        plan: _Plan | None = rnd.extra.get("social")
        state = self.state
        agents = sorted(world.users)
        tastes = {a: world.users[a].state.taste for a in agents}
        communities = _community_rows(state.communities, rnd.number, agents, np.array([tastes[a] for a in agents]))
        labels = dict(zip(communities["agent_id"].to_list(), communities["community"].to_list()))
        figures = homophily(state.graph.g, labels, tastes)
        count = self._count
        modes = plan.modes if plan is not None else {}
        row = {"round": rnd.number, "talkers": sum(m == "talk" for m in modes.values()),
               "posters": sum(m == "post" for m in modes.values()),
               **{k: count.get(k, 0) for k in ("chats", "chat_messages", "posts", "reposts", "likes", "follows",
                                                "unfollows", "mentions")},
               "follow_edges": state.graph.edge_count(), "friendships": len(state.graph.friend_pairs()),
               "posts_in_feeds": len(state.posts),
               "agents_with_mentions": len(state.heard), **figures}
        touched = sorted(self._touched)
        self._touched, self._count = set(), {}
        state.figures[files.ROUNDS] = pl.concat([state.figures[files.ROUNDS], pl.DataFrame([row], schema=ROUND_SCHEMA)])
        state.figures[files.COMMUNITIES] = pl.concat([state.figures[files.COMMUNITIES], communities])
        if touched:
            state.figures[files.CASCADES] = pl.concat([state.figures[files.CASCADES],
                                                       self._cascade_rows(rnd.number, touched)])
        state.prune(rnd.number, self.config.feed.max_age, self.config.word_of_mouth.fresh_rounds)
        state.post_log = state.post_log.rechunk()  # one chunk, not one per post
        self._write(graph_too=not self._written_graph)

    def _cascade_rows(self, round_no: int, items: list[int]) -> pl.DataFrame:
        log = self.state.post_log
        stats = item_cascades(log.filter(pl.col("item_id").is_in(items))) if log.height else {}
        rows = []
        for item in items:
            s = stats.get(item, {})
            friend, feed = self.state.adoptions.get(item, [0, 0])
            rows.append({"round": round_no, "item_id": item, "cascades": int(s.get("cascades", 0)),
                         "posts": int(s.get("posts", 0)), "reposts": int(s.get("reposts", 0)),
                         "likes": self.state.item_likes.get(item, 0), "size": int(s.get("size", 0)),
                         "depth": int(s.get("depth", 0)), "max_breadth": int(s.get("max_breadth", 0)),
                         "structural_virality": float(s.get("structural_virality", 0.0)),
                         "adoptions_friend": friend, "adoptions_feed": feed})
        return pl.DataFrame(rows, schema=CASCADE_SCHEMA)

    def _write(self, graph_too: bool) -> None:
        if self.run_dir is None:
            return
        files.write(self.run_dir, self.state.figures, graph_too)
        self._written_graph = True

    # -- checkpoint -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state}

    def load_state(self, saved: dict[str, Any]) -> None:
        self.state = saved["state"]
        self._write(graph_too=True)  # drop any figure of a round past the checkpoint


def _community_rows(communities, round_no: int, ids: list[int], tastes: np.ndarray) -> pl.DataFrame:
    """Each agent's taste community now (its taste's nearest community centroid)."""
    labels = communities.assign(tastes).tolist() if ids else []
    return pl.DataFrame({"round": [round_no] * len(ids), "agent_id": ids, "community": labels},
                        schema=COMMUNITY_SCHEMA)


def _is_action(obj: Any) -> bool:
    return isinstance(obj, (ChatAction, PostAction, ReadFeedAction, FollowAction))


@dataclass(frozen=True)
class _Stage:
    name: str
    fn: Any

    def run(self, world: "SimWorld", rnd: "Round") -> None:
        self.fn(world, rnd)


@dataclass(frozen=True)
class _StatefulStage(_Stage):
    """The stage that carries the social state into the checkpoint (one is enough: the stages
    share the layer)."""

    layer: SocialLayer = None  # type: ignore[assignment]

    def state_dict(self) -> dict[str, Any]:
        return self.layer.state_dict()

    def load_state(self, saved: dict[str, Any]) -> None:
        self.layer.load_state(saved)
