"""`LiteLLMModel`: every LLM call of the project goes out through litellm.

One model string (`openai/gpt-4o-mini`, `ollama/llama3.1`, `openai/<name>` with an
`api_base` for any OpenAI-compatible server, `local/smollm2` for the embedded model), or
deployments behind a litellm Router. litellm's own retries are off. Failures come out typed:
`LLMTransientError` (retried: 429, 408, 5xx, timeouts, refused or broken connections, replies
that are no chat completion), `LLMRequestError` (never retried: other 4xx, a missing key
variable), `LLMOutputError` (a completion that does not match the schema). Anything else (a
TypeError, a KeyError: a bug, ours or a library's) propagates unchanged.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

from simworld.llm._lite import litellm
from simworld.llm.config import DeploymentConfig, LLMConfig
from simworld.llm.types import (
    LLMError, LLMRequest, LLMRequestError, LLMResponse, LLMTransientError, LLMUsage, answer, redact, schema_of,
)

# placeholder key sent to a keyless local server (api_base given, no api_key_env): the
# OpenAI client refuses to send a request without some key.
NO_KEY = "no-key"
# parameters whose silent drop (litellm's drop_params) changes what a run means
WATCHED_PARAMS = ("response_format", "seed")
_warned: set[tuple[str, str]] = set()


def response_format_for(request: LLMRequest) -> dict[str, Any] | None:
    if request.response_model is None:
        return None
    # a fresh copy each call: providers' transforms may edit it (json.loads copies faster than deepcopy)
    return json.loads(_response_format_json(request.response_model))


@functools.lru_cache(maxsize=1024)
def _response_format_json(model: type) -> str:
    schema = schema_of(model)  # type: ignore[arg-type]
    return json.dumps({"type": "json_schema",
                       "json_schema": {"name": model.__name__[:64], "schema": schema, "strict": False}})


def unsupported_params(model: str) -> frozenset[str]:
    """Which of `WATCHED_PARAMS` litellm says `model`'s provider does not take (and drops)."""
    lt = litellm()
    try:
        provider = lt.get_llm_provider(model)[1]
        supported = lt.get_supported_openai_params(model=model, custom_llm_provider=provider)
    except Exception:  # noqa: BLE001 - a provider litellm cannot describe: nothing known to drop
        return frozenset()
    return frozenset(p for p in WATCHED_PARAMS if supported is not None and p not in supported)


class LiteLLMModel:
    """A `LanguageModel` backed by `litellm.acompletion` (or a Router's).

    `api_key_env` names the environment variable read (at call time) for the key; the key
    is never stored on this object. For a local server without auth give `api_base` and no
    `api_key_env`. `prices` (USD per 1,000 prompt and completion tokens), when given, price
    every call instead of litellm's price map.
    """

    def __init__(self, model: str, *, api_base: str | None = None, api_key_env: str | None = None,
                 temperature: float | None = 0.7, max_tokens: int | None = 256, seed: int | None = None,
                 timeout_s: float = 60.0, deployments: Sequence[DeploymentConfig] = (),
                 prices: tuple[float, float] | None = None):
        self.model, self.api_base, self.api_key_env = model, api_base, api_key_env
        self.defaults = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
        self.timeout_s, self.deployments, self.prices = timeout_s, tuple(deployments), prices
        self._router = None
        for name, what in [(api_key_env, "llm.api_key_env"),
                           *((d.api_key_env, "a deployment's api_key_env") for d in self.deployments)]:
            if name and not os.environ.get(name):
                raise LLMRequestError(f"the environment variable {name} ({what}) is not set: "
                                      f"export it with the API key for {model}")
        # Import litellm now (seconds): paid inside the first call it would eat that call's timeout.
        litellm()
        if self.is_embedded():
            from simworld.llm import embedded

            embedded.register_provider()
            self.unsupported: frozenset[str] = frozenset()
        else:
            models = [d.model for d in self.deployments] or [model]
            self.unsupported = frozenset().union(*(unsupported_params(m) for m in models))

    @classmethod
    def from_config(cls, config: LLMConfig) -> LiteLLMModel:
        return cls(config.model, api_base=config.api_base, api_key_env=config.api_key_env,
                   temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed,
                   timeout_s=config.timeout_s, deployments=config.deployments, prices=config.prices)

    def is_embedded(self) -> bool:
        return not self.deployments and self.model.startswith("local/")

    @property
    def where(self) -> str:
        if self.deployments:
            return f"model group {self.model} ({len(self.deployments)} deployments)"
        if self.api_base:
            return f"model server {self.api_base}"
        return f"embedded model {self.model}" if self.is_embedded() else f"model {self.model}"

    def router(self):
        if self._router is None:
            model_list = []
            for d in self.deployments:
                params: dict[str, Any] = {"model": d.model, "max_retries": 0}
                if d.api_base:
                    params["api_base"] = d.api_base
                if d.api_key_env:  # resolved by litellm from the environment; the key never passes here
                    params["api_key"] = f"os.environ/{d.api_key_env}"
                elif d.api_base:
                    params["api_key"] = NO_KEY
                params.update({k: v for k, v in (("rpm", d.rpm), ("tpm", d.tpm), ("weight", d.weight)) if v})
                model_list.append({"model_name": self.model, "litellm_params": params})
            self._router = litellm().Router(model_list=model_list, num_retries=0, timeout=self.timeout_s,
                                            routing_strategy="simple-shuffle")
        return self._router

    def _kwargs(self, request: LLMRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in request.messages],
                                  "timeout": self.timeout_s, "num_retries": 0, "max_retries": 0, "drop_params": True}
        for name in ("temperature", "max_tokens", "seed"):
            if getattr(request, name) is not None:
                kwargs[name] = getattr(request, name)
        rf = response_format_for(request)
        if rf is not None:
            kwargs["response_format"] = rf
        if not self.deployments:
            if self.api_base:
                kwargs["api_base"] = self.api_base
            if self.api_key_env:
                kwargs["api_key"] = os.environ.get(self.api_key_env, "")
            elif self.api_base:
                kwargs["api_key"] = NO_KEY
        return kwargs

    def _dropped(self, kwargs: dict[str, Any]) -> tuple[str, ...]:
        dropped = tuple(p for p in WATCHED_PARAMS if p in self.unsupported and p in kwargs)
        new = [p for p in dropped if (self.model, p) not in _warned]
        if new:
            _warned.update((self.model, p) for p in new)
            warnings.warn(f"{self.model} does not take {' or '.join(new)}: litellm drops it (drop_params), so "
                          "answers are not held to the schema or the seed; the ledger's dropped_params column "
                          "marks these calls", stacklevel=3)
        return dropped

    def _cost(self, raw: Any, prompt_tokens: int, completion_tokens: int) -> float | None:
        if self.is_embedded():
            return 0.0
        if self.prices is not None:  # the scenario's price wins (a Router registers unknown models at 0)
            return (prompt_tokens * self.prices[0] + completion_tokens * self.prices[1]) / 1000
        hidden = getattr(raw, "_hidden_params", None) or {}
        if isinstance(hidden, dict) and "response_cost" in hidden:
            # litellm priced the call already (asking again costs ~3 ms of CPU a call)
            cost = hidden["response_cost"]
        else:
            try:
                cost = litellm().completion_cost(completion_response=raw)
            except Exception:  # noqa: BLE001 - litellm raises for models it has no price for
                cost = None
        return float(cost) if cost is not None else None

    async def complete(self, request: LLMRequest) -> LLMResponse:
        request = request.with_defaults(**self.defaults)
        kwargs = self._kwargs(request)
        dropped = self._dropped(kwargs)
        started = time.perf_counter()
        try:
            raw = await (self.router().acompletion(**kwargs) if self.deployments else litellm().acompletion(**kwargs))
        except Exception as exc:
            error = classify_error(exc, self.where, self.timeout_s, self._secrets())
            if error is None:
                raise
            raise error from None
        latency = time.perf_counter() - started
        try:
            text = raw.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMTransientError(f"{self.where} sent a reply that is not a chat completion ({exc})",
                                    kind="bad_response") from None
        usage = getattr(raw, "usage", None)
        tokens = [int(getattr(usage, name, 0) or 0) for name in ("prompt_tokens", "completion_tokens")]
        return answer(request, text, LLMUsage(
            model=(getattr(raw, "model", None) or self.model) if self.deployments else self.model,
            prompt_tokens=tokens[0], completion_tokens=tokens[1], cost_usd=self._cost(raw, *tokens),
            latency_s=latency, dropped_params=dropped))

    def _secrets(self) -> list[str]:
        return [os.environ.get(n or "", "") for n in [self.api_key_env, *(d.api_key_env for d in self.deployments)]]


# ---------------------------------------------------------------------------------------
# error classification

# where the transport's exceptions come from; anything else is a bug and is not classified
_TRANSPORT_MODULES = {"litellm", "openai", "httpx", "httpcore", "aiohttp", "anyio", "ssl", "socket"}
# a transport error whose root cause is one of these is a bug too (litellm wraps what it does not know)
_BUGS = (TypeError, AttributeError, KeyError, NameError, AssertionError, ImportError, IndexError)


def _retry_after(exc: BaseException) -> float | None:
    """The Retry-After of a 429 (seconds or an HTTP date), wherever litellm kept the headers."""
    from email.utils import parsedate_to_datetime

    for headers in (getattr(getattr(exc, "response", None), "headers", None),
                    getattr(exc, "litellm_response_headers", None), getattr(exc, "headers", None)):
        value = (headers.get("retry-after") or headers.get("Retry-After")) if hasattr(headers, "get") else None
        if value is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                try:
                    return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
                except (TypeError, ValueError):
                    return None
    return None


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.removeprefix("litellm.").removeprefix("Litellm.")[:limit]


def classify_error(exc: BaseException, where: str, timeout_s: float | None = None,
                   secrets: Sequence[str] = ()) -> LLMError | None:
    """Turn what litellm (or the transport under it) raised into a typed error, or None for
    an exception that is not the transport's (a bug: let it propagate). `secrets` (API keys)
    are masked in the message: some servers echo the key they got."""
    if isinstance(exc, LLMError):
        return exc
    chain: list[BaseException] = [exc]
    while len(chain) < 8 and (chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
    transport = isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError)) or (
        type(exc).__module__.split(".")[0] in _TRANSPORT_MODULES)
    if not transport or isinstance(chain[-1], _BUGS):  # the root of the chain is a bug
        return None
    err = _classify(exc, where, timeout_s, " | ".join(f"{type(e).__name__}: {e}" for e in chain).lower())
    err.args = (redact(str(err), secrets),)
    return err


def _classify(exc: BaseException, where: str, timeout_s: float | None, chain: str) -> LLMError:
    lt = litellm()
    try:
        status = int(getattr(exc, "status_code", None))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        status = None
    if (isinstance(exc, (lt.Timeout, asyncio.TimeoutError, TimeoutError)) or status == 408 or "timed out" in chain
            or "timeout" in type(exc).__name__.lower()):
        limit = f" after {timeout_s:g} s" if timeout_s else ""
        return LLMTransientError(f"{where} timed out{limit}", kind="timeout", status_code=status)
    if isinstance(exc, lt.RateLimitError) or status == 429:
        ra = _retry_after(exc)
        hint = f" (Retry-After {ra:g} s)" if ra is not None else ""
        return LLMTransientError(f"{where} is rate limiting requests (429){hint}", kind="rate_limit",
                                 status_code=429, retry_after=ra)
    refused = ("refused", "all connection attempts failed", "connect call failed", "errno 111")
    if any(s in chain for s in (*refused, "connecterror", "name or service not known", "nodename nor servname")):
        reason = "connection refused" if any(r in chain for r in refused) else "cannot connect"
        return LLMTransientError(f"{where} unreachable: {reason}", kind="connection")
    if status is not None and status >= 500:
        return LLMTransientError(f"{where} failed with a server error ({status}): {_first_line(exc)}",
                                 kind="server_error", status_code=status)
    if status is not None and 400 <= status < 500:
        what = {400: "bad request", 401: "authentication failed (check the API key variable)",
                403: "permission denied", 404: "not found (check the model name and api_base)",
                422: "unprocessable request"}.get(status, "request refused")
        return LLMRequestError(f"{where} refused the request ({status} {what}): {_first_line(exc)}",
                               status_code=status)
    if isinstance(exc, lt.APIConnectionError) or any(
            s in chain for s in ("incomplete", "remoteprotocolerror", "readerror", "decode", "json")):
        return LLMTransientError(f"{where} sent a broken reply or dropped the connection: {_first_line(exc)}",
                                 kind="bad_response")
    return LLMTransientError(f"{where} call failed: {_first_line(exc)}", kind="unknown")
