"""The run folder: the event log, per-round metrics, the summary and checkpoints.

    runs/<run-id>/scenario.yaml      the scenario as resolved
    runs/<run-id>/events/round-*.parquet   one file per finished round while the run is live
    runs/<run-id>/events.parquet     all events, written when the run ends (parts removed)
    runs/<run-id>/metrics.parquet    one row per round
    runs/<run-id>/summary.json       status, totals, timings (updated every round)
    runs/<run-id>/checkpoint.pkl     the world after the last complete round
    runs/<run-id>/personas.parquet   who the agents are (rewritten when a persona is edited)
    runs/<run-id>/agents/round-*.parquet   per round, each agent's taste vector and dominant genre
    runs/<run-id>/agents.parquet     those rounds in one file, written when the run ends (parts removed)
    runs/<run-id>/timings.parquet    per round, the wall time of each stage of the round (and of recording)

Every file is written to a temporary name and renamed, and the checkpoint is written last:
a round is complete once its checkpoint exists. A crash loses at most the round in progress,
and `resume` drops any file of a round past the checkpoint.

Recording a round's events, metrics, summary and agent snapshot costs the same in round 100
as in round 1: the round's events and agent snapshot go to their own part files (folded at
the end), the metrics come from running aggregates (`metrics.RunningMetrics`) and the summary
from running totals; a resumed run rebuilds both from its event log once. (The checkpoint
grows with the state: the recommender keeps every interaction.)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from simworld.catalog import Catalog
from simworld.config import Scenario
from simworld.errors import SimworldError
from simworld.events import conform_events, empty_events
from simworld.metrics import RunningMetrics

CHECKPOINT = "checkpoint.pkl"
AGENT_PARTS = "agents"  # folder of the per-round agent snapshots while the run is live
TIMINGS = "timings.parquet"
TIMINGS_SCHEMA = {"round": pl.Int64, "stage": pl.String, "seconds": pl.Float64}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_parquet(path: Path) -> pl.DataFrame:
    """A Parquet file read in one go: polars reading by path may open the file more than once,
    and a live run replaces its files (atomically) meanwhile, which mixed two versions."""
    return pl.read_parquet(io.BytesIO(Path(path).read_bytes()))


def atomic_write_parquet(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.write_parquet(tmp, statistics=False)
    os.replace(tmp, path)


def stamped_run_id(name: str, seed: int) -> str:
    """A run id from the clock: name-YYYYmmdd-HHMMSS-sSEED."""
    return f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-s{seed}"


@contextlib.contextmanager
def new_run_folder(out_dir: Path, run_id: str | None, name: str, seed: int) -> Iterator[tuple[Path, str]]:
    """Claim a new run folder, `out_dir/run_id` (by default a clock-stamped id, numbered -2, -3,
    ... when two runs start in the same second), and yield (folder, run id); a folder created
    here is removed again if the block fails, so a run that cannot be built leaves nothing."""
    out_dir = Path(out_dir)
    stamped = run_id is None
    run_id = run_id or stamped_run_id(name, seed)
    run_dir = out_dir / run_id
    n = 1
    while stamped and run_dir.exists():
        n += 1
        run_dir = out_dir / f"{run_id}-{n}"
    created = not run_dir.exists()
    Recorder.claim(run_dir)
    try:
        yield run_dir, run_dir.name
    except BaseException:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


class Recorder:
    def __init__(self, run_dir: Path, run_id: str, catalog: Catalog):
        self.run_dir = run_dir
        self.run_id = run_id
        self.catalog = catalog
        self.shared: dict[str, Any] = {"catalog": catalog}  # kept out of checkpoints (see _StatePickler)
        self.parts = run_dir / "events"
        self.agent_parts = run_dir / AGENT_PARTS
        self.metric_rows: list[dict[str, Any]] = []
        self.timing_rows: list[dict[str, Any]] = []
        self.metrics = RunningMetrics(catalog)
        self.totals = RunTotals()
        self.started = time.time()
        self.wall_s = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    @staticmethod
    def claim(run_dir: Path) -> None:
        """Take a new run folder, before anything (an LLM cache, a memory store) writes into it."""
        if run_dir.exists() and any(run_dir.iterdir()):
            raise SimworldError(f"run folder {run_dir} already exists and is not empty; pick another --out or run id")
        run_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, scenario: Scenario, run_dir: Path, run_id: str, catalog: Catalog) -> Recorder:
        """Start the files of a run in a folder taken with `claim`."""
        if (run_dir / "summary.json").exists():
            raise SimworldError(f"run folder {run_dir} already holds a run; pick another --out or run id")
        run_dir.mkdir(parents=True, exist_ok=True)
        rec = cls(run_dir, run_id, catalog)
        rec.parts.mkdir()
        (run_dir / "scenario.yaml").write_text(scenario.to_yaml(), encoding="utf-8")
        rec.write_summary(scenario, status="running", rounds_done=0)
        return rec

    @classmethod
    def reopen(cls, run_dir: Path, run_id: str, catalog: Catalog, rounds_done: int) -> Recorder:
        """Reopen after a crash: forget whatever lies past the last complete round."""
        rec = cls(run_dir, run_id, catalog)
        rec.parts.mkdir(exist_ok=True)
        rec.agent_parts.mkdir(exist_ok=True)
        for folder in (rec.parts, rec.agent_parts):
            for part in folder.glob("round-*.parquet"):
                if int(part.stem.split("-")[1]) > rounds_done:
                    part.unlink()
        for stray in list(rec.parts.glob(".*.tmp")) + list(rec.agent_parts.glob(".*.tmp")) + list(run_dir.glob(".*.tmp")):
            stray.unlink()
        history = read_events(run_dir)
        rec.metrics.absorb(history)
        rec.totals.add(history)
        agents = run_dir / "agents.parquet"  # folded already (a run of an older version keeps it whole)
        if agents.exists():
            whole = read_parquet(agents)
            if whole.height and whole["round"].max() > rounds_done:
                atomic_write_parquet(whole.filter(pl.col("round") <= rounds_done), agents)
        metrics = run_dir / "metrics.parquet"
        if metrics.exists():
            rec.metric_rows = read_parquet(metrics).filter(pl.col("round") <= rounds_done).to_dicts()
        timings = run_dir / TIMINGS
        if timings.exists():
            rec.timing_rows = read_parquet(timings).filter(pl.col("round") <= rounds_done).to_dicts()
        summary = read_summary(run_dir)
        rec.wall_s = float(summary.get("wall_s", 0.0))
        return rec

    def record_round(self, round_no: int, events: pl.DataFrame, active: int, wall_s: float,
                     extra: dict[str, float] | None = None) -> dict[str, Any]:
        atomic_write_parquet(events, self.parts / f"round-{round_no:06d}.parquet")
        self.totals.add(events)
        row = {"round": round_no, "active_agents": active, "wall_s": wall_s}
        row.update(self.metrics.round(events))
        row.update(extra or {})
        self.metric_rows.append(row)
        self.wall_s += wall_s
        atomic_write_parquet(pl.DataFrame(self.metric_rows), self.run_dir / "metrics.parquet")
        return row

    def record_timings(self, round_no: int, seconds: dict[str, float]) -> None:
        """How long each stage of the round took (not part of the replayable record)."""
        self.timing_rows.extend({"round": round_no, "stage": name, "seconds": s} for name, s in seconds.items())
        atomic_write_parquet(pl.DataFrame(self.timing_rows, schema=TIMINGS_SCHEMA), self.run_dir / TIMINGS)

    def record_personas(self, personas: pl.DataFrame) -> None:
        atomic_write_parquet(personas, self.run_dir / "personas.parquet")

    def record_agents(self, snapshot: pl.DataFrame) -> None:
        """One round's agent snapshot (agent_id, round, taste, dominant_genre, ...) as its own part."""
        self.agent_parts.mkdir(exist_ok=True)
        round_no = int(snapshot["round"][0]) if snapshot.height else 0
        atomic_write_parquet(snapshot, self.agent_parts / f"round-{round_no:06d}.parquet")

    def checkpoint(self, state: dict[str, Any]) -> None:
        atomic_write_bytes(self.run_dir / CHECKPOINT, dump_state(state, self.shared))

    def finish(self, scenario: Scenario, status: str, rounds_done: int, message: str | None = None,
               extra: dict | None = None) -> None:
        """Consolidate the per-round parts into events.parquet and write the final summary."""
        if status == "finished":  # each step is safe to repeat after a kill
            atomic_write_parquet(read_events(self.run_dir), self.run_dir / "events.parquet")
            atomic_write_parquet(read_agents(self.run_dir), self.run_dir / "agents.parquet")
            for folder in (self.parts, self.agent_parts):
                if folder.exists():
                    for part in folder.glob("round-*.parquet"):
                        part.unlink()
                    shutil.rmtree(folder, ignore_errors=True)
        self.write_summary(scenario, status=status, rounds_done=rounds_done, message=message, extra=extra)

    def write_summary(self, scenario: Scenario, status: str, rounds_done: int, message: str | None = None,
                      extra: dict | None = None) -> None:
        t = self.totals
        summary = {
            "run_id": self.run_id, "scenario": scenario.name, "seed": scenario.seed,
            "status": status, "message": message,
            "rounds_planned": scenario.rounds, "rounds_done": rounds_done,
            "agents": scenario.population.size, "catalog_items": len(self.catalog),
            "recommender": scenario.recommender.name, "policy": scenario.policy.kind,
            "events": t.events, "watches": t.watches,
            "mean_rating": t.rating_sum / t.ratings if t.ratings else None,
            "decisions_by_policy": dict(sorted(t.decisions.items())),
            "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
            "wall_s": round(self.wall_s, 3),
            **(extra or {}),
        }
        atomic_write_bytes(self.run_dir / "summary.json", json.dumps(summary, indent=2).encode())


class RunTotals:
    """The summary's counts over all rounds so far, added up round by round."""

    def __init__(self) -> None:
        self.events = self.watches = self.ratings = self.prompt_tokens = self.completion_tokens = 0
        self.rating_sum = 0.0
        self.decisions: dict[str, int] = {}

    def add(self, events: pl.DataFrame) -> None:
        if not events.height:
            return
        ratings = events.filter(pl.col("action") == "watch")["rating"]
        self.events += events.height
        self.watches += ratings.len()
        self.ratings += ratings.len() - ratings.null_count()
        self.rating_sum += float(ratings.sum() or 0.0)
        self.prompt_tokens += int(events["prompt_tokens"].sum() or 0)
        self.completion_tokens += int(events["completion_tokens"].sum() or 0)
        for policy, n in decisions_by_policy(events).items():
            self.decisions[policy] = self.decisions.get(policy, 0) + n


def decisions_by_policy(events: pl.DataFrame) -> dict[str, int]:
    """How many decisions (one per active agent per round) each policy made: the policy of each
    decision's first row (a fallback's first row says "fallback"; a browse's pages count once)."""
    firsts = (events.filter(pl.col("action").is_in(["page", "search", "idle", "fallback"]))
              .group_by("round", "agent_id").agg(pl.col("policy").sort_by("seq").first()))
    return dict(firsts.group_by("policy").len().sort("policy").iter_rows())


# -- reading run folders (the viewer and notebooks use these too) -----------------------------

def read_events(run_dir: Path) -> pl.DataFrame:
    run_dir = Path(run_dir)
    whole = run_dir / "events.parquet"
    if whole.exists():
        return conform_events(read_parquet(whole))
    parts = sorted((run_dir / "events").glob("round-*.parquet"))
    if not parts:
        return empty_events()
    return pl.concat([conform_events(read_parquet(p)) for p in parts])


def read_metrics(run_dir: Path) -> pl.DataFrame:
    path = Path(run_dir) / "metrics.parquet"
    return read_parquet(path) if path.exists() else pl.DataFrame()


def read_personas(run_dir: Path) -> pl.DataFrame:
    path = Path(run_dir) / "personas.parquet"
    return read_parquet(path) if path.exists() else pl.DataFrame()


def read_agents(run_dir: Path) -> pl.DataFrame:
    """Every round's agent snapshot: the folded agents.parquet and the parts of later rounds."""
    run_dir = Path(run_dir)
    path = run_dir / "agents.parquet"
    frames = [read_parquet(path)] if path.exists() else []
    folded = set(frames[0]["round"].unique().to_list()) if frames and frames[0].height else set()
    frames += [read_parquet(p) for p in sorted((run_dir / AGENT_PARTS).glob("round-*.parquet"))
               if int(p.stem.split("-")[1]) not in folded]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def list_run_folders(out_dir: str | Path, summary_file: str, read) -> list[dict[str, Any]]:
    """The summaries (`read(folder)`, with its "path") of the run folders in `out_dir` that hold
    `summary_file`, by name; a folder whose summary cannot be read is left out."""
    rows = []
    for path in sorted(Path(out_dir).glob(f"*/{summary_file}")):
        try:
            summary = read(path.parent)
        except (SimworldError, ValueError):
            continue
        summary["path"] = str(path.parent)
        rows.append(summary)
    return rows


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        raise SimworldError(f"{run_dir} is not a run folder (no summary.json)")
    return json.loads(path.read_text())


def _shared_object(name: str) -> Any:
    """Stands in a checkpoint for a shared object; the reader's own replaces it (see below)."""
    raise pickle.UnpicklingError(f"the checkpoint refers to the run's {name!r}; read it with read_checkpoint")


class _StatePickler(pickle.Pickler):
    """Pickles the world's state, but not the run's shared objects (the catalog, the LLM stack,
    the embedder): those are live (connections, locks, models) and rebuilt from the scenario,
    so the checkpoint holds a named reference to each and the reader plugs in its own.

    The references go through `reducer_override`, which pickle skips for plain ints, floats,
    strings, lists, dicts and sets: a `persistent_id` hook would be called for every one of the
    millions of objects a large world holds, and took most of the checkpoint's time."""

    def __init__(self, fh, shared: dict[str, Any]):
        super().__init__(fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._names = {id(obj): name for name, obj in shared.items() if obj is not None}

    def reducer_override(self, obj: Any) -> Any:
        name = self._names.get(id(obj))
        return NotImplemented if name is None else (_shared_object, (name,))


class _StateUnpickler(pickle.Unpickler):
    def __init__(self, fh, shared: dict[str, Any]):
        super().__init__(fh)
        self._shared = shared

    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name == "_shared_object":
            return self.persistent_load
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:  # also reads checkpoints written with persistent ids
        if pid not in self._shared:
            raise pickle.UnpicklingError(f"the checkpoint refers to {pid!r}, which this run does not have")
        return self._shared[pid]


def dump_state(state: dict[str, Any], shared: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    _StatePickler(buf, shared).dump(state)
    return buf.getvalue()


def read_checkpoint(run_dir: Path, catalog: Catalog | None = None, **shared: Any) -> dict[str, Any] | None:
    """The state after the last complete round; pass the run's catalog (and `llm=`, `embedder=`)
    to restore the references to them."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    with open(path, "rb") as fh:
        return _StateUnpickler(fh, {"catalog": catalog, **shared}).load()
