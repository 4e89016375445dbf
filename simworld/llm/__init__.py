"""LLM access for simworld: one async `LanguageModel` method, litellm inside, wrappers around.

A leaf: it knows nothing of agents, worlds or recommenders. Importing it imports no litellm
(building a model does) and touches no network.

    from simworld.llm import LLMConfig, LLMRequest, build_language_model

    llm = build_language_model(LLMConfig(), run_dir, run_id="r1")
    llm.set_round(1)
    reply = await llm.complete(LLMRequest(messages=[...], response_model=Decision,
                                          purpose="decide", agent_id=7))
    reply.parsed      # a validated Decision; reply.usage: tokens, cost, latency, cached, retries
    llm.flush()       # appends the round's calls to run_dir/llm_calls.parquet

Sync code runs the coroutine on the event loop it is given (the world's).
"""

from simworld.llm.cache import CACHE_FILENAME, CachedModel, ResponseCache, cache_key
from simworld.llm.config import EMBEDDED_MODEL, DeploymentConfig, LLMConfig
from simworld.llm.embedded import INSTALL_HINT, EmbeddedEngine, EmbeddedModelMissing, embedded_available
from simworld.llm.factory import build_language_model
from simworld.llm.ledger import LEDGER_FILENAME, LedgerModel, read_ledger
from simworld.llm.litellm_model import LiteLLMModel, classify_error
from simworld.llm.types import (
    BudgetExceeded, LanguageModel, LLMCacheMiss, LLMError, LLMOutputError, LLMRequest, LLMRequestError,
    LLMResponse, LLMTransientError, LLMUnavailableError, LLMUsage, validate_output,
)
from simworld.llm.wrappers import BudgetedModel, LimitedModel, ModelWrapper, RetryingModel


__all__ = [
    "BudgetExceeded", "BudgetedModel", "CACHE_FILENAME", "CachedModel", "DeploymentConfig", "EMBEDDED_MODEL",
    "EmbeddedEngine", "EmbeddedModelMissing", "INSTALL_HINT", "LEDGER_FILENAME", "LLMCacheMiss", "LLMConfig",
    "LLMError", "LLMOutputError", "LLMRequest", "LLMRequestError", "LLMResponse", "LLMTransientError",
    "LLMUnavailableError", "LLMUsage", "LanguageModel", "LedgerModel", "LimitedModel", "LiteLLMModel",
    "ModelWrapper", "ResponseCache", "RetryingModel", "build_language_model", "cache_key", "classify_error",
    "embedded_available", "read_ledger", "validate_output",
]
