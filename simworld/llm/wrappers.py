"""Wrappers around a `LanguageModel`, each with the same interface (Concordia style).

The factory (`simworld.llm.factory.build_language_model`) stacks them, outermost first:

    LedgerModel -> BudgetedModel -> CachedModel -> RetryingModel -> LimitedModel -> LiteLLMModel

so that a cache hit never takes a concurrency slot, spends no money and still shows in
the ledger; retry back-off never holds a slot; and the budget counts what the ledger
counts (cached answers included, so a replay stops at the same round as the original).
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
import weakref
from dataclasses import replace
from typing import TypeVar

from simworld.llm.types import (
    BudgetExceeded,
    LanguageModel,
    LLMError,
    LLMOutputError,
    LLMRequest,
    LLMResponse,
    LLMTransientError,
    LLMUnavailableError,
)

W = TypeVar("W")


class ModelWrapper:
    """A `LanguageModel` that delegates to `inner`. Subclasses override what they change."""

    def __init__(self, inner: LanguageModel):
        self.inner = inner

    async def acomplete(self, request: LLMRequest) -> LLMResponse:
        return await self.inner.acomplete(request)

    def complete(self, request: LLMRequest) -> LLMResponse:
        return self.inner.complete(request)

    def find(self, cls: type[W]) -> W | None:
        """The first layer of type `cls` in this stack (self included), or None."""
        return find_layer(self, cls)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


def find_layer(model: object, cls: type[W]) -> W | None:
    """Walk a stack of wrappers (through `.inner`) and return the first `cls` in it."""
    seen = 0
    while model is not None and seen < 64:
        if isinstance(model, cls):
            return model
        model = getattr(model, "inner", None)
        seen += 1
    return None


# ---------------------------------------------------------------------------------------
# retry


class RetryingModel(ModelWrapper):
    """Retries transient failures only, with exponential back-off and seeded jitter.

    Transient: `LLMTransientError` (429 rate limit, timeouts, 5xx, connection failures,
    broken responses). Never retried: `LLMRequestError` (400, 401, 403, 404, ...),
    `LLMOutputError` (a reply that fails the schema: the policy decides what to do) and
    `BudgetExceeded`. A 429's Retry-After is honoured (waited at least, capped at
    `max_delay_s`). Each attempt is bounded by `timeout_s` (async path; the sync path
    relies on the transport's own timeout). After `max_retries` retries the last failure
    is raised as `LLMUnavailableError` with one clear sentence.
    """

    def __init__(
        self,
        inner: LanguageModel,
        *,
        max_retries: int = 4,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        timeout_s: float | None = None,
        seed: int = 0,
    ):
        super().__init__(inner)
        self.max_retries = max_retries
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.retry_count = 0  # total retries made, for reports

    def delay_for(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `attempt + 1`."""
        backoff = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        with self._rng_lock:
            jittered = backoff * (0.5 + 0.5 * self._rng.random())
        if retry_after is not None and retry_after > 0:
            return min(self.max_delay_s, retry_after)
        return jittered

    async def acomplete(self, request: LLMRequest) -> LLMResponse:
        attempt = 0
        while True:
            try:
                if self.timeout_s is not None:
                    try:
                        # a little slack so the transport's own timeout (clearer message) wins
                        response = await asyncio.wait_for(
                            self.inner.acomplete(request), self.timeout_s + 1.0
                        )
                    except asyncio.TimeoutError:
                        raise LLMTransientError(
                            f"model call timed out after {self.timeout_s:g} s", kind="timeout"
                        ) from None
                else:
                    response = await self.inner.acomplete(request)
                return replace(response, retries=response.retries + attempt) if attempt else response
            except LLMTransientError as exc:
                if attempt >= self.max_retries:
                    raise self._give_up(exc, attempt) from exc
                delay = self.delay_for(attempt, exc.retry_after)
                attempt += 1
                self.retry_count += 1
                await asyncio.sleep(delay)
            except LLMError as exc:
                exc.retries = attempt
                raise

    def complete(self, request: LLMRequest) -> LLMResponse:
        attempt = 0
        while True:
            try:
                response = self.inner.complete(request)
                return replace(response, retries=response.retries + attempt) if attempt else response
            except LLMTransientError as exc:
                if attempt >= self.max_retries:
                    raise self._give_up(exc, attempt) from exc
                delay = self.delay_for(attempt, exc.retry_after)
                attempt += 1
                self.retry_count += 1
                time.sleep(delay)
            except LLMError as exc:
                exc.retries = attempt
                raise

    def _give_up(self, exc: LLMTransientError, attempt: int) -> LLMUnavailableError:
        if attempt:
            msg = f"{exc} (gave up after {attempt + 1} attempts)"
        else:
            msg = str(exc)
        err = LLMUnavailableError(msg)
        err.retries = attempt
        return err


# ---------------------------------------------------------------------------------------
# concurrency and rate limits


class LimitedModel(ModelWrapper):
    """Caps calls in flight (`concurrency`) and, optionally, requests and tokens per minute.

    Share one instance across the whole run: every agent's calls go through the same
    limiter. Works across event loops (a semaphore per loop) and for sync callers (a
    thread semaphore); `max_in_flight` records the highest number of calls in flight
    seen, for tests and reports. Token use for `tpm` is estimated before the call
    (prompt characters / 4 + max_tokens) and corrected with the real usage after it.
    """

    def __init__(
        self,
        inner: LanguageModel,
        *,
        concurrency: int,
        rpm: int | None = None,
        tpm: int | None = None,
        default_max_tokens: int = 256,
        window_s: float = 60.0,
    ):
        super().__init__(inner)
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.rpm = rpm
        self.tpm = tpm
        self.default_max_tokens = default_max_tokens
        self.window_s = window_s  # the "minute" of rpm/tpm (shorter in tests)
        self._loop_sems: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._thread_sem = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._starts: collections.deque[float] = collections.deque()
        self._tokens: collections.deque[tuple[float, int]] = collections.deque()
        self._token_sum = 0
        self.in_flight = 0
        self.max_in_flight = 0

    # -- helpers
    def _sem(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            sem = self._loop_sems.get(loop)
            if sem is None:
                sem = asyncio.Semaphore(self.concurrency)
                self._loop_sems[loop] = sem
            return sem

    def _estimate(self, request: LLMRequest) -> int:
        chars = sum(len(m["content"]) for m in request.messages)
        return chars // 4 + (request.max_tokens or self.default_max_tokens)

    def _rate_wait(self, estimate: int) -> float:
        """Seconds to wait before this call may start; 0 admits it (and records it)."""
        if self.rpm is None and self.tpm is None:
            return 0.0
        now = time.monotonic()
        with self._lock:
            horizon = now - self.window_s
            while self._starts and self._starts[0] <= horizon:
                self._starts.popleft()
            while self._tokens and self._tokens[0][0] <= horizon:
                self._token_sum -= self._tokens.popleft()[1]
            wait = 0.0
            if self.rpm is not None and len(self._starts) >= self.rpm:
                wait = self._starts[0] + self.window_s - now
            if self.tpm is not None and self._tokens and self._token_sum + estimate > self.tpm:
                # wait until enough of the window has expired to fit this call
                need = self._token_sum + estimate - self.tpm
                freed = 0
                for t, n in self._tokens:
                    freed += n
                    if freed >= need:
                        wait = max(wait, t + self.window_s - now)
                        break
                else:
                    wait = max(wait, self._tokens[-1][0] + self.window_s - now)
            if wait > 0:
                return wait + 0.001
            self._starts.append(now)
            if self.tpm is not None:
                self._tokens.append((now, estimate))
                self._token_sum += estimate
            return 0.0

    def _correct_tokens(self, estimate: int, response: LLMResponse | None) -> None:
        if self.tpm is None or response is None:
            return
        delta = response.total_tokens - estimate
        if delta:
            with self._lock:
                self._tokens.append((time.monotonic(), delta))
                self._token_sum += delta

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _exit(self) -> None:
        with self._lock:
            self.in_flight -= 1

    # -- interface
    async def acomplete(self, request: LLMRequest) -> LLMResponse:
        estimate = self._estimate(request)
        async with self._sem():
            while (wait := self._rate_wait(estimate)) > 0:
                await asyncio.sleep(wait)
            self._enter()
            response = None
            try:
                response = await self.inner.acomplete(request)
                return response
            finally:
                self._exit()
                self._correct_tokens(estimate, response)

    def complete(self, request: LLMRequest) -> LLMResponse:
        estimate = self._estimate(request)
        with self._thread_sem:
            while (wait := self._rate_wait(estimate)) > 0:
                time.sleep(wait)
            self._enter()
            response = None
            try:
                response = self.inner.complete(request)
                return response
            finally:
                self._exit()
                self._correct_tokens(estimate, response)


# ---------------------------------------------------------------------------------------
# budget


class BudgetedModel(ModelWrapper):
    """Counts tokens and dollars and says when the run's budget is spent.

    The world checks `exhausted` at the end of each round and stops cleanly with
    `message`. With `hard=True`, calls made after the budget is spent raise
    `BudgetExceeded` instead of going out. Cached answers count with their original
    token use (so a replay of a run stops where the run stopped) and no dollars.
    Replies that fail the schema still cost what they cost and are counted.
    """

    def __init__(
        self,
        inner: LanguageModel,
        *,
        max_tokens: int | None = None,
        max_usd: float | None = None,
        hard: bool = False,
    ):
        super().__init__(inner)
        self.max_tokens = max_tokens
        self.max_usd = max_usd
        self.hard = hard
        self.tokens_used = 0
        self.usd_used = 0.0
        self._lock = threading.Lock()

    @property
    def exhausted(self) -> bool:
        if self.max_tokens is not None and self.tokens_used >= self.max_tokens:
            return True
        if self.max_usd is not None and self.usd_used >= self.max_usd:
            return True
        return False

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

    def _check(self) -> None:
        if self.hard and self.exhausted:
            raise BudgetExceeded(self.message)

    def _add(self, tokens: int, usd: float | None, cached: bool) -> None:
        with self._lock:
            self.tokens_used += tokens
            if usd and not cached:
                self.usd_used += usd

    async def acomplete(self, request: LLMRequest) -> LLMResponse:
        self._check()
        try:
            response = await self.inner.acomplete(request)
        except LLMOutputError as exc:
            self._add(exc.prompt_tokens + exc.completion_tokens, exc.cost_usd, exc.cached)
            raise
        self._add(response.total_tokens, response.cost_usd, response.cached)
        return response

    def complete(self, request: LLMRequest) -> LLMResponse:
        self._check()
        try:
            response = self.inner.complete(request)
        except LLMOutputError as exc:
            self._add(exc.prompt_tokens + exc.completion_tokens, exc.cost_usd, exc.cached)
            raise
        self._add(response.total_tokens, response.cost_usd, response.cached)
        return response


__all__ = [
    "BudgetedModel",
    "LimitedModel",
    "ModelWrapper",
    "RetryingModel",
    "find_layer",
]
