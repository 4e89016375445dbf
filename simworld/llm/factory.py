"""`build_language_model`: the whole stack of a run, built from its `llm:` section."""

from __future__ import annotations

from pathlib import Path

from simworld.llm.cache import CACHE_FILENAME, CachedModel
from simworld.llm.config import LLMConfig
from simworld.llm.ledger import LedgerModel
from simworld.llm.litellm_model import LiteLLMModel
from simworld.llm.types import LanguageModel
from simworld.llm.wrappers import BudgetedModel, LimitedModel, RetryingModel


def build_language_model(
    config: LLMConfig,
    run_dir: Path | None,
    *,
    run_id: str = "",
    seed: int = 0,
    base: LanguageModel | None = None,
    hard_budget: bool = False,
) -> LedgerModel:
    """Compose the run's model, outermost first:

        LedgerModel -> BudgetedModel (if a budget) -> CachedModel (if cache) ->
        RetryingModel -> LimitedModel -> LiteLLMModel (or `base`)

    - `run_dir`: where `llm_calls.parquet` and (without `config.cache_dir`) the response
      cache `llm_cache.sqlite` go; None keeps the ledger in memory and disables a
      run-folder cache.
    - `seed`: seeds the retry jitter (derive it from the run's RNG).
    - `base`: a model to wrap instead of `LiteLLMModel` (tests, custom back ends).
    - `hard_budget`: calls made after the budget is spent raise `BudgetExceeded`
      (default: they go on, and the world stops at the end of the round when
      `model.find(BudgetedModel).exhausted`).

    Returns the `LedgerModel` on top: call `set_round(n)` at the start of a round and
    `flush()` at its end; `find(cls)` reaches any layer.
    """
    run_dir = Path(run_dir) if run_dir is not None else None
    if base is None:
        inner: LanguageModel = LiteLLMModel.from_config(config)
        embedded = config.is_embedded
    else:
        inner = base
        embedded = False
    model: LanguageModel = LimitedModel(
        inner,
        concurrency=config.concurrency,
        rpm=config.rpm,
        tpm=config.tpm,
        default_max_tokens=config.max_tokens,
    )
    model = RetryingModel(
        model,
        max_retries=config.max_retries,
        base_delay_s=config.retry_base_s,
        max_delay_s=config.retry_max_s,
        # the embedded model cannot hang on a network; a queue behind a slow first
        # grammar build must not be mistaken for a timeout
        timeout_s=None if embedded else config.timeout_s,
        seed=seed,
    )
    if config.cache:
        folder = config.cache_dir if config.cache_dir is not None else run_dir
        if folder is not None:
            model = CachedModel(
                model,
                Path(folder) / CACHE_FILENAME,
                model_name=config.model,
                defaults={"temperature": config.temperature, "max_tokens": config.max_tokens, "seed": config.seed},
            )
    if config.budget_tokens is not None or config.budget_usd is not None:
        model = BudgetedModel(
            model, max_tokens=config.budget_tokens, max_usd=config.budget_usd, hard=hard_budget
        )
    return LedgerModel(
        model,
        run_id=run_id,
        run_dir=run_dir,
        model_name=config.model,
        secret_env=config.secret_env_names(),
    )
