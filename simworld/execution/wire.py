"""What travels between the driver and a worker, and the worker's side of it.

An `Observation` holds live objects (the catalog, its search box, the crowd's mean ratings,
a grounded user's taste model) that a worker cannot receive as they are. The driver pickles
observations with those named instead of copied (`encode_observations`): the worker gets the
catalog and taste model once at start (`WorkerSetup`) and, every round, the crowd's rating
sums and counts as two arrays, and rebuilds real observations (`ShardWorker.decide`). A
persona is sent once and again only when it changes (an edit makes a new object).

A worker holds its agents' policies, built from the scenario exactly as the driver builds
them (simworld/build.py), and its own LLM stack: the run's response cache (a SQLite file
every process shares), no ledger file. It returns the rows of the calls it made with its
actions; the driver adds them to the run's ledger (`LedgerModel.add_rows`).
"""

from __future__ import annotations

import importlib
import io
import math
import os
import pickle
import time
import types
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from simworld.agents.actions import Action
from simworld.agents.observation import Observation
from simworld.catalog import Catalog, Item
from simworld.config import Scenario
from simworld.errors import SimworldError
from simworld.population import Persona


@dataclass
class WorkerSetup:
    """Everything a worker builds its shards from, sent once when it starts."""

    scenario: Scenario
    run_id: str
    catalog: Catalog
    personas: list[Persona]  # the worker's agents as they are now (an edit later sends the new one)
    llm_ids: frozenset[int] = frozenset()  # agents deciding by LLM
    voice_ids: frozenset[int] = frozenset()  # rule-deciding agents whose feelings the LLM writes
    taste: Any = None  # the world's TasteModel (MovieLens-grounded users)
    cache_dir: str | None = None  # the run's response cache folder; None: the run has no cache
    llm_share: int = 1  # workers sharing the scenario's LLM concurrency and rate limits


@dataclass
class Request:
    round: int
    observations: bytes  # encode_observations
    rating_sum: np.ndarray
    rating_count: np.ndarray
    resumed_from: int | None = None  # the cache's journal (see CachedModel.resume_from)


@dataclass
class Reply:
    actions: list[Action] | None  # None when deciding failed (`error`)
    rows: list[dict[str, Any]] = field(default_factory=list)  # the LLM calls made, for the run's ledger
    error: tuple | None = None  # pack_error
    seconds: float = 0.0


# -- observations over the wire ------------------------------------------------------------------

class _Pickler(pickle.Pickler):
    def __init__(self, fh, world: Any, known_personas: dict[int, Persona]):
        super().__init__(fh, protocol=pickle.HIGHEST_PROTOCOL)
        self.world, self.catalog, self.known = world, world.catalog, known_personas

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is Item:
            return ("item", obj.item_id) if obj.item_id in self.catalog and self.catalog.get(obj.item_id) is obj \
                else None
        if kind is Persona:
            return ("persona", obj.agent_id) if self.known.get(obj.agent_id) is obj else None
        if obj is self.catalog:
            return ("catalog",)
        if obj is not None and obj is self.world.taste:
            return ("taste",)
        if kind is types.MethodType:
            if obj.__self__ is self.world and obj.__func__ is type(self.world).item_mean_rating:
                return ("mean_rating",)
            if obj.__self__ is self.catalog and obj.__func__ is Catalog.search:
                return ("search",)
        return None


def encode_observations(world: Any, observations: Sequence[Observation], known_personas: dict[int, Persona]) -> bytes:
    """The observations, with the world's live objects named instead of copied."""
    buf = io.BytesIO()
    try:
        _Pickler(buf, world, known_personas).dump(list(observations))
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise SimworldError(f"an observation holds something that cannot be sent to a worker ({exc}); "
                            "a plug-in stage may have put it there: run with execution.backend local") from None
    return buf.getvalue()


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, worker: "ShardWorker", mean_rating):
        super().__init__(fh)
        self.worker, self.mean_rating = worker, mean_rating

    def persistent_load(self, pid: Any) -> Any:
        kind, *key = pid
        w = self.worker
        if kind == "item":
            return w.catalog.get(key[0])
        if kind == "persona":
            return w.personas[key[0]]
        if kind == "catalog":
            return w.catalog
        if kind == "taste":
            return w.taste
        if kind == "mean_rating":
            return self.mean_rating
        if kind == "search":
            return w.catalog.search
        raise pickle.UnpicklingError(f"unknown shared object {pid!r}")


def mean_rating_of(catalog: Catalog, rating_sum: np.ndarray, rating_count: np.ndarray):
    """The crowd's mean rating so far, computed as `SimWorld.item_mean_rating` computes it."""
    def mean(item_id: int) -> float | None:
        row = catalog.row(item_id)
        n = rating_count[row]
        return float(rating_sum[row] / n) if n else None

    return mean


# -- errors over the wire ------------------------------------------------------------------------

def pack_error(exc: BaseException) -> tuple:
    """An exception as plain data: its class's path, args and attributes (LLM errors carry usage)."""
    state = {k: v for k, v in vars(exc).items() if _picklable(v)}
    return (type(exc).__module__, type(exc).__qualname__, tuple(a for a in exc.args if _picklable(a)), state,
            f"{type(exc).__name__}: {exc}")


def unpack_error(packed: tuple) -> BaseException:
    """The exception again, of its own class where it can be rebuilt (a policy's LLMUnavailableError
    stops the run as it does in one process), else a SimworldError with its message."""
    module, qualname, args, state, text = packed
    try:
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        exc = cls.__new__(cls)
        exc.args = args
        exc.__dict__.update(state)
        return exc
    except Exception:  # noqa: BLE001 (any failure to rebuild it: report its text)
        return SimworldError(f"a worker failed: {text}")


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
        return True
    except Exception:  # noqa: BLE001
        return False


# -- the worker's side ---------------------------------------------------------------------------

class ShardWorker:
    """One worker's agents: their policies and LLM stack; `decide` answers a `Request`."""

    def __init__(self, setup: WorkerSetup):
        from simworld.aio import LoopRunner
        from simworld.build import policy_factory

        self.setup = setup
        self.catalog, self.taste = setup.catalog, setup.taste
        self.personas: dict[int, Persona] = {p.agent_id: p for p in setup.personas}
        self.loop = LoopRunner()
        self.llm = self._build_llm(setup) if (setup.llm_ids or setup.voice_ids) else None
        policy_for = policy_factory(setup.scenario, self.llm, set(setup.llm_ids), set(setup.voice_ids))
        self._policy_of = {p.agent_id: policy_for(p) for p in setup.personas}

    @staticmethod
    def _build_llm(setup: WorkerSetup):
        from simworld.llm import build_language_model
        from simworld.streams import Streams

        config = setup.scenario.llm
        share = max(1, setup.llm_share)
        config = config.model_copy(update={
            "concurrency": max(1, math.ceil(config.concurrency / share)),
            "rpm": math.ceil(config.rpm / share) if config.rpm else None,
            "tpm": math.ceil(config.tpm / share) if config.tpm else None,
            "cache": config.cache and setup.cache_dir is not None,
            "cache_dir": setup.cache_dir,
        })
        return build_language_model(config, None, run_id=setup.run_id,
                                    seed=Streams(setup.scenario.seed).int_seed("llm_retry"))

    def ready(self) -> int:
        """This worker's process id (it is up)."""
        return os.getpid()

    def decide(self, request: Request) -> Reply:
        from simworld.decide import decide_actions
        from simworld.llm import CachedModel

        started = time.perf_counter()
        try:
            mean = mean_rating_of(self.catalog, request.rating_sum, request.rating_count)
            observations = _Unpickler(io.BytesIO(request.observations), self, mean).load()
            for obs in observations:
                self.personas[obs.agent_id] = obs.persona
            if self.llm is not None:
                self.llm.set_round(request.round)
                cache = self.llm.find(CachedModel)
                if cache is not None:  # answers paid for in uncommitted rounds count as paid, once
                    cache.resume_from(request.resumed_from)  # type: ignore[arg-type]
            actions = decide_actions(self._policy_of.__getitem__, observations, self.loop.gather)
            reply = Reply(actions)
        except Exception as exc:  # noqa: BLE001 (the driver raises it, as one process would)
            reply = Reply(None, error=pack_error(exc))
        if self.llm is not None:
            reply.rows = self.llm.take_rows()
        reply.seconds = time.perf_counter() - started
        return reply

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.loop.close()

