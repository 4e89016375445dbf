"""The LLM re-ranker: structured output through the LLM layer, fallback to the base order, counted."""

from __future__ import annotations

import asyncio

import polars as pl
import pytest

from simworld.aio import LoopRunner
from simworld.llm import LLMCacheMiss, LLMResponse, LLMUnavailableError, validate_output
from simworld.recommenders import RecommenderContext
from simworld.recorder import CHECKPOINT, dump_state, read_checkpoint
from simworld.recommenders.baselines import PopularityRecommender
from simworld.recommenders.llm_rerank import LLMRerankConfig, LLMRerankRecommender, RerankAnswer
from simworld.recommenders.testing import ReverseRankingLLM, contract_catalog, contract_interactions


class ScriptedLLM:
    """Answers with a fixed text (validated like the real layer does), or raises."""

    def __init__(self, text: str | None = None, error: Exception | None = None):
        self.text, self.error, self.requests = text, error, []

    async def complete(self, request):
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return LLMResponse(text=self.text, parsed=validate_output(request, self.text))


def build(llm, loop=None, **params) -> tuple[LLMRerankRecommender, PopularityRecommender]:
    context = RecommenderContext(catalog=contract_catalog(), seed=3, llm=llm, loop=loop)
    rec = LLMRerankRecommender(LLMRerankConfig(candidates=5, **params), context)
    base = PopularityRecommender(None, RecommenderContext(catalog=contract_catalog(), seed=3))
    data = contract_interactions()
    rec.fit(data)
    base.fit(data)
    return rec, base


def test_reverses_candidates_with_the_fake_llm():
    llm = ReverseRankingLLM()
    rec, base = build(llm)
    base_list = base.recommend([1], k=8)[0]
    got = rec.recommend([1], k=8)[0]
    assert got == base_list[:5][::-1] + base_list[5:8]
    assert llm.calls == 1 and rec.calls == 1 and not rec.failures


def test_request_is_structured_and_names_the_history():
    llm = ScriptedLLM(text='{"ranking": []}')
    rec, _ = build(llm)
    rec.recommend([2], k=5)
    request = llm.requests[0]
    assert request.response_model is RerankAnswer and request.purpose == "rerank"
    assert request.agent_id == 2 and request.seed == rec.seed  # the run's seed for the recommender
    prompt = request.messages[-1]["content"]
    watched = contract_interactions().filter(pl.col("user_id") == 2)["item_id"].to_list()
    assert contract_catalog().get(watched[-1]).title in prompt


@pytest.mark.parametrize("llm, reason", [
    (None, "no_llm"),
    (ScriptedLLM(error=LLMUnavailableError("server down")), "error"),
    (ScriptedLLM(text="I like films"), "invalid_output"),
    (ScriptedLLM(text='{"ranking": [1, 2, 3]}'), "no_candidate_in_answer"),
])
def test_failures_fall_back_to_the_base_order_and_are_counted(llm, reason):
    rec, base = build(llm)
    assert rec.recommend([1, 2], k=7) == base.recommend([1, 2], k=7)
    assert rec.failures == {reason: 2}


def test_partial_and_invented_ids():
    rec, base = build(None)
    order = base.recommend([1], k=6)[0]
    rec.attach_llm(ScriptedLLM(text=f'{{"ranking": [{order[3]}, 424242, {order[3]}, {order[1]}]}}'))
    got = rec.recommend([1], k=6)[0]
    assert got == [order[3], order[1], order[0], order[2], order[4], order[5]]
    assert not rec.failures


def test_cold_users_are_not_sent_to_the_llm():
    llm = ReverseRankingLLM()
    rec, base = build(llm)
    assert rec.recommend([900], k=5) == base.recommend([900], k=5)
    assert llm.calls == 0 and rec.cold_skipped == 1


def test_a_checkpoint_keeps_the_live_llm_and_loop_by_reference(tmp_path):
    class Live(ReverseRankingLLM):
        def __reduce__(self):
            raise TypeError("a live client")

    loop = LoopRunner()
    rec, _ = build(Live(), loop=loop)
    before = rec.recommend([1], k=5)
    shared = {"catalog": rec.catalog, "llm": rec.llm, "loop": loop}
    (tmp_path / CHECKPOINT).write_bytes(dump_state({"recommender": rec}, shared))
    # a resumed run: a new process, with its own live LLM and loop
    new_llm, new_loop = Live(), LoopRunner()
    copy = read_checkpoint(tmp_path, catalog=rec.catalog, llm=new_llm, loop=new_loop)["recommender"]
    assert copy.llm is new_llm and copy.context.loop is new_loop
    assert copy.recommend([1], k=5) == before and new_llm.calls == 1
    loop.close()
    new_loop.close()


def test_base_cannot_be_itself():
    with pytest.raises(ValueError):
        LLMRerankRecommender(LLMRerankConfig(base="llm_rerank"), RecommenderContext(catalog=contract_catalog()))


def test_a_replay_missing_an_answer_fails_instead_of_keeping_the_base_order():
    rec, _ = build(ScriptedLLM(error=LLMCacheMiss("no cached answer for rerank of agent 1 in round 2; "
                                                  "replay needs the original run's cache")))
    with pytest.raises(LLMCacheMiss):
        rec.recommend([1], k=5)
    assert not rec.failures


class InFlightLLM(ReverseRankingLLM):
    """Counts the calls in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = self.most = 0

    async def complete(self, request):
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.01)
        try:
            return await super().complete(request)
        finally:
            self.in_flight -= 1


def test_a_batch_runs_its_calls_concurrently_on_the_runs_loop():
    llm, loop = InFlightLLM(), LoopRunner()
    rec, _ = build(llm, loop=loop)
    rec.recommend([1, 2, 3], k=5)
    assert llm.calls == 3 and llm.most == 3
    loop.close()
