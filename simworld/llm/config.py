"""`LLMConfig`: the scenario's `llm:` section.

API keys are never part of the configuration: a config names the environment variable
that holds the key (`api_key_env`), and the key is read at call time only.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EMBEDDED_MODEL = "local/smollm2"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_env_name(value: str | None) -> str | None:
    if value is None:
        return value
    if not _ENV_NAME.match(value):
        raise ValueError(
            "must be the NAME of an environment variable holding the key (e.g. OPENAI_API_KEY), "
            "never the key itself"
        )
    return value


def has_price(model: str) -> bool:
    """Whether litellm knows `model`'s price (the embedded model is free). Imports litellm,
    so it is asked only when a dollar budget is set."""
    if model.startswith("local/"):
        return True
    from simworld.llm._lite import litellm

    try:
        info = litellm().get_model_info(model)
    except Exception:  # noqa: BLE001 - litellm raises for a model it does not know
        return False
    return info.get("input_cost_per_token") is not None


class DeploymentConfig(BaseModel):
    """One deployment behind a litellm Router (a key, an endpoint, or a model)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    model: str = Field(description="litellm model string, e.g. 'openai/gpt-4o-mini'")
    api_base: str | None = None
    api_key_env: str | None = Field(
        default=None, description="name of the environment variable holding this deployment's key"
    )
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    weight: int | None = Field(default=None, gt=0, description="share of traffic (simple-shuffle)")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return _check_env_name(value)


class LLMConfig(BaseModel):
    """How a run reaches its language model, and what it may spend.

    `model` is any litellm model string ("openai/gpt-4o-mini", "ollama/llama3.1",
    "hosted_vllm/<name>" with `api_base`, ...); the default "local/smollm2" is the
    embedded offline model. With `deployments`, calls go through a litellm Router that
    balances them across the deployments, and `model` is the name of that group (it keys
    the cache and names the calls in the ledger).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    model: str = EMBEDDED_MODEL
    api_base: str | None = None
    api_key_env: str | None = Field(
        default=None,
        description="name of the environment variable that holds the API key (never the key)",
    )
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=256, gt=0)
    seed: int | None = Field(default=None, description="sent to the model where it takes one")
    # Upper bounds: a huge wait overflows the clock it is handed to (OverflowError); a day is plenty.
    timeout_s: float = Field(default=60.0, gt=0, le=86_400)
    max_retries: int = Field(default=4, ge=0, le=100)
    retry_base_s: float = Field(default=0.5, gt=0, le=3_600, description="first backoff delay; doubles each retry")
    retry_max_s: float = Field(default=30.0, gt=0, le=86_400, description="longest single wait, Retry-After included")
    concurrency: int = Field(default=16, gt=0, description="most calls in flight at once, whole run")
    rpm: int | None = Field(default=None, gt=0, description="requests per minute, whole run")
    tpm: int | None = Field(default=None, gt=0, description="tokens per minute, whole run")
    cache: bool = True
    cache_dir: Path | None = Field(
        default=None, description="response cache folder; default: the output folder, shared by its runs"
    )
    cache_only: bool = Field(default=False, description="answer only from the response cache (a replay): "
                             "a request it has no answer for is an error, and no call is made")
    budget_tokens: int | None = Field(default=None, gt=0)
    budget_usd: float | None = Field(default=None, gt=0)
    price_per_1k_prompt_usd: float | None = Field(
        default=None, ge=0, description="USD per 1,000 prompt tokens; given, it prices every call (needed for "
        "budget_usd with a model litellm has no price for)")
    price_per_1k_completion_usd: float | None = Field(
        default=None, ge=0, description="USD per 1,000 completion tokens; see price_per_1k_prompt_usd")
    deployments: tuple[DeploymentConfig, ...] = ()

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return _check_env_name(value)

    @model_validator(mode="after")
    def _check(self) -> LLMConfig:
        if self.deployments and (self.api_base or self.api_key_env):
            raise ValueError(
                "with deployments, give api_base and api_key_env per deployment, not at the top"
            )
        if (self.price_per_1k_prompt_usd is None) != (self.price_per_1k_completion_usd is None):
            raise ValueError("give both price_per_1k_prompt_usd and price_per_1k_completion_usd, or neither")
        if self.budget_usd is not None and self.prices is None:
            unpriced = [m for m in [d.model for d in self.deployments] or [self.model] if not has_price(m)]
            if unpriced:
                raise ValueError(
                    f"llm.budget_usd: litellm has no price for the model {unpriced[0]!r}, so a dollar budget "
                    "would never be reached; give llm.price_per_1k_prompt_usd and "
                    "llm.price_per_1k_completion_usd, or cap llm.budget_tokens instead")
        return self

    @property
    def prices(self) -> tuple[float, float] | None:
        """The scenario's (prompt, completion) USD per 1,000 tokens, or None."""
        if self.price_per_1k_prompt_usd is None or self.price_per_1k_completion_usd is None:
            return None
        return self.price_per_1k_prompt_usd, self.price_per_1k_completion_usd

    @property
    def is_embedded(self) -> bool:
        return not self.deployments and self.model.startswith("local/")

    def secret_env_names(self) -> list[str]:
        """Every environment variable this config reads a key from."""
        names = [self.api_key_env] + [d.api_key_env for d in self.deployments]
        return [n for n in names if n]
