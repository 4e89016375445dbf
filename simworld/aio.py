"""The run's one event loop: async work (LLM calls of every agent) runs here, sync callers
(the round's stages, interviews, an LLM re-ranker) hand it their coroutines."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Coroutine, Iterable, TypeVar

T = TypeVar("T")


class LoopRunner:
    """Owns one event loop for the life of a run; not thread-safe (one caller at a time)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def start(self, coro: Coroutine[Any, Any, T]) -> "asyncio.Task[T]":
        """Schedule a coroutine without waiting for it: it runs whenever the loop next runs (a
        later `gather` or `run`), so work started before another stage's gather overlaps it.
        Collect its result by passing the task to `gather`."""
        return self._loop.create_task(coro)

    def gather(self, aws: Iterable[Awaitable[T]]) -> list[T]:
        """Run awaitables concurrently and return their results in order."""
        aws = list(aws)
        if not aws:
            return []

        async def all_of() -> list[T]:
            # When one fails, the others still run to their end (not cancelled: a call cancelled
            # inside litellm's executor hand-off leaves a coroutine never awaited, and a paid
            # answer that completes lands in the cache for the resumed round); then the first
            # failure, in order, is raised.
            results = await asyncio.gather(*aws, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            return list(results)

        return self.run(all_of())

    @property
    def closed(self) -> bool:
        return self._loop.is_closed()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        # libraries leave background tasks on the loop (litellm's logging worker): end them
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()
