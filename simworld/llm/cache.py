"""`CachedModel`: a SQLite response cache shared by the runs of an output folder.

The key is a sha256 of the model name, messages, temperature, max_tokens, seed and JSON
schema; never a key or an endpoint. Replies failing the schema are cached too (re-validated
on a hit), so a re-run takes the same fallbacks. With `cache_only` (a replay) a miss raises
`LLMCacheMiss` and nothing is called.

It is also the journal of paid calls: each answer records the run, round and process
(session) that paid for it. After `resume_from(committed_round)`, a hit on an answer this
run paid for in a round that never committed, in an earlier process, is reported exactly as
that call was (not cached; its tokens, cost, latency, retries), once: the resumed run's
ledger equals an uninterrupted run's.

Concurrency: one connection per process behind a lock, WAL journal; identical requests in
flight make one call (single flight); processes sharing the file agree (the first answer
stored wins, and every caller returns it). An answer is committed before its call returns;
the WAL is checkpointed on a thread of its own, never inside a call.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from simworld.llm.types import (
    LanguageModel, LLMCacheMiss, LLMOutputError, LLMRequest, LLMResponse, LLMUsage, answer, canonical_json,
)
from simworld.llm.wrappers import ModelWrapper

CACHE_FILENAME = ".llm_cache.sqlite"
CHECKPOINT_EVERY = 256  # answers stored between two checkpoints of the WAL (about 3 pages each)
KEY_VERSION = 1

_TABLE = """CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT NOT NULL,
    text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost_usd REAL, created_at REAL NOT NULL)"""
# added since the first version; older files get them on open
_ADDED = {"latency_s": "REAL", "retries": "INTEGER", "dropped": "TEXT", "run_id": "TEXT", "round": "INTEGER",
          "session": "TEXT"}
_COLUMNS = ("model", "text", "prompt_tokens", "completion_tokens", "cost_usd", *_ADDED)


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
    """The SQLite table behind `CachedModel`: answers by key, as dicts of `_COLUMNS`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        # A commit appends to the WAL (no fsync: an answer survives the process being killed).
        # sqlite's own checkpoint would run inside a commit every ~1,000 pages and fsync there,
        # stalling the event loop for up to 0.1 s; it runs on a thread of its own instead.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._writes = 0
        self._checkpointer: threading.Thread | None = None
        self._truncate = False  # a tidy is due (see `tidy`)
        self._conn.execute(_TABLE)
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(responses)")}
        for name, kind in _ADDED.items():
            if name not in have:
                try:
                    self._conn.execute(f"ALTER TABLE responses ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError:  # another process added it first
                    pass

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM responses WHERE key=?", (key,)).fetchone()
        return dict(zip(_COLUMNS, row)) if row is not None else None

    def put(self, key: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Store an answer unless one is there already; return the stored one."""
        names = ("key", "created_at", *entry)
        with self._lock:  # one statement: the stored row comes back only if this insert made it
            row = self._conn.execute(
                f"INSERT INTO responses ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
                f"ON CONFLICT(key) DO NOTHING RETURNING {', '.join(_COLUMNS)}",
                (key, time.time(), *entry.values())).fetchone()
            self._writes += 1
            if self._writes % CHECKPOINT_EVERY == 0:
                self._checkpoint_in_background()
        return dict(zip(_COLUMNS, row)) if row is not None else self.get(key)  # type: ignore[return-value]

    def tidy(self) -> None:
        """Between rounds: checkpoint the whole WAL on a thread and let it start again from
        empty (checkpoints during a round's calls copy it but may not restart it)."""
        with self._lock:
            self._truncate = True
            self._checkpoint_in_background()

    def _checkpoint_in_background(self) -> None:
        """Copy the WAL into the database on a thread (sqlite releases the GIL while it writes
        and syncs); one thread at a time, which also does a `tidy` asked for meanwhile.
        Called under `_lock`."""
        if self._checkpointer is not None and self._checkpointer.is_alive():
            return

        def checkpoint() -> None:
            mode = "PASSIVE"
            while mode:
                try:
                    # mode=rw: a file removed meanwhile is not made again, empty
                    conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True, timeout=5.0)
                    try:
                        conn.execute(f"PRAGMA wal_checkpoint({mode})")
                    finally:
                        conn.close()
                except sqlite3.Error:  # a busy or closed file: the next one catches up
                    pass
                with self._lock:
                    mode, self._truncate = ("TRUNCATE" if self._truncate else ""), False

        self._checkpointer = threading.Thread(target=checkpoint, name="llm-cache-checkpoint", daemon=True)
        self._checkpointer.start()

    def claim(self, key: str, run_id: str, after_round: int, session: str) -> bool:
        """Take over an answer `run_id` paid for after `after_round` in another session; True once."""
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE responses SET session=? WHERE key=? AND run_id=? AND round>? AND session IS NOT ?",
                (session, key, run_id, after_round, session))
        return cursor.rowcount == 1

    def close(self) -> None:
        with self._lock:
            checkpointer, self._checkpointer = self._checkpointer, None
            self._conn.close()  # the last connection to close checkpoints what is left
        if checkpointer is not None:
            checkpointer.join()


class CachedModel(ModelWrapper):
    """Answers from the cache when it can; otherwise calls and stores the answer. `model_name`
    names the model in the key (a Router's group name); `defaults` fill the request's unset
    parameters before the key is computed, as the model below does; `run_id` marks the
    answers this run pays for."""

    def __init__(self, inner: LanguageModel | None, path: Path, *, model_name: str,
                 defaults: dict[str, Any] | None = None, run_id: str = "", cache_only: bool = False):
        super().__init__(inner)  # type: ignore[arg-type]
        self.cache = ResponseCache(path)
        self.model_name, self.run_id, self.cache_only = model_name, run_id, cache_only
        self.defaults = {"temperature": None, "max_tokens": None, "seed": None, **(defaults or {})}
        self.session = uuid.uuid4().hex
        self.resumed_from: int | None = None
        self.hits = 0
        self._inflight: dict[tuple[int, str], asyncio.Future] = {}

    def key(self, request: LLMRequest) -> str:
        return cache_key(self.model_name, request.with_defaults(**self.defaults))

    def resume_from(self, committed_round: int) -> None:
        """This process resumes the run after `committed_round`: answers the run paid for in
        later rounds are reported as the paid calls they were (once each)."""
        self.resumed_from = committed_round

    def _hit(self, request: LLMRequest, key: str, entry: dict[str, Any], started: float) -> LLMResponse:
        paid = (self.resumed_from is not None and entry["run_id"] == self.run_id and entry["round"] is not None
                and entry["round"] > self.resumed_from
                and self.cache.claim(key, self.run_id, self.resumed_from, self.session))
        if not paid:
            self.hits += 1
        usage = LLMUsage(
            model=entry["model"], prompt_tokens=entry["prompt_tokens"], completion_tokens=entry["completion_tokens"],
            cost_usd=entry["cost_usd"] if paid else 0.0,
            latency_s=(entry["latency_s"] or 0.0) if paid else time.perf_counter() - started,
            cached=not paid, retries=(entry["retries"] or 0) if paid else 0,
            dropped_params=tuple(p for p in (entry["dropped"] or "").split(",") if p) if paid else ())
        return answer(request, entry["text"], usage)

    def _store(self, key: str, request: LLMRequest, result: LLMResponse | LLMOutputError) -> dict[str, Any]:
        u = result.usage
        return self.cache.put(key, {
            "model": u.model or self.model_name, "text": _text(result), "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens, "cost_usd": u.cost_usd, "latency_s": u.latency_s,
            "retries": u.retries, "dropped": ",".join(u.dropped_params), "run_id": self.run_id,
            "round": request.round, "session": self.session})

    async def complete(self, request: LLMRequest) -> LLMResponse:
        started = time.perf_counter()
        key = self.key(request)
        flight = (id(asyncio.get_running_loop()), key)
        while True:
            entry = self.cache.get(key)
            if entry is not None:
                return self._hit(request, key, entry, started)
            if self.cache_only:
                who = f" of agent {request.agent_id}" if request.agent_id is not None else ""
                when = f" in round {request.round}" if request.round is not None else ""
                raise LLMCacheMiss(f"no cached answer for {request.purpose}{who}{when}; "
                                   "replay needs the original run's cache")
            leader = self._inflight.get(flight)
            if leader is None:
                break
            await asyncio.shield(leader)  # an identical request is out: wait, then read (or lead)
        self._inflight[flight] = done = asyncio.get_running_loop().create_future()
        try:
            try:
                result: LLMResponse | LLMOutputError = await self.inner.complete(request)
            except LLMOutputError as exc:
                result = exc
            stored = self._store(key, request, result)
            if stored["text"] != _text(result):  # another process stored first: answer with theirs
                return self._hit(request, key, stored, started)
            if isinstance(result, LLMOutputError):
                raise result
            return result
        finally:
            self._inflight.pop(flight, None)
            done.set_result(None)

    def close(self) -> None:
        self.cache.close()
        if self.inner is not None:
            super().close()


def _text(result: LLMResponse | LLMOutputError) -> str:
    return result.text if isinstance(result, LLMResponse) else result.raw_text
