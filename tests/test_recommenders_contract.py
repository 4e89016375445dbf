"""Every registered recommender (and every built-in one) passes the shared contract."""

from __future__ import annotations

from dataclasses import replace

import pytest

from simworld.recommenders import REGISTRY, RecommenderContext
from simworld.recommenders.content import ContentRecommender
from simworld.recommenders.knn import ItemKNNRecommender
from simworld.recommenders.mf import MFConfig, MFRecommender
from simworld.recommenders.llm_rerank import LLMRerankRecommender
from simworld.recommenders.testing import RecommenderContract, ReverseRankingLLM

BUILT_INS: dict[str, type] = {
    "itemknn": ItemKNNRecommender,
    "mf": MFRecommender,
    "content": ContentRecommender,
    "llm_rerank": LLMRerankRecommender,
    **REGISTRY,
}


def _contract_for(name: str, cls: type) -> type:
    def make(self, context: RecommenderContext):
        return cls(cls.Config(), context)

    def make_context(self, seed=None):
        # every algorithm gets a (deterministic, picklable) LLM; only re-rankers use it
        return replace(RecommenderContract.make_context(self, seed), llm=ReverseRankingLLM())

    return type(f"TestContract_{name}", (RecommenderContract,),
                {"make": make, "make_context": make_context, "__module__": __name__})


for _name, _cls in sorted(BUILT_INS.items()):
    globals()[f"TestContract_{_name}"] = _contract_for(_name, _cls)


class TestContract_llm_rerank_itemknn_no_llm(RecommenderContract):
    """Without an LLM the re-ranker still honours the contract (base order, failures counted)."""

    def make(self, context):
        config = LLMRerankRecommender.Config(base="simworld.recommenders.knn:ItemKNNRecommender", candidates=5)
        return LLMRerankRecommender(config, context)


class TestContract_mf_bpr(RecommenderContract):
    def make(self, context):
        return MFRecommender(MFConfig(algorithm="bpr", iterations=20), context)


@pytest.mark.parametrize("name", sorted(BUILT_INS))
def test_config_forbids_unknown_options(name):
    config_cls = BUILT_INS[name].Config
    config_cls()  # every option has a default
    with pytest.raises(ValueError):
        config_cls(no_such_option=1)
