"""`CachedModel`: a SQLite response cache, so that re-running a scenario makes no calls.

The key is a sha256 of the model name, the messages, the parameters (temperature,
max_tokens), the seed and the JSON schema asked for. It never includes an API key or an
endpoint. Replies that fail the schema are cached too (as raw text, re-validated on a
hit), so a replay takes the same fallbacks as the original run.

Safe under concurrency: one connection per process guarded by a lock, WAL journal, and
identical requests in flight at the same time make one call (single flight). Several
processes can share a cache folder (SQLite's own locking; the first answer stored wins
and every caller returns the stored answer, so two runs cannot disagree).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from simworld.llm.types import (
    LanguageModel,
    LLMOutputError,
    LLMRequest,
    LLMResponse,
    canonical_json,
    validate_output,
)
from simworld.llm.wrappers import ModelWrapper

CACHE_FILENAME = "llm_cache.sqlite"
KEY_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL,
    created_at REAL NOT NULL
)
"""


def cache_key(model: str, request: LLMRequest) -> str:
    """sha256 over what determines an answer: model, messages, parameters, seed, schema."""
    payload: dict[str, Any] = {
        "v": KEY_VERSION,
        "model": model,
        "messages": [dict(m) for m in request.messages],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        "schema": request.json_schema(),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


class ResponseCache:
    """The SQLite table behind `CachedModel` (usable on its own)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)

    def get(self, key: str) -> tuple | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT model, text, prompt_tokens, completion_tokens, cost_usd FROM responses WHERE key=?",
                (key,),
            ).fetchone()
        return row

    def put(
        self,
        key: str,
        *,
        model: str,
        text: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float | None,
    ) -> tuple:
        """Store an answer unless one is there already; return the stored one."""
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, model, text, prompt_tokens, completion_tokens, cost_usd, time.time()),
            )
            return self._conn.execute(
                "SELECT model, text, prompt_tokens, completion_tokens, cost_usd FROM responses WHERE key=?",
                (key,),
            ).fetchone()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class CachedModel(ModelWrapper):
    """Answers a request from the cache when it can; otherwise calls and stores the answer.

    `model_name` names the model in the key (for a Router, its group name). `defaults`
    (temperature, max_tokens, seed) fill the request's unset parameters before the key is
    computed, exactly as the model below would fill them.
    """

    def __init__(
        self,
        inner: LanguageModel,
        path: Path,
        *,
        model_name: str,
        defaults: dict[str, Any] | None = None,
    ):
        super().__init__(inner)
        self.cache = ResponseCache(path)
        self.model_name = model_name
        self.defaults = {"temperature": None, "max_tokens": None, "seed": None, **(defaults or {})}
        self.hits = 0
        self.misses = 0
        self._inflight: dict[tuple[int, str], asyncio.Future] = {}
        self._inflight_lock = threading.Lock()

    def key(self, request: LLMRequest) -> str:
        return cache_key(self.model_name, request.with_defaults(**self.defaults))

    def _from_row(self, request: LLMRequest, row: tuple, started: float) -> LLMResponse:
        model, text, prompt_tokens, completion_tokens, _cost = row
        latency = time.perf_counter() - started
        try:
            parsed = validate_output(request, text)
        except LLMOutputError as exc:
            raise LLMOutputError(
                text,
                exc.validation_error,
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_usd=0.0,
                latency_s=latency,
                cached=True,
            ) from None
        return LLMResponse(
            text=text,
            parsed=parsed,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=0.0,
            latency_s=latency,
            cached=True,
            model=model,
        )

    def _store(self, key: str, request: LLMRequest, result: LLMResponse | LLMOutputError) -> tuple:
        return self.cache.put(
            key,
            model=result.model or self.model_name,
            text=result.text if isinstance(result, LLMResponse) else result.raw_text,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            cost_usd=result.cost_usd,
        )

    def _settle(self, request: LLMRequest, key: str, result: LLMResponse | LLMOutputError) -> LLMResponse:
        """Store a fresh result; if another caller stored first, answer with theirs."""
        stored = self._store(key, request, result)
        text = result.text if isinstance(result, LLMResponse) else result.raw_text
        if stored[1] != text:
            return self._from_row(request, stored, time.perf_counter())
        if isinstance(result, LLMOutputError):
            raise result
        return result

    async def acomplete(self, request: LLMRequest) -> LLMResponse:
        started = time.perf_counter()
        key = self.key(request)
        row = self.cache.get(key)
        if row is not None:
            self.hits += 1
            return self._from_row(request, row, started)
        loop = asyncio.get_running_loop()
        flight = (id(loop), key)
        with self._inflight_lock:
            leader = self._inflight.get(flight)
            if leader is None:
                future: asyncio.Future = loop.create_future()
                self._inflight[flight] = future
        if leader is not None:
            # an identical request is already out: wait for it, then answer from the cache
            await asyncio.shield(leader)
            row = self.cache.get(key)
            if row is not None:
                self.hits += 1
                return self._from_row(request, row, started)
            return await self.acomplete(request)  # the leader failed: try ourselves
        self.misses += 1
        try:
            try:
                response = await self.inner.acomplete(request)
            except LLMOutputError as exc:
                return self._settle(request, key, exc)
            return self._settle(request, key, response)
        finally:
            with self._inflight_lock:
                self._inflight.pop(flight, None)
            if not future.done():
                future.set_result(None)

    def complete(self, request: LLMRequest) -> LLMResponse:
        started = time.perf_counter()
        key = self.key(request)
        row = self.cache.get(key)
        if row is not None:
            self.hits += 1
            return self._from_row(request, row, started)
        self.misses += 1
        try:
            response = self.inner.complete(request)
        except LLMOutputError as exc:
            return self._settle(request, key, exc)
        return self._settle(request, key, response)

    def close(self) -> None:
        self.cache.close()
        super().close()
