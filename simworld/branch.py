"""Branching: a new run that shares an old run's first R rounds and goes on from there with
changed settings, a counterfactual from the same state (`simworld branch RUN --round R
--set recommender.name=mf`).

How a branch is made, in its own run folder:
1. replay: the parent's saved scenario and seed run again up to round R with an LLM that
   answers only from the parent's response cache (no call, no key). Memories are rebuilt
   this way too: a chroma store cannot be rolled back to an earlier round. Each replayed
   round's events must be the parent's, or the branch stops with one sentence (a parent
   edited during its run cannot be replayed). A parent that is itself a branch replays
   segment by segment: its ancestors' settings up to each one's branch round.
2. adopt: rounds 1..R take the parent's own records (events, metrics, agents, timings and
   the ledger: what those rounds cost when they ran, so a budget goes on from there).
3. switch: the world is rebuilt from the branch's scenario and takes the state at R; a
   recommender whose settings changed is rebuilt and fitted on every interaction up to R
   (the warm-start history and the watches so far). Settings a run cannot change midway
   (`FIXED`) are refused with one sentence naming them.

`branch.json` in the folder says what it is a branch of and whether the replay is adopted;
`simworld resume` continues a branch killed at any moment in either part, to what an
uninterrupted branch gives. The switch has no checkpoint of its own: a checkpoint at R is
switched whenever it is loaded (the switch is deterministic), one past R already is.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from simworld.build import build_parts
from simworld.config import Scenario, load_scenario, run_id_problem
from simworld.errors import ScenarioError, SimworldError
from simworld.events import conform_events
from simworld.recommenders.base import INTERACTION_SCHEMA, empty_interactions
from simworld.recorder import (
    TIMINGS,
    Recorder,
    atomic_write_bytes,
    atomic_write_parquet,
    new_run_folder,
    read_events,
    read_parquet,
    read_summary,
)
from simworld.runner import Simulation, reopen
from simworld.world import SimWorld

BRANCH_FILE = "branch.json"
# What a run cannot change midway: the population, the catalog and the seed make the state
# the branch starts from; the graph, the memory store and the plug-in stages hold it.
FIXED = ("seed", "population", "catalog", "stages", "social.graph", "memory.backend", "memory.server",
         "memory.collection", "memory.embedder")
# Columns that say when or where a row was written, not what happened.
_CLOCK_COLUMNS = ("run_id", "latency_ms")


class ReplayInterrupted(KeyboardInterrupt):
    """Ctrl-C while a branch replayed its parent; the branch folder resumes (`simworld resume`)."""

    def __init__(self, run_dir: Path):
        super().__init__(str(run_dir))
        self.run_dir = run_dir


@dataclass(frozen=True)
class BranchPlan:
    """What a branch is: its parent, the last round they share, and what it changes."""

    parent: str  # the parent's run folder, absolute
    parent_run_id: str
    round: int
    settings: dict[str, Any] = field(default_factory=dict)
    refit: bool = False  # the recommender's settings changed: rebuild and fit it at the switch
    replayed: bool = False  # rounds 1..round are replayed and the parent's records adopted

    def lineage(self) -> dict[str, Any]:
        """What the branch's summary says about where it comes from."""
        return {"parent": self.parent, "parent_run_id": self.parent_run_id, "round": self.round,
                "settings": self.settings}


# -- planning ------------------------------------------------------------------------------------

def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """`["recommender.name=mf", "activity.probability=0.3"]` -> a dict; values are read as YAML
    (numbers, booleans, lists), so `--set recommender.params={factors: 8}` works."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise SimworldError(f"--set {pair!r}: expected key=value, e.g. recommender.name=mf")
        try:
            settings[key] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise SimworldError(f"--set {key}: the value {text!r} is not valid YAML") from None
    return settings


def branch_scenario(parent: Scenario, settings: dict[str, Any], round_no: int, rounds: int | None = None) -> Scenario:
    """The parent's scenario with `settings` (dotted keys) and `rounds`; one-sentence errors for an
    unknown or invalid setting, a setting a run cannot change midway, or too few rounds."""
    settings = dict(settings)
    renamed = settings.get("recommender.name", parent.recommender.name) != parent.recommender.name
    if renamed and not any(k.startswith("recommender.params") for k in settings):
        settings["recommender.params"] = {}  # the old algorithm's parameters mean nothing to the new one
    try:
        scenario = parent.with_settings(settings)
        if rounds is not None:
            scenario = scenario.with_overrides(rounds=rounds)
    except ScenarioError as exc:
        raise SimworldError(f"--set {'; '.join(exc.problems)}") from None
    for name in ("social", "memory"):
        if (getattr(parent, name) is None) != (getattr(scenario, name) is None):
            raise SimworldError(f"{name} cannot be turned on or off in a branch: the state at round {round_no} "
                                f"was built {'with' if getattr(parent, name) is not None else 'without'} it")
    old, new = parent.model_dump(mode="json"), scenario.model_dump(mode="json")
    for path in FIXED:
        changed = _difference(_get(old, path), _get(new, path), path)
        if changed is not None:
            raise SimworldError(f"{changed[0]} cannot change in a branch (a run cannot change it midway); "
                                f"the parent has {changed[1]!r}")
    if scenario.rounds <= round_no:
        raise SimworldError(f"the branch must go past round {round_no}, but it would have {scenario.rounds} "
                            "rounds: give --rounds")
    return scenario


def _difference(old: Any, new: Any, path: str) -> tuple[str, Any] | None:
    """The first dotted path below `path` where `new` differs from `old`, with the old value."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _difference(old.get(key), new.get(key), f"{path}.{key}")
            if found is not None:
                return found
        return None
    return None if old == new else (path, old)


def setting_value(scenario: Scenario, dotted: str) -> Any:
    """A scenario's value at a dotted key (`recommender.name`), None where there is none."""
    return _get(scenario.model_dump(mode="json"), dotted)


def _get(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data


def plan_branch(run_dir: str | Path, round_no: int, settings: dict[str, Any] | None = None,
                rounds: int | None = None) -> tuple[BranchPlan, Scenario]:
    """Check a branch request against its parent; the plan and the branch's scenario."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SimworldError(f"run folder not found: {run_dir}")
    summary = read_summary(run_dir)
    if not (run_dir / "scenario.yaml").exists():
        raise SimworldError(f"{run_dir} is not a simulation run folder (no scenario.yaml)")
    done = int(summary.get("rounds_done") or 0)
    if round_no < 0 or round_no > done:
        raise SimworldError(f"--round {round_no}: run {summary['run_id']} has committed rounds 0 to {done}, "
                            f"so a branch can start after any of them")
    parent = load_scenario(run_dir / "scenario.yaml")
    scenario = branch_scenario(parent, settings or {}, round_no, rounds)
    refit = (scenario.recommender.name, scenario.recommender.params) != (parent.recommender.name,
                                                                          parent.recommender.params)
    plan = BranchPlan(parent=str(run_dir.resolve()), parent_run_id=summary["run_id"], round=round_no,
                      settings=dict(settings or {}), refit=refit)
    return plan, scenario


def read_plan(run_dir: Path) -> BranchPlan:
    return BranchPlan(**json.loads((Path(run_dir) / BRANCH_FILE).read_text()))


def _write_plan(run_dir: Path, plan: BranchPlan) -> None:
    atomic_write_bytes(Path(run_dir) / BRANCH_FILE, json.dumps(asdict(plan), indent=2).encode())


@dataclass(frozen=True)
class Segment:
    """Rounds after `start` run with `scenario`; at `start` its world takes over from the last
    one's state, and `refit`: its recommender differs, so it is rebuilt and fitted then."""

    scenario: Scenario
    start: int
    refit: bool = False


def replay_segments(run_dir: Path, upto: int) -> list[Segment]:
    """How to replay `run_dir`'s rounds 1..`upto` from response caches alone: its own scenario,
    or for a branch, its parent's replay up to the branch round and then its own settings."""
    if not (run_dir / "scenario.yaml").exists():
        raise SimworldError(f"the run folder {run_dir} is gone; a branch needs its parent (and theirs) until "
                            "its own first round")
    if (run_dir / BRANCH_FILE).exists():
        plan = read_plan(run_dir)
        if upto <= plan.round:
            return replay_segments(Path(plan.parent), upto)
        return [*replay_segments(Path(plan.parent), plan.round),
                Segment(_cache_only(run_dir), plan.round, plan.refit)]
    return [Segment(_cache_only(run_dir), 0)]


def _cache_only(run_dir: Path, budget: bool = False) -> Scenario:
    """A run's scenario with an LLM that answers only from the run's cache, deciding in this
    process (every execution backend gives the same events; a replay needs no workers or Ray);
    without its budget unless `budget` (a replay of rounds whose records it adopts pays for nothing)."""
    scenario = load_scenario(run_dir / "scenario.yaml")
    llm = scenario.llm
    cache_dir = llm.cache_dir if llm.cache_dir is not None else run_dir.resolve().parent  # where its answers are
    update: dict[str, Any] = {"cache_only": True, "cache_dir": cache_dir}
    if not budget:
        update.update(budget_tokens=None, budget_usd=None)
    return scenario.with_overrides(llm=llm.model_copy(update=update).model_dump(), execution={"backend": "local"})


# -- making and resuming a branch ---------------------------------------------------------------------

def start_branch(run_dir: str | Path, round_no: int, settings: dict[str, Any] | None = None, *,
                 rounds: int | None = None, run_id: str | None = None,
                 out_dir: str | Path | None = None) -> Simulation:
    """A new run folder whose rounds 1..`round_no` are `run_dir`'s; returns its Simulation at that
    round with the new settings in force (call `run()` to go on). No LLM is called up to there.
    The folder goes beside the parent's unless `out_dir`; its id defaults to PARENT-branch-rR."""
    plan, scenario = plan_branch(run_dir, round_no, settings, rounds)
    if run_id is not None and (problem := run_id_problem(run_id)):
        raise SimworldError(f"--run-id {problem}")
    out = Path(out_dir) if out_dir is not None else Path(plan.parent).parent
    return _create(plan, scenario, out, run_id or _free_run_id(out, f"{plan.parent_run_id}-branch-r{round_no}"))


def _create(plan: BranchPlan, scenario: Scenario, out: Path, run_id: str) -> Simulation:
    """The branch's run folder `out/run_id`, replayed and switched to `scenario` at the plan's round."""
    segments = replay_segments(Path(plan.parent), plan.round)
    first = segments[0].scenario
    with new_run_folder(out, run_id, scenario.name, scenario.seed) as (folder, claimed):
        _write_plan(folder, plan)  # first: a folder holding it resumes as a branch
        world = SimWorld(first, build_parts(first, claimed, folder), run_id=claimed)
        recorder = Recorder.create(scenario, folder, claimed, world.catalog)
    recorder.shared = world.shared_objects()
    recorder.record_personas(world.persona_frame())
    recorder.record_agents(world.agent_snapshot())
    sim = Simulation(scenario, world, recorder, branch=plan.lineage())
    sim.mark("running")
    return _go_on(sim, plan, segments, fresh=True)


def branch_run(run_dir: str | Path, round_no: int, settings: dict[str, Any] | None = None, *,
               rounds: int | None = None, run_id: str | None = None, out_dir: str | Path | None = None,
               on_round: Callable | None = None) -> Path:
    """Branch `run_dir` after `round_no` with `settings` and run the branch to its end; its folder."""
    sim = start_branch(run_dir, round_no, settings, rounds=rounds, run_id=run_id, out_dir=out_dir)
    try:
        sim.run(on_round)
    finally:
        sim.close()
    return sim.run_dir


def replay_branch(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """`runner.replay` of a branch: the branch made again beside it (or in `out_dir`), its own
    rounds too answered only from the cache, as far as it got; its new folder. A branch's saved
    scenario holds only from its branch round, so a plain replay of it would be another run."""
    run_dir = Path(run_dir)
    plan, summary = read_plan(run_dir), read_summary(run_dir)
    scenario = _cache_only(run_dir, budget=True)  # its budget stopped it where it stopped
    done = int(summary.get("rounds_done") or 0)
    scenario = scenario.with_overrides(rounds=done if plan.round < done < scenario.rounds else None)
    out = Path(out_dir) if out_dir is not None else run_dir.parent
    sim = _create(BranchPlan(**{**asdict(plan), "replayed": False}), scenario, out,
                  _free_run_id(out, f"{summary['run_id']}-replay"))
    try:
        sim.run()
    except SimworldError:  # a cache miss: nothing worth keeping
        sim.close()
        shutil.rmtree(sim.run_dir, ignore_errors=True)
        raise
    sim.close()
    return sim.run_dir


def resume_branch(run_dir: str | Path) -> Simulation:
    """Continue a branch from its last committed round, in the replay or after it."""
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    if plan.replayed:
        return _open(run_dir, plan)
    segments = replay_segments(Path(plan.parent), plan.round)
    guess = _segment_at(segments, int(read_summary(run_dir).get("rounds_done") or 0))
    sim = _open_segment(run_dir, segments[guess], plan)
    at = _segment_at(segments, sim.world.round)
    if at != guess:  # killed between a checkpoint and its summary: the checkpoint is a round ahead
        sim.close()
        sim = _open_segment(run_dir, segments[at], plan)
    return _go_on(sim, plan, segments, fresh=False)


def _segment_at(segments: list[Segment], round_no: int) -> int:
    """The segment that runs round `round_no` + 1."""
    return max(k for k, seg in enumerate(segments) if seg.start <= round_no)


def _free_run_id(out: Path, base: str) -> str:
    run_id, n = base, 1
    while (out / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def _go_on(sim: Simulation, plan: BranchPlan, segments: list[Segment], fresh: bool) -> Simulation:
    """Replay the rest of rounds 1..R segment by segment (checking each round against the
    parent's), adopt the parent's records, and open the branch at R with its own settings."""
    expected = _parent_events(plan)
    built = _segment_at(segments, sim.world.round)  # the segment `sim`'s world was built for
    try:
        while sim.world.round < plan.round:
            k = _segment_at(segments, sim.world.round)
            if k != built:  # a branch point of an ancestor: its settings from here on
                sim.close()
                sim, built = _open_segment(sim.run_dir, segments[k], plan), k
            result, _ = sim.step()
            _check_round(plan, result.round, result.events, expected)
    except KeyboardInterrupt:
        sim.mark("interrupted", f"interrupted while replaying round {sim.world.round + 1} of its parent")
        sim.close()
        raise ReplayInterrupted(sim.run_dir) from None
    except SimworldError as exc:  # a cache miss, a round that replays differently
        sim.close()
        if fresh:  # nothing of the branch's own yet: leave nothing behind
            shutil.rmtree(sim.run_dir, ignore_errors=True)
        else:
            sim.mark("failed", str(exc))
        raise
    except BaseException:
        sim.close()
        raise
    sim.close()
    _adopt(sim.run_dir, plan)
    return _open(sim.run_dir, plan)


def _parent_events(plan: BranchPlan) -> dict[int, pl.DataFrame]:
    events = read_events(Path(plan.parent)).filter(pl.col("round") <= plan.round)
    return {r: part for (r,), part in events.partition_by("round", as_dict=True).items()}


def _check_round(plan: BranchPlan, round_no: int, events: pl.DataFrame, expected: dict[int, pl.DataFrame]) -> None:
    mine = _comparable(events)
    theirs = _comparable(expected.get(round_no, events.clear()))
    if not mine.equals(theirs):
        raise SimworldError(
            f"round {round_no} of {plan.parent_run_id} does not replay to the same events, so it cannot be "
            "branched: it was changed while it ran (an edited persona, an injected event, a remembered "
            "interview) or by a different simworld version")


def _comparable(events: pl.DataFrame) -> pl.DataFrame:
    return conform_events(events).drop(_CLOCK_COLUMNS).sort("seq")


def _adopt(run_dir: Path, plan: BranchPlan) -> None:
    """Rounds 1..R take the parent's records, with the branch's run id (safe to repeat after a kill)."""
    parent, r = Path(plan.parent), plan.round
    run_id = read_summary(run_dir)["run_id"]
    own = pl.lit(run_id, dtype=pl.String).alias("run_id")
    events = read_events(parent).filter(pl.col("round") <= r).with_columns(own)
    for k in range(1, r + 1):
        atomic_write_parquet(events.filter(pl.col("round") == k), run_dir / "events" / f"round-{k:06d}.parquet")
    wall_s = 0.0
    for name in ("metrics.parquet", "agents.parquet", TIMINGS):
        if (parent / name).exists():
            frame = read_parquet(parent / name).filter(pl.col("round") <= r)
            atomic_write_parquet(frame, run_dir / name)
            if name == "metrics.parquet" and "wall_s" in frame.columns:
                wall_s = float(frame["wall_s"].sum())
    from simworld.llm import LEDGER_FILENAME, read_ledger

    if (parent / LEDGER_FILENAME).exists() or (run_dir / LEDGER_FILENAME).exists():
        ledger = read_ledger(parent).filter(pl.col("round") <= r).with_columns(own)
        atomic_write_parquet(ledger, run_dir / LEDGER_FILENAME)
    summary = read_summary(run_dir)
    summary["wall_s"] = round(wall_s, 3)  # the recorder goes on from the rounds' own time
    atomic_write_bytes(run_dir / "summary.json", json.dumps(summary, indent=2).encode())
    _write_plan(run_dir, BranchPlan(**{**asdict(plan), "replayed": True}))


def _open(run_dir: Path, plan: BranchPlan) -> Simulation:
    """The branch's own world at its last committed round; at round R, switched to its settings."""
    segment = Segment(load_scenario(run_dir / "scenario.yaml"), plan.round, plan.refit)
    sim = _open_segment(run_dir, segment, plan)
    if sim.finished and read_summary(run_dir).get("status") != "finished":
        sim.finish()
    return sim


def _open_segment(run_dir: Path, segment: Segment, plan: BranchPlan) -> Simulation:
    """A world built from `segment`'s scenario at the folder's last committed round; at the
    segment's start, its recommender rebuilt and fitted when `refit` (past it, the checkpoint
    already holds the segment's own)."""
    run_id = read_summary(run_dir)["run_id"]
    parts = build_parts(segment.scenario, run_id, run_dir)
    world = SimWorld(segment.scenario, parts, run_id=run_id)
    fresh = world.recommender  # built from the segment's settings

    def switch(world: SimWorld, state: dict | None) -> None:
        if state is None or world.round != segment.start or not segment.refit:
            return
        fresh.fit(_interactions(run_dir, segment.start, parts.history, world))
        world.recommender, world.pending = fresh, []  # the refit learned what was pending

    sim = reopen(load_scenario(run_dir / "scenario.yaml"), world, run_dir, after_load=switch)
    sim.branch = plan.lineage()
    return sim


def _interactions(run_dir: Path, round_no: int, history: pl.DataFrame | None, world: SimWorld) -> pl.DataFrame:
    """Every interaction up to `round_no`: the warm-start history and the watches so far."""
    watches = (read_events(run_dir)
               .filter((pl.col("round") <= round_no) & (pl.col("action") == "watch")
                       & pl.col("item_id").is_in(world.catalog.ids.tolist()))
               .select(pl.col("agent_id").alias("user_id"), "item_id", "rating", "round")
               .cast(INTERACTION_SCHEMA))
    before = history if history is not None else empty_interactions()
    before = before.select([pl.col(c).cast(t) if c in before.columns else pl.lit(None, dtype=t).alias(c)
                            for c, t in INTERACTION_SCHEMA.items()])
    return pl.concat([before, watches])
