"""`LedgerModel`: one row per LLM call, written to `llm_calls.parquet` in the run folder.

Columns: see `_schema`. cost_usd is null where no price is known (0 for cache hits and the
embedded model); outcome is one of `OUTCOMES`; error is one line, keys redacted;
dropped_params names what litellm dropped because the provider does not take it ("seed").

The run's life: `set_round(n)` at the start of a round; `flush()` before the round's
checkpoint (an atomic rewrite: temporary file + rename), `commit()` after it. On resume,
`restore(committed_round)` drops the rows of rounds that never committed, re-derives the
next call id and the budget's counters from the rows kept, and has the response cache report
the answers already paid for in the replayed round as the paid calls they were. A resumed
run's ledger thus equals an uninterrupted run's, wherever it was killed.
"""

from __future__ import annotations

import io
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from simworld.llm.cache import CachedModel
from simworld.llm.types import (
    LanguageModel,
    LLMError,
    LLMOutputError,
    LLMRequest,
    LLMResponse,
    LLMUsage,
    redact,
)
from simworld.llm.wrappers import BudgetedModel, ModelWrapper

LEDGER_FILENAME = "llm_calls.parquet"
OUTCOMES = ("ok", "retry", "error", "invalid_output", "budget", "cache_miss")


def _schema() -> dict[str, Any]:
    import polars as pl

    return {"run_id": pl.Utf8, "round": pl.Int64, "call_id": pl.Int64, "agent_id": pl.Int64, "purpose": pl.Utf8,
            "model": pl.Utf8, "prompt_tokens": pl.Int64, "completion_tokens": pl.Int64, "total_tokens": pl.Int64,
            "cost_usd": pl.Float64, "latency_s": pl.Float64, "cached": pl.Boolean, "retries": pl.Int64,
            "outcome": pl.Utf8, "error": pl.Utf8, "dropped_params": pl.Utf8}


def read_ledger(run_dir: Path):
    """The ledger of a run folder (or a .parquet path) as a polars DataFrame (empty if none)."""
    import polars as pl

    path = Path(run_dir)
    path = path if path.suffix == ".parquet" else path / LEDGER_FILENAME
    if not path.is_file():
        return pl.DataFrame(schema=_schema())
    frame = pl.read_parquet(io.BytesIO(path.read_bytes()))  # in one go: a live run replaces the file
    missing = [pl.lit(None, dtype).alias(name) for name, dtype in _schema().items() if name not in frame.columns]
    return frame.with_columns(missing) if missing else frame  # a file from before a column was added


def _file_state(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of a file from another (it is replaced whole: a new inode)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class LedgerModel(ModelWrapper):
    """Records every call that passes through it, in memory until `flush()`.

    A request's own `round` wins over `set_round`'s. `secret_env` names the environment
    variables whose values must never be written (they are redacted from error messages).
    """

    def __init__(self, inner: LanguageModel, *, run_id: str = "", run_dir: Path | None = None,
                 model_name: str = "", secret_env: list[str] | None = None):
        super().__init__(inner)
        self.run_id, self.model_name = run_id, model_name
        self.path = Path(run_dir) / LEDGER_FILENAME if run_dir is not None else None
        self.secret_env = list(secret_env or [])
        self.round: int | None = None
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        import polars as pl

        self._seen = _file_state(self.path) if self.path is not None else None  # (see `flush`)
        self._set_known(read_ledger(self.path) if self.path is not None else pl.DataFrame(schema=_schema()))

    def set_round(self, round_: int | None) -> None:
        if round_ != self.round:  # a new round: a moment to tidy the response cache's journal
            cache = self.find(CachedModel)
            if cache is not None:
                cache.cache.tidy()
        self.round = round_

    async def complete(self, request: LLMRequest) -> LLMResponse:
        if request.round is None and self.round is not None:
            request = replace(request, round=self.round)
        with self._lock:
            call_id, self._next_id = self._next_id, self._next_id + 1
        started = time.perf_counter()
        try:
            response = await self.inner.complete(request)
        except LLMError as exc:
            error = exc.validation_error if isinstance(exc, LLMOutputError) else str(exc)
            self._record(request, call_id, exc.usage, exc.outcome, error, started)
            raise
        self._record(request, call_id, response.usage, "retry" if response.usage.retries else "ok", None, started)
        return response

    def _record(self, request: LLMRequest, call_id: int, usage: LLMUsage, outcome: str, error: str | None,
                started: float) -> None:
        if error is not None:
            error = redact(" ".join(error.split())[:500], [os.environ.get(n, "") for n in self.secret_env])
        row = {"run_id": self.run_id, "round": request.round, "call_id": call_id, "agent_id": request.agent_id,
               "purpose": request.purpose, "model": usage.model or self.model_name,
               "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
               "total_tokens": usage.total_tokens, "cost_usd": usage.cost_usd,
               "latency_s": usage.latency_s or (time.perf_counter() - started), "cached": usage.cached,
               "retries": usage.retries, "outcome": outcome, "error": error,
               "dropped_params": ",".join(usage.dropped_params) or None}
        with self._lock:
            self._rows.append(row)

    # -- calls made in other processes (simworld/execution: worker shards have stacks of their own)
    def take_rows(self) -> list[dict[str, Any]]:
        """The rows recorded since the last take (or flush), removed from this ledger."""
        with self._lock:
            rows, self._rows = self._rows, []
        return rows

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        """Another stack's rows for this run, numbered with this ledger's call ids."""
        with self._lock:
            for row in rows:
                self._rows.append({**row, "run_id": self.run_id, "call_id": self._next_id})
                self._next_id += 1

    # -- the run's life
    def flush(self) -> Path | None:
        """Append the calls recorded since the last flush to the run folder's file, atomically.
        Rows another stack wrote to the same file meanwhile are kept. No run folder: no-op."""
        if self.path is None:
            return None
        import polars as pl

        with self._lock:
            rows, self._rows = self._rows, []
        # the file as this stack last saw it needs no reading again (a long run's ledger is large)
        frame = self._known if self._seen is not None and self._seen == _file_state(self.path) else (
            read_ledger(self.path))
        if rows or not self.path.is_file():
            frame = pl.concat([frame, pl.DataFrame(rows, schema=_schema())], how="vertical_relaxed")
            self._write(frame)
        self._set_known(frame)
        return self.path

    def restore(self, committed_round: int) -> None:
        """Resume after `committed_round`: drop the rows of later rounds from the file, take the
        next call id and the budget's counters from the rows kept, and let the cache report the
        answers paid for in the uncommitted round as paid (see `CachedModel.resume_from`)."""
        import polars as pl

        with self._lock:
            self._rows = []
        if self.path is not None:
            self._seen, frame = _file_state(self.path), read_ledger(self.path)
        else:
            frame = self._known
        kept = frame.filter(pl.col("round").is_null() | (pl.col("round") <= committed_round))
        if self.path is not None and kept.height != frame.height:
            self._write(kept)
        self._set_known(kept)
        cache = self.find(CachedModel)
        if cache is not None:
            cache.resume_from(committed_round)

    def commit(self) -> None:
        """The current round is committed (its checkpoint is written). After a resume, answers
        paid for in it are no longer those of an uncommitted round."""
        cache = self.find(CachedModel)
        if cache is not None and cache.resumed_from is not None and self.round is not None:
            cache.resume_from(max(cache.resumed_from, self.round))

    def _write(self, frame) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        frame.write_parquet(tmp)
        os.replace(tmp, self.path)
        self._seen = _file_state(self.path)

    def _set_known(self, frame) -> None:
        """`frame` is what the file holds now: the next call id and the budget follow from it."""
        import polars as pl

        with self._lock:
            self._known = frame
            self._next_id = int(frame["call_id"].max()) + 1 if frame.height else 0
            pending = pl.DataFrame(self._rows, schema=_schema())
        budget = self.find(BudgetedModel)
        if budget is not None:  # the budget counts what the ledger counts
            every = pl.concat([frame, pending], how="vertical_relaxed")
            budget.tokens_used = int(every["total_tokens"].sum())
            budget.usd_used = float(every.filter(~pl.col("cached"))["cost_usd"].sum() or 0.0)

    # -- reading
    def frame(self):
        """Every call of the run: those in the file and those not yet flushed."""
        import polars as pl

        with self._lock:
            rows, known = list(self._rows), self._known
        return pl.concat([known, pl.DataFrame(rows, schema=_schema())], how="vertical_relaxed") if rows else known

    @property
    def outcomes(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        counts.update(dict(self.frame()["outcome"].value_counts().iter_rows()))
        return counts

    def summary(self) -> dict[str, Any]:
        frame, counts = self.frame(), self.outcomes
        return {"calls": frame.height, "tokens": int(frame["total_tokens"].sum()),
                "cost_usd": float(frame["cost_usd"].sum() or 0.0), "cache_hits": int(frame["cached"].sum()),
                **{f"outcome_{k}": v for k, v in counts.items()}}
