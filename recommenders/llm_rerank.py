"""LLM re-ranker: candidates from another registered algorithm, re-ordered by a language model.

For each user, the base algorithm's top `candidates` items are shown to the LLM (through
`context.llm`, a `simworld.llm.LanguageModel`, so the run's cache, ledger, limits and budget
apply) together with the user's latest rated items; the model answers with the candidate
ids best first, as JSON validated against `RerankAnswer`. Ids it omits keep their base order
after the ones it ranked; ids it invents are dropped. When the LLM is missing or fails
(unreachable, budget spent, output that does not validate, no candidate id in the answer),
that user keeps the base order and the failure is counted in `failures` (by reason), never
hidden. Users without history keep the base order without asking (counted in `cold_skipped`).

`recommend` is sync (the world's recommend stage) and the LLM is async: the calls of all the
users of a batch run concurrently on the run's loop (`context.loop`, a `simworld.aio.LoopRunner`;
`asyncio.run` without one). A checkpoint keeps the LLM and the loop by reference, as the
run's shared objects, so a resumed run's re-ranker has the live ones of the new process.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import polars as pl
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from simworld.recommenders.base import RecommenderConfig, RecommenderContext, ScoringRecommender

SYSTEM_PROMPT = (
    "You are the ranking stage of a film recommender. Given what a user watched and how they "
    "rated it (0.5 to 5 stars), order the candidate films from the one they will most enjoy to "
    "the least. Answer only with JSON: {\"ranking\": [candidate ids, best first]}."
)


class RerankAnswer(BaseModel):
    """The structured output the LLM must return."""

    ranking: list[int] = Field(description="candidate item ids, best first")


class LLMRerankConfig(RecommenderConfig):
    base: str = Field(default="popularity", description="registered algorithm giving the candidates")
    base_params: dict[str, Any] = Field(default_factory=dict, description="the base algorithm's config")
    candidates: int = Field(default=30, ge=1, description="items from the base shown to the LLM")
    history_items: int = Field(default=10, ge=0, description="latest history items in the prompt")
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=400, ge=16)

    @field_validator("base")
    @classmethod
    def _another_algorithm(cls, value: str) -> str:
        from simworld.errors import SimworldError
        from simworld.recommenders.registry import resolve  # the registry imports us

        if value == "llm_rerank":
            raise ValueError("llm_rerank cannot re-rank its own candidates: choose another base")
        try:
            resolve(value)
        except SimworldError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _base_params(self) -> "LLMRerankConfig":
        from simworld.recommenders.registry import validate_params

        try:
            validate_params(self.base, self.base_params)
        except ValidationError as exc:
            raise ValueError("; ".join(f"base_params.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                       for e in exc.errors())) from None
        return self


class LLMRerankRecommender(ScoringRecommender):
    """Re-ranks another algorithm's candidates with an LLM; one LLM call per warm user and page."""

    Config = LLMRerankConfig
    config: LLMRerankConfig

    def __init__(self, config: LLMRerankConfig | None = None, context: RecommenderContext | None = None):
        super().__init__(config, context)
        from simworld.recommenders.registry import build_recommender  # the registry may import us

        if self.config.base == "llm_rerank":
            raise ValueError("llm_rerank cannot re-rank its own candidates: choose another base")
        # The base never sees the LLM: it needs none, and it must pickle without it.
        self.base = build_recommender(self.config.base, self.config.base_params, replace(context, llm=None))
        self.llm = context.llm
        self.failures: Counter[str] = Counter()
        self.cold_skipped = 0
        self.calls = 0

    def attach_llm(self, llm: Any, loop: Any | None = None) -> None:
        """Give the re-ranker an LLM (and the loop runner its calls run on) after it was built."""
        self.llm = llm
        self.context = replace(self.context, llm=llm, loop=loop if loop is not None else self.context.loop)

    # -- protocol ---------------------------------------------------------------------------
    def fit(self, interactions: pl.DataFrame) -> None:
        super().fit(interactions)
        self.base.fit(interactions)

    def update(self, new_interactions: pl.DataFrame) -> None:
        super().update(new_interactions)
        self.base.update(new_interactions)

    def recommend(self, user_ids: Sequence[int], k: int, exclude_seen: bool = True) -> list[list[int]]:
        users = [int(u) for u in user_ids]
        if not users or k <= 0:
            return [[] for _ in users]
        pool = self.base.recommend(users, max(k, self.config.candidates), exclude_seen)
        heads = [ranked[:self.config.candidates] for ranked in pool]

        async def all_users() -> list[list[int]]:
            return list(await asyncio.gather(*(self._rerank(u, head) for u, head in zip(users, heads))))

        loop = self.context.loop
        reranked = loop.run(all_users()) if loop is not None else asyncio.run(all_users())
        return [(new + ranked[len(head):])[:k] for new, head, ranked in zip(reranked, heads, pool)]

    def _score(self, user_ids: list[int]) -> np.ndarray:  # recommend() is overridden
        return np.zeros((len(user_ids), len(self.catalog)))

    # -- the LLM step -----------------------------------------------------------------------
    async def _rerank(self, user: int, candidates: list[int]) -> list[int]:
        if len(candidates) < 2:
            return candidates
        history = self._recent(user)
        if not history:
            self.cold_skipped += 1
            return candidates
        if self.llm is None:
            self.failures["no_llm"] += 1
            return candidates
        from simworld.llm import LLMCacheMiss, LLMError, LLMRequest

        request = LLMRequest(
            messages=[{"role": "system", "content": SYSTEM_PROMPT},
                      {"role": "user", "content": self._prompt(history, candidates)}],
            response_model=RerankAnswer, purpose="rerank", agent_id=user,
            temperature=self.config.temperature, max_tokens=self.config.max_tokens, seed=self.seed,
        )
        self.calls += 1
        try:
            answer = (await self.llm.complete(request)).parsed
        except LLMCacheMiss:
            raise  # a replay missing an answer must fail, not quietly keep the base order
        except LLMError as exc:
            self.failures[exc.outcome] += 1
            return candidates
        allowed = set(candidates)
        ranked = list(dict.fromkeys(i for i in getattr(answer, "ranking", ()) if i in allowed))
        if not ranked:
            self.failures["no_candidate_in_answer"] += 1
            return candidates
        return ranked + [i for i in candidates if i not in set(ranked)]

    def _recent(self, user: int) -> list[tuple[int, float | None]]:
        if self.config.history_items == 0:
            return [(-1, None)] if self.seen(user) else []
        rows = self.history.filter(pl.col("user_id") == user).select("item_id", "rating").rows()
        rows = [(i, r) for i, r in rows if i in self.catalog]
        return list(dict(rows).items())[-self.config.history_items:]  # latest rating per item

    def _prompt(self, history: list[tuple[int, float | None]], candidates: list[int]) -> str:
        lines = ["The user recently watched:"]
        for item_id, rating in history:
            if item_id < 0 or item_id not in self.catalog:
                continue
            stars = "unrated" if rating is None else f"{rating:g} stars"
            lines.append(f"- {self.catalog.get(item_id).text} ({stars})")
        lines.append("")
        lines.append("Candidates (id: film):")
        lines.extend(f"{i}: {self.catalog.get(i).text}" for i in candidates)
        lines.append("")
        lines.append(f"Return all {len(candidates)} candidate ids, best first.")
        return "\n".join(lines)
