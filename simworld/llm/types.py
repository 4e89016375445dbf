"""The `LanguageModel` protocol, its request, usage and response types, and its errors.

Everything in the project that talks to an LLM does so through `LanguageModel`: one async
method, `complete`. The concrete model (`LiteLLMModel`) and every concern around it (retry,
limits, cache, ledger, budget) implement that method, so they stack like Concordia's
`language_model` wrappers. What a call cost travels in one `LLMUsage`, carried by the
response and by every error.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import pydantic

from simworld.errors import SimworldError

Message = Mapping[str, str]


class _Messages(tuple):
    """A request's messages once checked and normalised (a tuple of role/content dicts), so
    that copies of the request made on its way down the stack skip the check."""

    __slots__ = ()


@dataclass(frozen=True)
class LLMRequest:
    """One chat completion request. `temperature`, `max_tokens` and `seed` left as None take
    the run's defaults; `round` left as None, the ledger's current round. With
    `response_model`, the model is asked for JSON of its schema (`response_format`) and the
    reply is validated into `LLMResponse.parsed`, or raises `LLMOutputError`."""

    messages: Sequence[Message]
    response_model: type[pydantic.BaseModel] | None = None
    purpose: str = "decide"
    agent_id: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    round: int | None = None

    def __post_init__(self) -> None:
        if type(self.messages) is _Messages:  # a copy of a request (dataclasses.replace): checked already
            return
        if not self.messages:
            raise ValueError("LLMRequest needs at least one message")
        if bad := [dict(m) for m in self.messages if "role" not in m or "content" not in m]:
            raise ValueError(f"each message needs 'role' and 'content', got {bad[0]!r}")
        object.__setattr__(self, "messages", _Messages({"role": str(m["role"]), "content": str(m["content"])}
                                                       for m in self.messages))

    def with_defaults(self, **defaults: Any) -> LLMRequest:
        """Fill the parameters left as None (temperature, max_tokens, seed) with `defaults`."""
        changes = {k: v for k, v in defaults.items() if v is not None and getattr(self, k) is None}
        return replace(self, **changes) if changes else self

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema of `response_model`, or None for free text."""
        return None if self.response_model is None else schema_of(self.response_model)


@functools.lru_cache(maxsize=8192)
def schema_of(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, built once per class (pydantic takes ~1.5 ms each time).
    Callers must not mutate the returned dict."""
    return model.model_json_schema()


@dataclass(frozen=True)
class LLMUsage:
    """What one call cost and how it went. `cost_usd`: None where no price is known.
    `cached`: answered by the response cache (the tokens are the original call's).
    `retries`: transient failures retried. `dropped_params`: what the provider does not take
    and litellm dropped (`response_format`, `seed`)."""

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    cached: bool = False
    retries: int = 0
    dropped_params: tuple[str, ...] = ()

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class LLMResponse:
    """The answer to one `LLMRequest`: its text, the validated object, and its usage."""

    text: str
    parsed: pydantic.BaseModel | None = None
    usage: LLMUsage = field(default_factory=LLMUsage)


@runtime_checkable
class LanguageModel(Protocol):
    """The only door to LLMs. Sync callers run it on the event loop they are given."""

    async def complete(self, request: LLMRequest) -> LLMResponse: ...


class LLMError(SimworldError):
    """Base of every error of the LLM layer; `usage` says what the failed call cost."""

    outcome = "error"

    def __init__(self, message: str, *, usage: LLMUsage | None = None):
        super().__init__(message)
        self.usage = usage or LLMUsage()


class LLMUnavailableError(LLMError):
    """The model could not be reached or kept failing (after retries, where configured)."""


class LLMTransientError(LLMUnavailableError):
    """A failure worth retrying: rate limit (429), timeout, 5xx, connection problems.
    `retry_after` is the server's Retry-After in seconds when it sent one."""

    def __init__(self, message: str, *, kind: str, status_code: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.kind, self.status_code, self.retry_after = kind, status_code, retry_after


class LLMRequestError(LLMError):
    """The server refused the request (4xx other than 408/429: bad request, auth, unknown
    model). Retrying would not help, so it is never retried."""

    def __init__(self, message: str, *, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class LLMOutputError(LLMError):
    """The reply does not match the requested schema. `raw_text` is what the model said and
    `validation_error` why it does not fit: a policy sends the error back once, then falls
    back (house rule 6). The tokens it cost are in `usage`."""

    outcome = "invalid_output"

    def __init__(self, raw_text: str, validation_error: str, *, usage: LLMUsage | None = None):
        short = raw_text if len(raw_text) <= 200 else raw_text[:200] + "..."
        super().__init__(f"model output does not match the schema: {validation_error} (output: {short!r})",
                         usage=usage)
        self.raw_text = raw_text
        self.validation_error = validation_error


class LLMCacheMiss(LLMError):
    """Cache-only mode (a replay) met a request its cache has no answer for."""

    outcome = "cache_miss"


class BudgetExceeded(LLMError):
    """The run's token or dollar budget is spent."""

    outcome = "budget"


def answer(request: LLMRequest, text: str, usage: LLMUsage) -> LLMResponse:
    """`text` as the reply to `request`, validated; `LLMOutputError` carrying `usage` if not."""
    try:
        return LLMResponse(text, validate_output(request, text), usage)
    except LLMOutputError as exc:
        exc.usage = usage
        raise


def validate_output(request: LLMRequest, text: str) -> pydantic.BaseModel | None:
    """Validate `text` against `request.response_model`; raise `LLMOutputError` if it fails.
    Tolerates a Markdown code fence around the JSON (some models add one)."""
    if request.response_model is None:
        return None
    body = text.strip()
    if body.startswith("```") and body.endswith("```") and "\n" in body:
        body = body[body.find("\n") + 1: -3].strip()
    try:
        return request.response_model.model_validate_json(body)
    except pydantic.ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg', 'invalid')}"
                 for e in exc.errors()[:5]]
        if exc.error_count() > 5:
            parts.append(f"and {exc.error_count() - 5} more")
        raise LLMOutputError(text, "; ".join(parts)) from None


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret (API keys: of at least 4 characters) replaced by '***'."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
