"""The event log's schema and a builder that turns a round's actions into rows."""

from __future__ import annotations

import polars as pl

from simworld.agents.actions import Action, BrowseAction, DecisionMeta, PageDecision, SearchAction

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String,
    "round": pl.Int64,
    "agent_id": pl.Int64,
    "seq": pl.Int64,  # order of the row within its round: apply order, deterministic
    "action": pl.String,  # page | watch | next_page | leave | search | idle | (later: post, chat, ...)
    "item_id": pl.Int64,
    "rating": pl.Float64,
    "text": pl.String,  # feeling, search query, fallback reason...
    "items": pl.List(pl.Int64),  # items shown on a page or returned by a search
    "policy": pl.String,  # rule | llm | fallback
    "latency_ms": pl.Float64,  # decision time; on the action's first row, 0 on the others
    "prompt_tokens": pl.Int64,  # LLM tokens of the decision; on the first row only
    "completion_tokens": pl.Int64,
}


def empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_SCHEMA)


class EventBuilder:
    """Accumulates one round's rows column by column (cheap), then makes one frame."""

    def __init__(self, run_id: str, round_no: int):
        self.run_id = run_id
        self.round = round_no
        self.cols: dict[str, list] = {name: [] for name in EVENT_SCHEMA}

    def add(self, agent_id: int, action: str, meta: DecisionMeta | None, *, item_id: int | None = None,
            rating: float | None = None, text: str | None = None, items: list[int] | None = None,
            policy: str = "rule") -> None:
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
                self._page(agent_id, decision, policy, last=index + 1 == len(action.pages))
        elif isinstance(action, SearchAction):
            self.add(agent_id, "search", first, text=action.query, items=list(action.results), policy=policy)
            self._page(agent_id, action.decision, policy, last=True, closing=False)
        else:
            self.add(agent_id, "idle", first, policy=policy)

    def _page(self, agent_id: int, decision: PageDecision, policy: str, last: bool, closing: bool = True) -> None:
        for w in decision.watches:
            self.add(agent_id, "watch", None, item_id=w.item_id, rating=w.rating, text=w.feeling, policy=policy)
        if not closing:
            return
        if decision.then == "next_page" and not last:
            self.add(agent_id, "next_page", None, policy=policy)
        elif last:
            self.add(agent_id, "leave", None, policy=policy)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.cols, schema=EVENT_SCHEMA)
