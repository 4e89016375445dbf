"""The social layer's state between rounds: graph, posts still in feeds, what each agent
heard and watched lately, the id counters, and the figures recorded so far. It is all plain
data (networkx, dicts, polars frames): it joins the round's checkpoint as it is, so a resumed
run continues from exactly the graph, posts and mentions the killed one had committed."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from simworld.social.graph import Communities, SocialGraph

DIARY = 6  # recent watches remembered per agent (what it chats and posts about)
POST_LOG_SCHEMA = {"round": pl.Int64, "post_id": pl.Int64, "author": pl.Int64, "item_id": pl.Int64,
                   "parent_id": pl.Int64}


@dataclass(frozen=True)
class Post:
    post_id: int
    author: int
    item_id: int
    text: str
    round: int
    verdict: float  # the author's view of the film: -1 (hated) .. +1 (loved)
    parent_id: int | None = None  # a repost: the post it reposts (itself perhaps a repost)
    root_id: int = 0  # the original post of its cascade (itself for an original)
    root_author: int = 0


@dataclass(frozen=True)
class Heard:
    """A film an agent heard about: from a friend in a chat, or from a post in its feed."""

    item_id: int
    round: int
    source: str  # "friend" | "feed"
    teller: int
    verdict: float


@dataclass(frozen=True)
class DiaryEntry:
    round: int
    item_id: int
    rating: float
    feeling: str


@dataclass
class SocialState:
    graph: SocialGraph
    communities: Communities
    posts: dict[int, Post] = field(default_factory=dict)  # posts still in feeds (younger than max_age)
    likes: dict[int, list[int]] = field(default_factory=dict)  # post id -> who liked it, for posts in feeds
    seen: dict[int, set[int]] = field(default_factory=dict)  # reader -> post ids already read
    heard: dict[int, dict[int, Heard]] = field(default_factory=dict)  # agent -> item id -> latest mention
    diary: dict[int, list[DiaryEntry]] = field(default_factory=dict)  # agent -> recent watches, newest last
    posted: dict[int, set[int]] = field(default_factory=dict)  # author -> items already posted about
    post_log: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=POST_LOG_SCHEMA))  # every post
    item_likes: dict[int, int] = field(default_factory=dict)  # item -> likes of its posts, all rounds
    adoptions: dict[int, list[int]] = field(default_factory=dict)  # item -> [watches after a chat, after a post]
    next_post_id: int = 1
    next_thread_id: int = 1
    figures: dict[str, pl.DataFrame] = field(default_factory=dict)  # file name -> rows recorded so far

    def new_post_id(self) -> int:
        self.next_post_id += 1
        return self.next_post_id - 1

    def new_thread_id(self) -> int:
        self.next_thread_id += 1
        return self.next_thread_id - 1

    def remember_watch(self, agent_id: int, entry: DiaryEntry) -> None:
        diary = self.diary.setdefault(agent_id, [])
        diary[:] = [e for e in diary if e.item_id != entry.item_id] + [entry]
        del diary[:-DIARY]

    def fresh_heard(self, agent_id: int, now: int, fresh_rounds: int) -> dict[int, Heard]:
        """Mentions still in mind at round `now` (heard in the last `fresh_rounds` rounds)."""
        return {i: h for i, h in sorted(self.heard.get(agent_id, {}).items()) if now - h.round <= fresh_rounds}

    def prune(self, now: int, max_age: int, fresh_rounds: int) -> None:
        """Posts leave feeds after `max_age` rounds; mentions fade after `fresh_rounds`."""
        old = [p for p, post in self.posts.items() if now - post.round >= max_age]
        for post_id in old:
            del self.posts[post_id]
            self.likes.pop(post_id, None)
        if old:
            gone = set(old)
            for reader in self.seen:
                self.seen[reader] -= gone
        for agent_id in list(self.heard):
            kept = {i: h for i, h in self.heard[agent_id].items() if now - h.round < fresh_rounds}
            if kept:
                self.heard[agent_id] = kept
            else:
                del self.heard[agent_id]
