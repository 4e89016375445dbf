"""Wrappers around a `LanguageModel`, each with the same one method (Concordia style).

The factory stacks them, outermost first:

    LedgerModel -> BudgetedModel -> CachedModel -> RetryingModel -> LimitedModel -> LiteLLMModel

so that a cache hit takes no concurrency slot, spends no money and still shows in the
ledger; retry back-off holds no slot; and the budget counts what the ledger counts (cached
answers included, so a replay stops at the same round as the original).
"""

from __future__ import annotations

import asyncio
import random
import weakref
from dataclasses import replace
from typing import TypeVar

from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception_type, stop_after_attempt

from simworld.llm.types import (
    BudgetExceeded,
    LanguageModel,
    LLMError,
    LLMRequest,
    LLMResponse,
    LLMTransientError,
    LLMUnavailableError,
    LLMUsage,
)

W = TypeVar("W")


class ModelWrapper:
    """A `LanguageModel` that delegates to `inner`. Subclasses override what they change."""

    def __init__(self, inner: LanguageModel):
        self.inner = inner

    async def complete(self, request: LLMRequest) -> LLMResponse:
        return await self.inner.complete(request)

    def find(self, cls: type[W]) -> W | None:
        """The first layer of type `cls` in this stack (self included), or None."""
        return find_layer(self, cls)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


def find_layer(model: object, cls: type[W]) -> W | None:
    """Walk a stack of wrappers (through `.inner`) and return the first `cls` in it."""
    for _ in range(64):
        if model is None or isinstance(model, cls):
            return model
        model = getattr(model, "inner", None)
    return None


class RetryingModel(ModelWrapper):
    """Retries transient failures only (tenacity), with exponential back-off and seeded jitter.

    Transient: `LLMTransientError` (429, timeouts, 5xx, connection failures, broken replies).
    Never retried: every other `LLMError` (a refused request, a reply failing the schema, a
    spent budget) and any other exception, which is a bug and propagates as it is. A 429's
    Retry-After is honoured (capped at `max_delay_s`). Each attempt is bounded by `timeout_s`.
    After `max_retries` retries the last failure is raised as `LLMUnavailableError`, one
    sentence naming the endpoint and the number of attempts.
    """

    def __init__(self, inner: LanguageModel, *, max_retries: int = 4, base_delay_s: float = 0.5,
                 max_delay_s: float = 30.0, timeout_s: float | None = None, seed: int = 0):
        super().__init__(inner)
        self.max_retries, self.base_delay_s, self.max_delay_s = max_retries, base_delay_s, max_delay_s
        self.timeout_s = timeout_s
        self._rng = random.Random(seed)
        self.retry_count = 0  # total retries made, for reports

    def delay_for(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `attempt + 1`."""
        jitter = 0.5 + 0.5 * self._rng.random()
        if retry_after is not None and retry_after > 0:
            return min(self.max_delay_s, retry_after)
        return min(self.max_delay_s, self.base_delay_s * 2**attempt) * jitter

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.delay_for(state.attempt_number - 1, getattr(exc, "retry_after", None))

    async def _attempt(self, request: LLMRequest) -> LLMResponse:
        if self.timeout_s is None:
            return await self.inner.complete(request)
        try:  # a little slack so the transport's own timeout (a clearer message) wins
            return await asyncio.wait_for(self.inner.complete(request), self.timeout_s + 1.0)
        except asyncio.TimeoutError:
            raise LLMTransientError(f"model call timed out after {self.timeout_s:g} s", kind="timeout") from None

    async def complete(self, request: LLMRequest) -> LLMResponse:
        retrying = AsyncRetrying(retry=retry_if_exception_type(LLMTransientError), wait=self._wait,
                                 stop=stop_after_attempt(self.max_retries + 1))
        attempts = 0
        try:
            async for attempt in retrying:
                attempts = attempt.retry_state.attempt_number
                with attempt:
                    response = await self._attempt(request)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            self.retry_count += attempts - 1
            message = f"{last} (gave up after {attempts} attempts)" if attempts > 1 else str(last)
            raise LLMUnavailableError(message, usage=replace(last.usage, retries=attempts - 1)) from last
        except LLMError as exc:
            self.retry_count += attempts - 1
            exc.usage = replace(exc.usage, retries=exc.usage.retries + attempts - 1)
            raise
        self.retry_count += attempts - 1
        if attempts == 1:
            return response
        return replace(response, usage=replace(response.usage, retries=response.usage.retries + attempts - 1))


class LimitedModel(ModelWrapper):
    """Caps calls in flight (`concurrency`) and, optionally, requests and tokens per minute.

    One instance serves the whole run, so every agent's calls share the limits. Rates are
    aiolimiter leaky buckets over `window_s` (the "minute"; shorter in tests); a call's
    tokens are estimated before it starts (prompt characters / 4 + max_tokens, an upper
    bound on the completion). A semaphore per event loop, so the stack works on any loop;
    `max_in_flight` records the most calls seen in flight, for tests and reports.
    """

    def __init__(self, inner: LanguageModel, *, concurrency: int, rpm: int | None = None,
                 tpm: int | None = None, default_max_tokens: int = 256, window_s: float = 60.0):
        super().__init__(inner)
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency, self.default_max_tokens = concurrency, default_max_tokens
        self.rpm = AsyncLimiter(rpm, window_s) if rpm else None
        self.tpm = AsyncLimiter(tpm, window_s) if tpm else None
        self._sems: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())
        self.in_flight = self.max_in_flight = 0

    async def complete(self, request: LLMRequest) -> LLMResponse:
        loop = asyncio.get_running_loop()
        sem = self._sems.get(loop) or self._sems.setdefault(loop, asyncio.Semaphore(self.concurrency))
        async with sem:
            if self.rpm is not None:
                await self.rpm.acquire()
            if self.tpm is not None:
                tokens = sum(len(m["content"]) for m in request.messages) // 4 + (
                    request.max_tokens or self.default_max_tokens)
                await self.tpm.acquire(min(tokens, self.tpm.max_rate))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return await self.inner.complete(request)
            finally:
                self.in_flight -= 1


class BudgetedModel(ModelWrapper):
    """Counts tokens and dollars and says when the run's budget is spent.

    The world checks `exhausted` at the end of each round and stops cleanly with `message`.
    With `hard=True`, calls made after the budget is spent raise `BudgetExceeded` instead of
    going out. It counts what the ledger counts: cached answers with their original tokens
    and no dollars, replies that fail the schema with what they cost. On resume the ledger
    sets `tokens_used` and `usd_used` from the rows it keeps.
    """

    def __init__(self, inner: LanguageModel, *, max_tokens: int | None = None, max_usd: float | None = None,
                 hard: bool = False):
        super().__init__(inner)
        self.max_tokens, self.max_usd, self.hard = max_tokens, max_usd, hard
        self.tokens_used = 0
        self.usd_used = 0.0

    @property
    def exhausted(self) -> bool:
        return (self.max_tokens is not None and self.tokens_used >= self.max_tokens) or (
            self.max_usd is not None and self.usd_used >= self.max_usd)

    @property
    def message(self) -> str:
        """One sentence on the state of the budget (for the run's stop message)."""
        parts = []
        if self.max_tokens is not None:
            parts.append(f"{self.tokens_used:,} of {self.max_tokens:,} tokens")
        if self.max_usd is not None:
            parts.append(f"${self.usd_used:.4f} of ${self.max_usd:.4f}")
        used = " and ".join(parts) if parts else "no cap"
        if self.exhausted:
            return f"LLM budget spent ({used}); the run stops at the end of this round"
        return f"LLM budget: {used} used"

    def _add(self, usage: LLMUsage) -> None:
        self.tokens_used += usage.total_tokens
        if not usage.cached:
            self.usd_used += usage.cost_usd or 0.0

    async def complete(self, request: LLMRequest) -> LLMResponse:
        if self.hard and self.exhausted:
            raise BudgetExceeded(self.message)
        try:
            response = await self.inner.complete(request)
        except LLMError as exc:
            self._add(exc.usage)
            raise
        self._add(response.usage)
        return response


__all__ = ["BudgetedModel", "LimitedModel", "ModelWrapper", "RetryingModel", "find_layer"]
