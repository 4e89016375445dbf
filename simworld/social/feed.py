"""The feed: the posts of the accounts a reader follows, ranked for that reader.

    score = w_recency * 0.5 ** (rounds since posted - 1)
          + w_tie * tie strength (reader -> poster)
          + w_likes * log(1 + likes)
          + w_recommender * the recommender's view of the post's film for the reader (0..1)

A post stays in feeds for `max_age` rounds and is shown to a reader once. A reader sees one
post per cascade (the best-scored of a film's original and its reposts), never its own posts
nor reposts of them. Ties go to the older post (smaller id).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from simworld.social.config import FeedConfig
from simworld.social.graph import SocialGraph
from simworld.social.state import Post


def posts_by_author(posts: Mapping[int, Post]) -> dict[int, list[Post]]:
    out: dict[int, list[Post]] = {}
    for post_id in sorted(posts):
        post = posts[post_id]
        out.setdefault(post.author, []).append(post)
    return out


def rank_feed(reader: int, graph: SocialGraph, by_author: Mapping[int, list[Post]], likes: Mapping[int, list[int]],
              seen: set[int], now: int, spec: FeedConfig,
              recommender_score: Mapping[int, float] | None = None) -> list[Post]:
    """The reader's feed at round `now`: at most `spec.size` posts, best first."""
    scored: dict[int, tuple[float, Post]] = {}  # root id -> best (score, post)
    for author in graph.following(reader):
        tie = graph.tie(reader, author)
        for post in by_author.get(author, ()):
            age = now - post.round
            if age < 1 or age > spec.max_age or post.post_id in seen or post.root_author == reader:
                continue
            score = (spec.w_recency * 0.5 ** (age - 1) + spec.w_tie * tie
                     + spec.w_likes * math.log1p(len(likes.get(post.post_id, ()))))
            if recommender_score is not None and spec.w_recommender:
                score += spec.w_recommender * recommender_score.get(post.item_id, 0.0)
            best = scored.get(post.root_id)
            if best is None or (score, -post.post_id) > (best[0], -best[1].post_id):
                scored[post.root_id] = (score, post)
    ranked = sorted(scored.values(), key=lambda sp: (-sp[0], sp[1].post_id))
    return [post for _, post in ranked[:spec.size]]
