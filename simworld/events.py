"""The event log's schema and a builder that turns a round's actions into rows."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from simworld.agents.actions import (
    Action, BrowseAction, ChatAction, DecisionMeta, FollowAction, PageDecision, PostAction, ReadFeedAction,
    SearchAction, SocialAction,
)

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "round": pl.Int64,
    "agent_id": pl.Int64,
    "seq": pl.Int64,  # order of the row within its round: apply order, deterministic
    "action": pl.String,  # page | watch | next_page | leave | search | discover | idle | fallback | reflect
    #                       | chat | post | repost | like | read_feed | follow | unfollow
    "item_id": pl.Int64,
    "rating": pl.Float64,
    "text": pl.String,  # feeling, search query, fallback reason...
    "items": pl.List(pl.Int64),  # items shown on a page, returned by a search or found outside the platform
    #                              (discover); films named in a chat
    #                              message; films of the posts read in a feed visit
    "policy": pl.String,  # rule | llm | fallback
    "latency_ms": pl.Float64,  # decision time; on the action's first row, 0 on the others
    "prompt_tokens": pl.Int64,  # LLM tokens of the decision; on the first row only
    "completion_tokens": pl.Int64,
    # the social side (simworld/social)
    "target_id": pl.Int64,  # chat: the addressee; like/repost: the post's author; follow/unfollow: the account
    "thread_id": pl.Int64,  # chat: the conversation the message belongs to
    "post_id": pl.Int64,  # post/repost: the post written; like: the post liked
    "parent_id": pl.Int64,  # repost: the post reposted (follow parents to the original)
    "audience": pl.List(pl.Int64),  # post/repost: the followers it reached
    "source": pl.String,  # watch: page (recommended) | search | friend (a chat) | feed (a post)
    #                       | outside (found outside the platform: the rule policy's discovery channel)
}
SOCIAL_ACTIONS = ("chat", "post", "repost", "like", "read_feed", "follow", "unfollow")


def empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_SCHEMA)


def conform_events(frame: pl.DataFrame) -> pl.DataFrame:
    """An event log with every column of EVENT_SCHEMA, in its order and types: a log written
    before a column existed (the social ones) gets it as nulls."""
    return frame.select([pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype=dtype).alias(name)
                         for name, dtype in EVENT_SCHEMA.items()])


class EventBuilder:
    """Accumulates one round's rows column by column (cheap), then makes one frame."""

    def __init__(self, run_id: str, round_no: int):
        self.run_id = run_id
        self.round = round_no
        self.cols: dict[str, list] = {name: [] for name in EVENT_SCHEMA}

    def add(self, agent_id: int, action: str, meta: DecisionMeta | None, *, item_id: int | None = None,
            rating: float | None = None, text: str | None = None, items: list[int] | None = None,
            policy: str = "rule", target_id: int | None = None, thread_id: int | None = None,
            post_id: int | None = None, parent_id: int | None = None, audience: list[int] | None = None,
            source: str | None = None) -> None:
        c = self.cols
        c["run_id"].append(self.run_id)
        c["round"].append(self.round)
        c["agent_id"].append(agent_id)
        c["seq"].append(len(c["seq"]))
        c["action"].append(action)
        c["item_id"].append(item_id)
        c["rating"].append(rating)
        c["text"].append(text)
        c["items"].append(items)
        c["policy"].append(meta.policy if meta else policy)
        c["latency_ms"].append(meta.latency_ms if meta else 0.0)
        c["prompt_tokens"].append(meta.prompt_tokens if meta else 0)
        c["completion_tokens"].append(meta.completion_tokens if meta else 0)
        c["target_id"].append(target_id)
        c["thread_id"].append(thread_id)
        c["post_id"].append(post_id)
        c["parent_id"].append(parent_id)
        c["audience"].append(audience)
        c["source"].append(source)

    def add_action(self, agent_id: int, action: Action) -> None:
        meta, first = action.meta, action.meta  # cost and latency go on the first row only
        policy = meta.policy
        if meta.fallback_reason:
            self.add(agent_id, "fallback", first, text=meta.fallback_reason)
            first = None
        if isinstance(action, BrowseAction):
            for index, (shown, decision) in enumerate(action.pages):
                self.add(agent_id, "page", first, items=list(shown), text=f"page {index + 1}", policy=policy)
                first = None
                self._page(agent_id, decision, policy, last=index + 1 == len(action.pages), source="page")
        elif isinstance(action, SearchAction):
            self.add(agent_id, "search", first, text=action.query, items=list(action.results), policy=policy)
            self._page(agent_id, action.decision, policy, last=True, closing=False, source="search")
        else:
            self.add(agent_id, "idle", first, policy=policy)
            return
        if action.discovered is not None:  # films found outside the platform, after the platform's
            found, decision = action.discovered
            self.add(agent_id, "discover", None, items=list(found), text="outside the platform", policy=policy)
            self._page(agent_id, decision, policy, last=True, closing=False, source="outside")

    def _page(self, agent_id: int, decision: PageDecision, policy: str, last: bool, closing: bool = True,
              source: str = "page") -> None:
        for w in decision.watches:
            self.add(agent_id, "watch", None, item_id=w.item_id, rating=w.rating, text=w.feeling, policy=policy,
                     source=source)
        if not closing:
            return
        if decision.then == "next_page" and not last:
            self.add(agent_id, "next_page", None, policy=policy)
        elif last:
            self.add(agent_id, "leave", None, policy=policy)

    def add_social(self, agent_id: int, action: SocialAction,
                   posts: Mapping[int, tuple[int, int]] | None = None) -> None:
        """The rows of a social action: one per chat message (by its speaker), post, like,
        feed visit or follow. `posts`: post id -> (author, item id) of the posts it refers to."""
        posts = posts or {}
        if isinstance(action, ChatAction):
            for turn in action.turns:
                self.add(turn.speaker, "chat", turn.meta, item_id=turn.mentions[0] if turn.mentions else None,
                         items=list(turn.mentions), text=turn.text, target_id=turn.listener,
                         thread_id=action.thread_id)
        elif isinstance(action, PostAction):
            author = posts.get(action.parent_id, (None, None))[0] if action.parent_id is not None else None
            self.add(agent_id, "post" if action.parent_id is None else "repost", action.meta, item_id=action.item_id,
                     text=action.text, post_id=action.post_id, parent_id=action.parent_id,
                     audience=list(action.audience), target_id=author)
        elif isinstance(action, ReadFeedAction):
            self.add(agent_id, "read_feed", action.meta, text=f"{len(action.post_ids)} posts",
                     items=[posts[p][1] for p in action.post_ids if p in posts])
            for post_id in action.liked:
                author, item = posts.get(post_id, (None, None))
                self.add(agent_id, "like", None, post_id=post_id, item_id=item, target_id=author,
                         policy=action.meta.policy)
        elif isinstance(action, FollowAction):
            self.add(agent_id, "follow" if action.follow else "unfollow", action.meta, target_id=action.target)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.cols, schema=EVENT_SCHEMA)
