"""The `LanguageModel` protocol, its request and response types, and the errors it raises.

Everything in the project that talks to an LLM does so through `LanguageModel`. The
concrete model (`LiteLLMModel`) and every concern around it (retry, limits, cache,
ledger, budget) implement the same two methods, so they stack like Concordia's
`language_model` wrappers.
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


@dataclass(frozen=True)
class LLMRequest:
    """One chat completion request.

    `temperature`, `max_tokens` and `seed` left as None take the run's configured
    defaults (`LLMConfig`). With `response_model` set, the model is asked for JSON that
    matches the model's JSON schema (sent as `response_format`), and the reply is
    validated into `LLMResponse.parsed`; a reply that does not validate raises
    `LLMOutputError`.
    """

    messages: Sequence[Message]
    response_model: type[pydantic.BaseModel] | None = None
    purpose: str = "decide"
    agent_id: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    round: int | None = None

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("LLMRequest needs at least one message")
        msgs = []
        for m in self.messages:
            if "role" not in m or "content" not in m:
                raise ValueError(f"each message needs 'role' and 'content', got {dict(m)!r}")
            msgs.append({"role": str(m["role"]), "content": str(m["content"])})
        object.__setattr__(self, "messages", tuple(msgs))

    def with_defaults(
        self, *, temperature: float | None, max_tokens: int | None, seed: int | None
    ) -> LLMRequest:
        """Fill the parameters left as None with the given defaults."""
        return replace(
            self,
            temperature=self.temperature if self.temperature is not None else temperature,
            max_tokens=self.max_tokens if self.max_tokens is not None else max_tokens,
            seed=self.seed if self.seed is not None else seed,
        )

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema of `response_model`, or None for free text."""
        if self.response_model is None:
            return None
        return schema_of(self.response_model)


def schema_of(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, built once per class (pydantic takes ~1.5 ms each time).
    Callers must not mutate the returned dict."""
    return _schema_cache(model)


@functools.lru_cache(maxsize=8192)
def _schema_cache(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


@dataclass(frozen=True)
class LLMResponse:
    """The answer to one `LLMRequest`.

    `cost_usd` is None where litellm does not know the model's price. `cached` is True
    when the answer came from the response cache (no call was made; the token counts
    are those of the original call). `retries` counts transient failures retried.
    """

    text: str
    parsed: pydantic.BaseModel | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    cached: bool = False
    model: str = ""
    retries: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@runtime_checkable
class LanguageModel(Protocol):
    """The only door to LLMs: an async and a sync completion of one request."""

    async def acomplete(self, request: LLMRequest) -> LLMResponse: ...

    def complete(self, request: LLMRequest) -> LLMResponse: ...


# ---------------------------------------------------------------------------------------
# errors


class LLMError(SimworldError):
    """Base of every error the LLM layer raises. `retries`: transient failures retried."""

    retries: int = 0
    outcome: str = "error"


class LLMUnavailableError(LLMError):
    """The model could not be reached or kept failing (after retries, where configured)."""


class LLMTransientError(LLMUnavailableError):
    """A failure worth retrying: rate limit (429), timeout, 5xx, connection problems.

    `retry_after` is the server's Retry-After in seconds when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        status_code: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.status_code = status_code
        self.retry_after = retry_after


class LLMRequestError(LLMError):
    """The server refused the request (4xx other than 408/429: bad request, auth, unknown
    model). Retrying would not help, so it is never retried."""

    def __init__(self, message: str, *, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class LLMOutputError(LLMError):
    """The reply does not match the requested schema.

    `raw_text` is what the model said and `validation_error` why it does not fit; a
    policy can send the error back once and then fall back (DESIGN.md house rule 6).
    """

    outcome = "invalid_output"

    def __init__(
        self,
        raw_text: str,
        validation_error: str,
        *,
        model: str = "",
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_usd: float | None = None,
        latency_s: float = 0.0,
        cached: bool = False,
    ):
        short = raw_text if len(raw_text) <= 200 else raw_text[:200] + "..."
        super().__init__(f"model output does not match the schema: {validation_error} (output: {short!r})")
        self.raw_text = raw_text
        self.validation_error = validation_error
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.cost_usd = cost_usd
        self.latency_s = latency_s
        self.cached = cached


class BudgetExceeded(LLMError):
    """The run's token or dollar budget is spent."""

    outcome = "budget"


# ---------------------------------------------------------------------------------------
# validation shared by the model and the cache


def validate_output(request: LLMRequest, text: str) -> pydantic.BaseModel | None:
    """Validate `text` against `request.response_model`; raise `LLMOutputError` if it fails.

    Tolerates a Markdown code fence around the JSON (some models add one).
    """
    if request.response_model is None:
        return None
    body = strip_code_fence(text)
    try:
        return request.response_model.model_validate_json(body)
    except pydantic.ValidationError as exc:
        raise LLMOutputError(text, _short_validation_message(exc)) from None


def strip_code_fence(text: str) -> str:
    s = text.strip()
    if s.startswith("```"):
        first_nl = s.find("\n")
        if first_nl != -1 and s.endswith("```"):
            s = s[first_nl + 1 : -3].strip()
    return s


def _short_validation_message(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
