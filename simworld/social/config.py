"""Typed, frozen configuration of the social layer (the scenario's `social:` section).

A leaf module: it imports nothing of the world, so `simworld.config` can embed it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    # as simworld.config.Section: unknown fields are errors, every float is finite
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GraphConfig(_Section):
    """Who knows whom at the start: friends (mutual follows) and one-way follows."""

    source: Literal["taste_sbm", "watts_strogatz", "barabasi_albert", "edge_list"] = Field(
        "taste_sbm", description="taste_sbm: a stochastic block model whose blocks are taste communities "
        "(people befriend people who like what they like); watts_strogatz: a small world; barabasi_albert: "
        "a few very connected people; edge_list: a file")
    degree: int = Field(6, ge=1, le=1000, description="mean number of friends (generators)")
    rewire: float = Field(0.1, ge=0, le=1, description="watts_strogatz: chance that a ring edge is rewired")
    within_share: float = Field(0.8, ge=0, le=1, description="taste_sbm: share of friendships inside the "
                                "person's own taste community")
    communities: int = Field(6, ge=1, le=100, description="taste communities (k-means of the agents' genre "
                             "tastes): the blocks of taste_sbm and the colours of the viewer's network")
    follows: float = Field(1.0, ge=0, le=100, description="extra one-way follows per agent, mean; chosen in "
                           "proportion to followers already had (popular accounts gain more)")
    path: str | None = Field(None, description="edge_list: a CSV/TSV/space-separated file of `source target "
                             "[relation] [weight]` agent ids, relative to the scenario file")
    directed: bool = Field(False, description="edge_list: each line is a one-way follow (source follows "
                           "target) instead of a friendship")

    @model_validator(mode="after")
    def _path_needed(self) -> "GraphConfig":
        if self.source == "edge_list" and not self.path:
            raise ValueError("source 'edge_list' needs a path")
        if self.source != "edge_list" and self.path:
            raise ValueError(f"path is given but source is {self.source!r}: set source to 'edge_list' or remove path")
        return self


class MixConfig(_Section):
    """What an active agent does with its round: watch (the platform), talk (chat with a
    friend) or post (read the feed, react, post). Each persona draws its own mix around these
    means; sociable people talk more, introverted ones less, critical ones post more."""

    watch: float = Field(0.55, ge=0, description="weight of a round on the platform (browse, search, watch)")
    talk: float = Field(0.25, ge=0, description="weight of a round chatting with a friend")
    post: float = Field(0.2, ge=0, description="weight of a round on the feed: read, like, repost, follow, post")
    spread: float = Field(6.0, gt=0, le=1000, description="how alike people's mixes are (Dirichlet "
                          "concentration): low = some people mostly watch, some mostly talk or post")

    @model_validator(mode="after")
    def _some_weight(self) -> "MixConfig":
        if self.watch + self.talk + self.post <= 0:
            raise ValueError("at least one of watch, talk, post must be > 0")
        return self


class ChatConfig(_Section):
    max_turns: int = Field(4, ge=2, le=20, description="most messages in one chat (both sides together)")
    speaker: Literal["auto", "template", "llm"] = Field(
        "auto", description="who writes chat lines and posts: auto = the LLM for agents that decide by LLM, "
        "templates for everyone else; template = templates for all; llm = the LLM for all")
    end_chance: float = Field(0.3, ge=0, le=1, description="templates: chance per message, after the first "
                              "answer, that the speaker wraps the chat up")


class FeedConfig(_Section):
    """The feed: posts of the accounts a reader follows, ranked per reader."""

    size: int = Field(5, ge=1, le=100, description="posts a reader sees in one visit")
    max_age: int = Field(5, ge=1, le=1000, description="rounds a post stays in feeds")
    w_recency: float = Field(1.0, ge=0, description="weight of freshness (1 this round, halving each round)")
    w_tie: float = Field(1.0, ge=0, description="weight of the reader's tie strength with the poster")
    w_likes: float = Field(0.3, ge=0, description="weight of log(1 + likes)")
    w_recommender: float = Field(0.0, ge=0, description="weight of the recommender's rank of the post's film "
                                 "for the reader (0 = off; costs one recommender call per round)")
    like_rate: float = Field(0.8, ge=0, le=1, description="chance of liking a post on a film that suits the reader")
    repost_rate: float = Field(0.5, ge=0, le=1, description="chance of reposting a post the reader liked")


class FollowConfig(_Section):
    follow_rate: float = Field(0.3, ge=0, le=1, description="chance of following the author of a reposted post "
                               "the reader liked, when not following them yet")
    unfollow_rate: float = Field(0.15, ge=0, le=1, description="chance of unfollowing an account whose post is "
                                 "on a film the reader dislikes")
    suggest_rate: float = Field(0.1, ge=0, le=1, description="chance, per feed visit, of following the friend of "
                                "a friend who shares most followed accounts with the reader")


class WordOfMouthConfig(_Section):
    """How hearing about a film from a friend (a chat) or a post (the feed) changes watching."""

    uplift: float = Field(1.5, ge=0, le=20, description="rule policy: log-odds added to watching a film heard "
                          "about, times the teller's verdict (-1 warned off .. +1 loved it)")
    lookup: float = Field(0.25, ge=0, le=1, description="rule policy: chance that an agent who heard about a "
                          "film looks it up in the search box instead of browsing")
    fresh_rounds: int = Field(5, ge=1, le=1000, description="rounds a mention stays in mind")


class SocialConfig(_Section):
    graph: GraphConfig = Field(default_factory=GraphConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)
    feed: FeedConfig = Field(default_factory=FeedConfig)
    follow: FollowConfig = Field(default_factory=FollowConfig)
    word_of_mouth: WordOfMouthConfig = Field(default_factory=WordOfMouthConfig)
