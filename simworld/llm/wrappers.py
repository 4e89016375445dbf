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
    BudgetExceeded, LanguageModel, LLMError, LLMRequest, LLMResponse, LLMTransientError, LLMUnavailableError,
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
        """The first layer of type `cls` in this stack (self included, through `.inner`), or None."""
        layer: object = self
        while layer is not None and not isinstance(layer, cls):
            layer = getattr(layer, "inner", None)
        return layer

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


class RetryingModel(ModelWrapper):
    """Retries `LLMTransientError`s only (tenacity), with exponential back-off and seeded jitter,
    honouring a 429's Retry-After (capped at `max_delay_s`); each attempt is bounded by
    `timeout_s`. Every other error, and any exception that is a bug, goes through at once.
    After `max_retries` retries: `LLMUnavailableError`, one sentence naming the endpoint and
    the number of attempts."""

    def __init__(self, inner: LanguageModel, *, max_retries: int = 4, base_delay_s: float = 0.5,
                 max_delay_s: float = 30.0, timeout_s: float | None = None, seed: int = 0):
        super().__init__(inner)
        self.max_retries, self.base_delay_s, self.max_delay_s = max_retries, base_delay_s, max_delay_s
        self.timeout_s = timeout_s
        self._rng = random.Random(seed)

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
            async with asyncio.timeout(self.timeout_s + 1.0):  # no extra task, unlike wait_for
                return await self.inner.complete(request)
        except TimeoutError:
            raise LLMTransientError(f"model call timed out after {self.timeout_s:g} s", kind="timeout") from None

    async def complete(self, request: LLMRequest) -> LLMResponse:
        # Most calls succeed at once: the first attempt runs without tenacity's machinery (a
        # retry state and its callbacks, built per call), which only a transient failure starts.
        try:
            return await self._attempt(request)
        except LLMTransientError as exc:  # any other error goes through at once, as below
            first: LLMTransientError | None = exc
        retrying = AsyncRetrying(retry=retry_if_exception_type(LLMTransientError), wait=self._wait,
                                 stop=stop_after_attempt(self.max_retries + 1))
        attempts = 0
        try:
            async for attempt in retrying:
                attempts = attempt.retry_state.attempt_number
                with attempt:
                    if first is not None:  # tenacity's attempt 1 is the one that failed above
                        failed, first = first, None
                        raise failed
                    response = await self._attempt(request)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            message = f"{last} (gave up after {attempts} attempts)" if attempts > 1 else str(last)
            raise LLMUnavailableError(message, usage=replace(last.usage, retries=attempts - 1)) from last
        except LLMError as exc:
            exc.usage = replace(exc.usage, retries=exc.usage.retries + attempts - 1)
            raise
        if attempts == 1:
            return response
        return replace(response, usage=replace(response.usage, retries=response.usage.retries + attempts - 1))


class LimitedModel(ModelWrapper):
    """Caps calls in flight (`concurrency`, a semaphore per event loop) and, optionally,
    requests and tokens per minute (aiolimiter buckets over `window_s`, shorter in tests; a
    call's tokens are estimated as prompt characters / 4 + max_tokens). One instance serves
    the whole run. `max_in_flight`: the most calls seen in flight, for tests and reports."""

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
    """Counts tokens and dollars; the world checks `exhausted` after each round and stops
    cleanly with `message`. With `hard=True`, calls after the budget is spent raise
    `BudgetExceeded`. It counts what the ledger counts (cached answers: their tokens, no
    dollars; invalid replies: what they cost), and the ledger sets it on resume."""

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
        parts = ([f"{self.tokens_used:,} of {self.max_tokens:,} tokens"] if self.max_tokens is not None else []) + (
            [f"${self.usd_used:.4f} of ${self.max_usd:.4f}"] if self.max_usd is not None else [])
        used = " and ".join(parts) or "no cap"
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


__all__ = ["BudgetedModel", "LimitedModel", "ModelWrapper", "RetryingModel"]
