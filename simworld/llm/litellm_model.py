"""`LiteLLMModel`: every LLM call of the project goes out through litellm.

One model string (`openai/gpt-4o-mini`, `ollama/llama3.1`, `hosted_vllm/<name>`,
`openai/<name>` with an `api_base` for any OpenAI-compatible server, `local/smollm2` for
the embedded model), or a list of deployments behind a litellm Router. litellm's own
retries are switched off: `RetryingModel` decides what is retried. Failures come out as
the typed errors of `simworld.llm.types`:

- `LLMTransientError` (retryable): 429, 408, 5xx, timeouts, refused or broken
  connections, and replies that are not a chat completion at all (truncated or non-JSON
  bodies: a proxy or server fault, not the model's answer);
- `LLMRequestError` (never retried): other 4xx (bad request, authentication, unknown
  model) and a missing API key variable;
- `LLMOutputError`: the reply is a completion but does not match the requested schema.
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections.abc import Sequence
from typing import Any

from simworld.llm._lite import litellm
from simworld.llm.config import DeploymentConfig, LLMConfig
from simworld.llm.types import (
    LLMError,
    LLMOutputError,
    LLMRequest,
    LLMRequestError,
    LLMResponse,
    LLMTransientError,
    validate_output,
)

# placeholder key sent to a keyless local server (api_base given, no api_key_env): the
# OpenAI client refuses to send a request without some key.
NO_KEY = "no-key"


def response_format_for(request: LLMRequest) -> dict[str, Any] | None:
    schema = request.json_schema()
    if schema is None:
        return None
    name = request.response_model.__name__ if request.response_model else "answer"
    return {
        "type": "json_schema",
        # a copy: the schema is cached and shared, and providers' transforms may edit it
        "json_schema": {"name": name[:64], "schema": copy.deepcopy(schema), "strict": False},
    }


class LiteLLMModel:
    """A `LanguageModel` backed by `litellm.acompletion` / `litellm.completion` (or a Router).

    `api_key_env` names the environment variable read (at call time) for the key; the key
    itself is never stored on this object. For a local server without auth give
    `api_base` and no `api_key_env`.
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key_env: str | None = None,
        temperature: float | None = 0.7,
        max_tokens: int | None = 256,
        seed: int | None = None,
        timeout_s: float = 60.0,
        deployments: Sequence[DeploymentConfig] = (),
        extra_params: dict[str, Any] | None = None,
    ):
        self.model = model
        self.api_base = api_base
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.timeout_s = timeout_s
        self.deployments = tuple(deployments)
        self.extra_params = dict(extra_params or {})
        self._router = None
        if api_key_env and not os.environ.get(api_key_env):
            raise LLMRequestError(
                f"the environment variable {api_key_env} (llm.api_key_env) is not set: "
                f"export it with the API key for {model}"
            )
        for d in self.deployments:
            if d.api_key_env and not os.environ.get(d.api_key_env):
                raise LLMRequestError(
                    f"the environment variable {d.api_key_env} (a deployment's api_key_env) is not "
                    f"set: export it with the API key for {d.model}"
                )
        # Import litellm now (seconds): paid inside the first call it would eat that call's timeout.
        litellm()
        if self.is_embedded():
            from simworld.llm import embedded

            embedded.register_provider()

    @classmethod
    def from_config(cls, config: LLMConfig) -> LiteLLMModel:
        return cls(
            config.model,
            api_base=config.api_base,
            api_key_env=config.api_key_env,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            seed=config.seed,
            timeout_s=config.timeout_s,
            deployments=config.deployments,
        )

    def is_embedded(self) -> bool:
        return not self.deployments and self.model.startswith("local/")

    @property
    def defaults(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed}

    @property
    def where(self) -> str:
        if self.deployments:
            return f"model group {self.model} ({len(self.deployments)} deployments)"
        if self.api_base:
            return f"model server {self.api_base}"
        if self.is_embedded():
            return f"embedded model {self.model}"
        return f"model {self.model}"

    # -- litellm plumbing
    def router(self):
        if self._router is None:
            model_list = []
            for d in self.deployments:
                params: dict[str, Any] = {"model": d.model}
                if d.api_base:
                    params["api_base"] = d.api_base
                if d.api_key_env:
                    # resolved by litellm from the environment; the key never passes through here
                    params["api_key"] = f"os.environ/{d.api_key_env}"
                elif d.api_base:
                    params["api_key"] = NO_KEY
                if d.rpm:
                    params["rpm"] = d.rpm
                if d.tpm:
                    params["tpm"] = d.tpm
                if d.weight:
                    params["weight"] = d.weight
                params["max_retries"] = 0
                model_list.append({"model_name": self.model, "litellm_params": params})
            self._router = litellm().Router(
                model_list=model_list,
                num_retries=0,
                timeout=self.timeout_s,
                routing_strategy="simple-shuffle",
            )
        return self._router

    def _kwargs(self, request: LLMRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in request.messages],
            "timeout": self.timeout_s,
            "num_retries": 0,
            "max_retries": 0,
            "drop_params": True,
        }
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if request.seed is not None:
            kwargs["seed"] = request.seed
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
        kwargs.update(self.extra_params)
        return kwargs

    def _response(self, request: LLMRequest, raw: Any, started: float) -> LLMResponse:
        latency = time.perf_counter() - started
        try:
            choice = raw.choices[0]
            text = choice.message.content or ""
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMTransientError(
                f"{self.where} sent a reply that is not a chat completion ({exc})", kind="bad_response"
            ) from None
        usage = getattr(raw, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = self._cost(raw)
        model = self.model if not self.deployments else (getattr(raw, "model", None) or self.model)
        try:
            parsed = validate_output(request, text)
        except LLMOutputError as exc:
            raise LLMOutputError(
                text,
                exc.validation_error,
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_usd=cost,
                latency_s=latency,
            ) from None
        return LLMResponse(
            text=text,
            parsed=parsed,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost,
            latency_s=latency,
            cached=False,
            model=model,
        )

    def _cost(self, raw: Any) -> float | None:
        if self.is_embedded():
            return 0.0
        hidden = getattr(raw, "_hidden_params", None) or {}
        if isinstance(hidden, dict) and "response_cost" in hidden:
            # litellm priced the call already; None means it knows no price for the model
            # (asking again costs ~3 ms of CPU a call, a bottleneck at 64 calls in flight)
            cost = hidden["response_cost"]
            return float(cost) if cost is not None else None
        try:
            return float(litellm().completion_cost(completion_response=raw))
        except Exception:  # unknown price: litellm raises for models it has no price for
            return None

    # -- interface
    async def acomplete(self, request: LLMRequest) -> LLMResponse:
        request = request.with_defaults(**self.defaults)
        kwargs = self._kwargs(request)
        started = time.perf_counter()
        try:
            if self.deployments:
                raw = await self.router().acompletion(**kwargs)
            else:
                raw = await litellm().acompletion(**kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise classify_error(exc, self.where, self.timeout_s, self._secrets()) from None
        return self._response(request, raw, started)

    def _secrets(self) -> list[str]:
        names = [self.api_key_env] + [d.api_key_env for d in self.deployments]
        return [os.environ[n] for n in names if n and os.environ.get(n)]

    def complete(self, request: LLMRequest) -> LLMResponse:
        request = request.with_defaults(**self.defaults)
        kwargs = self._kwargs(request)
        started = time.perf_counter()
        try:
            if self.deployments:
                raw = self.router().completion(**kwargs)
            else:
                raw = litellm().completion(**kwargs)
        except Exception as exc:
            raise classify_error(exc, self.where, self.timeout_s, self._secrets()) from None
        return self._response(request, raw, started)


# ---------------------------------------------------------------------------------------
# error classification


def _retry_after(exc: BaseException) -> float | None:
    """The Retry-After of a 429, from wherever litellm kept the response headers."""
    sources = []
    response = getattr(exc, "response", None)
    if response is not None:
        sources.append(getattr(response, "headers", None))
    sources.append(getattr(exc, "litellm_response_headers", None))
    sources.append(getattr(exc, "headers", None))
    value = None
    for headers in sources:
        if not headers:
            continue
        try:
            value = headers.get("retry-after") or headers.get("Retry-After")
        except AttributeError:
            continue
        if value is not None:
            break
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _chain_text(exc: BaseException) -> str:
    parts = []
    seen = 0
    node: BaseException | None = exc
    while node is not None and seen < 8:
        parts.append(f"{type(node).__name__}: {node}")
        node = node.__cause__ or node.__context__
        seen += 1
    return " | ".join(parts).lower()


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in ("litellm.", "Litellm."):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text[:limit]


def classify_error(
    exc: BaseException, where: str, timeout_s: float | None = None, secrets: Sequence[str] = ()
) -> LLMError:
    """Turn whatever litellm (or the transport under it) raised into a typed error.

    `secrets` (API keys) are masked in the message: some servers echo the key they got.
    """
    if isinstance(exc, LLMError):
        return exc
    err = _classify(exc, where, timeout_s)
    text = str(err)
    masked = text
    for secret in secrets:
        if secret and len(secret) >= 4:
            masked = masked.replace(secret, "***")
    if masked != text:
        err.args = (masked,)
    return err


def _classify(exc: BaseException, where: str, timeout_s: float | None) -> LLMError:
    lt = litellm()
    status = getattr(exc, "status_code", None)
    try:
        status = int(status) if status is not None else None
    except (TypeError, ValueError):
        status = None
    chain = _chain_text(exc)

    if isinstance(exc, (lt.Timeout, asyncio.TimeoutError, TimeoutError)) or status == 408 or "timed out" in chain or "timeout" in type(exc).__name__.lower():
        limit = f" after {timeout_s:g} s" if timeout_s else ""
        return LLMTransientError(f"{where} timed out{limit}", kind="timeout", status_code=status)
    if isinstance(exc, lt.RateLimitError) or status == 429:
        ra = _retry_after(exc)
        hint = f" (Retry-After {ra:g} s)" if ra is not None else ""
        return LLMTransientError(
            f"{where} is rate limiting requests (429){hint}", kind="rate_limit", status_code=429, retry_after=ra
        )
    if "connection refused" in chain or "connecterror" in chain or "name or service not known" in chain or "nodename nor servname" in chain or "all connection attempts failed" in chain or "connect call failed" in chain or "errno 111" in chain:
        refused = ("refused", "all connection attempts failed", "connect call failed", "errno 111")
        reason = "connection refused" if any(r in chain for r in refused) else "cannot connect"
        return LLMTransientError(f"{where} unreachable: {reason}", kind="connection")
    if status is not None and status >= 500:
        return LLMTransientError(
            f"{where} failed with a server error ({status}): {_first_line(exc)}", kind="server_error", status_code=status
        )
    if status is not None and 400 <= status < 500:
        what = {
            400: "bad request",
            401: "authentication failed (check the API key variable)",
            403: "permission denied",
            404: "not found (check the model name and api_base)",
            422: "unprocessable request",
        }.get(status, "request refused")
        return LLMRequestError(f"{where} refused the request ({status} {what}): {_first_line(exc)}", status_code=status)
    if isinstance(exc, lt.APIConnectionError) or "incomplete" in chain or "remoteprotocolerror" in chain or "readerror" in chain or "decode" in chain or "json" in chain:
        return LLMTransientError(f"{where} sent a broken reply or dropped the connection: {_first_line(exc)}", kind="bad_response")
    return LLMTransientError(f"{where} call failed: {_first_line(exc)}", kind="unknown")
