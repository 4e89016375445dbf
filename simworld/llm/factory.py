"""`build_language_model`: the whole stack of a run, built from its `llm:` section."""

from __future__ import annotations

from pathlib import Path

from simworld.llm.cache import CACHE_FILENAME, CachedModel
from simworld.llm.config import LLMConfig
from simworld.llm.ledger import LedgerModel
from simworld.llm.types import LanguageModel
from simworld.llm.wrappers import BudgetedModel, LimitedModel, RetryingModel


def build_language_model(config: LLMConfig, run_dir: Path | None, *, run_id: str = "", seed: int = 0,
                         base: LanguageModel | None = None, hard_budget: bool = False) -> LedgerModel:
    """Compose the run's model, outermost first: LedgerModel -> BudgetedModel (with a budget)
    -> CachedModel -> RetryingModel -> LimitedModel -> LiteLLMModel (or `base`, for tests).

    `run_dir` holds `llm_calls.parquet` (None: the ledger stays in memory). The cache is
    `config.cache_dir`/.llm_cache.sqlite, by default beside the run folder, shared by the
    runs of an output folder. `config.cache_only` (a replay) builds nothing below the cache:
    no network, no key; a miss raises `LLMCacheMiss`. `seed` seeds the retry jitter.
    `hard_budget`: calls after the budget is spent raise `BudgetExceeded` (default: the
    world stops at the end of the round when `find(BudgetedModel).exhausted`).

    Returns the `LedgerModel`: `set_round(n)` as a round starts, `flush()` before its
    checkpoint and `commit()` after it, `restore(committed_round)` on resume."""
    run_dir = Path(run_dir) if run_dir is not None else None
    folder = config.cache_dir if config.cache_dir is not None else (run_dir.parent if run_dir else None)
    model: LanguageModel | None = None
    if not config.cache_only:
        if base is None:
            from simworld.llm.litellm_model import LiteLLMModel

            base = LiteLLMModel.from_config(config)
        model = LimitedModel(base, concurrency=config.concurrency, rpm=config.rpm, tpm=config.tpm,
                             default_max_tokens=config.max_tokens)
        # the embedded model cannot hang on a network; a queue behind a slow first grammar
        # build must not be mistaken for a timeout
        model = RetryingModel(model, max_retries=config.max_retries, base_delay_s=config.retry_base_s,
                              max_delay_s=config.retry_max_s, seed=seed,
                              timeout_s=None if config.is_embedded else config.timeout_s)
    if (config.cache or config.cache_only) and folder is not None:
        model = CachedModel(model, Path(folder) / CACHE_FILENAME, model_name=config.model, run_id=run_id,
                            cache_only=config.cache_only,
                            defaults={"temperature": config.temperature, "max_tokens": config.max_tokens,
                                      "seed": config.seed})
    elif config.cache_only:
        raise ValueError("llm.cache_only needs a cache: give llm.cache_dir or a run folder")
    if config.budget_tokens is not None or config.budget_usd is not None:
        model = BudgetedModel(model, max_tokens=config.budget_tokens, max_usd=config.budget_usd, hard=hard_budget)
    return LedgerModel(model, run_id=run_id, run_dir=run_dir, model_name=config.model,  # type: ignore[arg-type]
                       secret_env=config.secret_env_names())
