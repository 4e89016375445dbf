"""`LedgerModel`: one row per LLM call, written to `llm_calls.parquet` in the run folder.

Columns (see `LEDGER_SCHEMA`): run_id, round, call_id, agent_id, purpose, model,
prompt_tokens, completion_tokens, total_tokens, cost_usd (null where litellm does not
know the price; 0 for cache hits and the embedded model), latency_s, cached, retries,
outcome (ok | retry | error | invalid_output | budget), error (one line, secrets
redacted).

`flush()` rewrites the whole file atomically (temporary file + rename), so a crash loses
at most the calls made since the last flush (the world flushes at the end of each
round), and the file on disk is always complete and readable.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

from simworld.llm.types import (
    LanguageModel,
    LLMError,
    LLMOutputError,
    LLMRequest,
    LLMResponse,
)
from simworld.llm.wrappers import ModelWrapper

LEDGER_FILENAME = "llm_calls.parquet"

OUTCOMES = ("ok", "retry", "error", "invalid_output", "budget")


def _schema() -> dict[str, Any]:
    import polars as pl

    return {
        "run_id": pl.Utf8,
        "round": pl.Int64,
        "call_id": pl.Int64,
        "agent_id": pl.Int64,
        "purpose": pl.Utf8,
        "model": pl.Utf8,
        "prompt_tokens": pl.Int64,
        "completion_tokens": pl.Int64,
        "total_tokens": pl.Int64,
        "cost_usd": pl.Float64,
        "latency_s": pl.Float64,
        "cached": pl.Boolean,
        "retries": pl.Int64,
        "outcome": pl.Utf8,
        "error": pl.Utf8,
    }


def redact(text: str, secrets: list[str]) -> str:
    """Replace every secret (of at least 4 characters) in `text` with '***'."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def secrets_from_env(env_names: list[str]) -> list[str]:
    return [os.environ[n] for n in env_names if os.environ.get(n)]


class LedgerModel(ModelWrapper):
    """Records every call that passes through it; `flush()` writes them to the run folder.

    Set `round` (or call `set_round`) at the start of each round; a request's own
    `round`, when given, wins. `secret_env` names environment variables whose values
    must never be written (they are redacted from error messages).
    """

    def __init__(
        self,
        inner: LanguageModel,
        *,
        run_id: str = "",
        run_dir: Path | None = None,
        model_name: str = "",
        secret_env: list[str] | None = None,
    ):
        super().__init__(inner)
        self.run_id = run_id
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.model_name = model_name
        self.secret_env = list(secret_env or [])
        self.round: int | None = None
        self._rows: list[dict[str, Any]] = []
        self._flushed = None  # polars.DataFrame of rows already on disk
        self._lock = threading.Lock()
        self._ids = itertools.count()
        # running totals (all calls, flushed or not)
        self.calls = 0
        self.tokens = 0
        self.cost_usd = 0.0
        self.cache_hits = 0
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)

    def set_round(self, round_: int | None) -> None:
        self.round = round_

    # -- recording
    def _record(
        self,
        request: LLMRequest,
        call_id: int,
        *,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float | None,
        latency_s: float,
        cached: bool,
        retries: int,
        outcome: str,
        error: str | None,
    ) -> None:
        if error is not None:
            error = redact(" ".join(error.split())[:500], secrets_from_env(self.secret_env))
        row = {
            "run_id": self.run_id,
            "round": request.round if request.round is not None else self.round,
            "call_id": call_id,
            "agent_id": request.agent_id,
            "purpose": request.purpose,
            "model": model or self.model_name,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cost_usd": cost_usd,
            "latency_s": latency_s,
            "cached": cached,
            "retries": retries,
            "outcome": outcome,
            "error": error,
        }
        with self._lock:
            self._rows.append(row)
            self.calls += 1
            self.tokens += prompt_tokens + completion_tokens
            self.cost_usd += cost_usd or 0.0
            self.cache_hits += int(cached)
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def _ok(self, request: LLMRequest, call_id: int, r: LLMResponse) -> None:
        self._record(
            request,
            call_id,
            model=r.model,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            cost_usd=r.cost_usd,
            latency_s=r.latency_s,
            cached=r.cached,
            retries=r.retries,
            outcome="retry" if r.retries else "ok",
            error=None,
        )

    def _failed(self, request: LLMRequest, call_id: int, exc: LLMError, started: float) -> None:
        if isinstance(exc, LLMOutputError):
            self._record(
                request,
                call_id,
                model=exc.model,
                prompt_tokens=exc.prompt_tokens,
                completion_tokens=exc.completion_tokens,
                cost_usd=exc.cost_usd,
                latency_s=exc.latency_s or (time.perf_counter() - started),
                cached=exc.cached,
                retries=exc.retries,
                outcome="invalid_output",
                error=exc.validation_error,
            )
        else:
            self._record(
                request,
                call_id,
                model="",
                prompt_tokens=0,
                completion_tokens=0,
                cost_usd=None,
                latency_s=time.perf_counter() - started,
                cached=False,
                retries=exc.retries,
                outcome=exc.outcome,
                error=str(exc),
            )

    async def acomplete(self, request: LLMRequest) -> LLMResponse:
        call_id = next(self._ids)
        started = time.perf_counter()
        try:
            response = await self.inner.acomplete(request)
        except LLMError as exc:
            self._failed(request, call_id, exc, started)
            raise
        self._ok(request, call_id, response)
        return response

    def complete(self, request: LLMRequest) -> LLMResponse:
        call_id = next(self._ids)
        started = time.perf_counter()
        try:
            response = self.inner.complete(request)
        except LLMError as exc:
            self._failed(request, call_id, exc, started)
            raise
        self._ok(request, call_id, response)
        return response

    # -- output
    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def frame(self):
        """Every call recorded by this ledger (flushed and pending) as a polars DataFrame."""
        import polars as pl

        with self._lock:
            rows = list(self._rows)
            flushed = self._flushed
        new = pl.DataFrame(rows, schema=_schema()) if rows else pl.DataFrame(schema=_schema())
        return pl.concat([flushed, new]) if flushed is not None else new

    def flush(self, path: Path | None = None) -> Path:
        """Write all calls so far to `path` (a run folder or a .parquet file) atomically.

        Calls already in the file from an earlier process (a resumed run) are kept.
        """
        import polars as pl

        target = self._target(path)
        with self._lock:
            rows, self._rows = self._rows, []
            if self._flushed is None:
                self._flushed = (
                    pl.read_parquet(target) if target.is_file() else pl.DataFrame(schema=_schema())
                )
            if rows:
                self._flushed = pl.concat(
                    [self._flushed, pl.DataFrame(rows, schema=_schema())]
                )
            frame = self._flushed
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        frame.write_parquet(tmp)
        os.replace(tmp, target)
        return target

    def _target(self, path: Path | None) -> Path:
        p = Path(path) if path is not None else self.run_dir
        if p is None:
            raise ValueError("LedgerModel.flush needs a path (no run_dir was given)")
        return p if p.suffix == ".parquet" else p / LEDGER_FILENAME

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": self.calls,
                "tokens": self.tokens,
                "cost_usd": self.cost_usd,
                "cache_hits": self.cache_hits,
                **{f"outcome_{k}": v for k, v in self.outcomes.items()},
            }


def read_ledger(run_dir: Path):
    """The ledger of a run folder as a polars DataFrame (empty, with the columns, if none)."""
    import polars as pl

    path = Path(run_dir)
    if path.suffix != ".parquet":
        path = path / LEDGER_FILENAME
    if not path.is_file():
        return pl.DataFrame(schema=_schema())
    return pl.read_parquet(path)
