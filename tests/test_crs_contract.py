"""Every built-in CRS passes the CRS contract: the retrieval CRS over several registered
recommenders, the LLM CRS (on a scripted model), and the HTTP CRS against a real local server."""

from __future__ import annotations

import pytest

from simworld.crs.http_crs import HTTPCRS
from simworld.crs.llm_crs import LLMCRS
from simworld.crs.retrieval import RetrievalCRS
from simworld.crs.testing import CRSContext, CRSContract
from simworld.embedding import HashingEmbedder
from simworld.recommenders.base import RecommenderContext
from simworld.recommenders.registry import build_recommender
from tests.crs_fakes import ScriptedLLM
from tests.crs_server import CRSServer


def retrieval(context: CRSContext, name: str, params: dict | None = None, **options) -> RetrievalCRS:
    rec_context = RecommenderContext(catalog=context.catalog, seed=context.seed, embedder=HashingEmbedder(64),
                                     streams=context.streams)
    recommender = build_recommender(name, params or {}, rec_context)
    recommender.fit(context.history)
    return RetrievalCRS(recommender, context.catalog, recommender_name=name, **options)


class TestRetrievalPopularity(CRSContract):
    def make(self, context):
        return retrieval(context, "popularity")


class TestRetrievalItemKNN(CRSContract):
    def make(self, context):
        return retrieval(context, "itemknn")


class TestRetrievalMF(CRSContract):
    def make(self, context):
        return retrieval(context, "mf", {"factors": 8, "iterations": 5})


class TestRetrievalContentForAStranger(CRSContract):
    def make(self, context):
        return retrieval(context, "content", personalised=False, show=2)


class TestLLMCRS(CRSContract):
    def make(self, context):
        return LLMCRS(ScriptedLLM(), context.catalog, HashingEmbedder(64), model_name="scripted", candidates=8)


class TestHTTPCRS(CRSContract):
    @pytest.fixture(autouse=True)
    def server(self):
        with CRSServer(retrieval(self.make_context(), "popularity")) as server:
            self._server = server
            yield server

    def make(self, context):
        return HTTPCRS(self._server.url, timeout_s=5, retries=0)
