"""The one public way to run a scenario: build, step, resume. The CLI, viewer and notebooks use it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from simworld.agents.policy import Policy
from simworld.agents.rule_policy import RulePolicy
from simworld.catalog import Catalog, load_bundled_catalog, load_csv_catalog
from simworld.config import Scenario, load_scenario
from simworld.embedding import make_embedder
from simworld.errors import SimworldError
from simworld.population import Persona, movielens_personas, synthetic_personas
from simworld.recorder import Recorder, read_checkpoint, read_summary
from simworld.recommenders.base import RecommenderContext
from simworld.recommenders.registry import build_recommender
from simworld.world import RoundResult, SimWorld


# -- building the parts from a scenario --------------------------------------------------------

def build_catalog(scenario: Scenario) -> Catalog:
    spec = scenario.catalog
    if spec.source == "bundled":
        return load_bundled_catalog()
    path = scenario.resolve_path(spec.path or "")
    if spec.source == "csv":
        return load_csv_catalog(path)
    from simworld.movielens import load_movielens_catalog

    return load_movielens_catalog(path, min_ratings=spec.min_ratings, max_items=spec.max_items)


def build_population(scenario: Scenario, catalog: Catalog) -> tuple[list[Persona], pl.DataFrame | None]:
    spec = scenario.population
    rng = np.random.default_rng([scenario.seed, 1])  # the population's own stream of the run seed
    if spec.source == "synthetic":
        return synthetic_personas(spec.size, catalog, rng), None
    folder = spec.path or scenario.catalog.path
    if not folder:
        raise SimworldError("population.source 'movielens' needs population.path (or a movielens catalog.path)")
    from simworld.movielens import load_movielens_ratings

    ratings = load_movielens_ratings(scenario.resolve_path(folder))
    pop = movielens_personas(ratings, catalog, spec.size, rng)
    return pop.personas, (pop.history if spec.seed_history else None)


def uses_llm(scenario: Scenario) -> bool:
    return scenario.policy.kind != "rule" or scenario.recommender.name == "llm_rerank"


def build_llm(scenario: Scenario, run_dir: Path | None, run_id: str):
    """The run's whole LLM stack (cache, ledger, limits, budget), or None when nothing needs one."""
    if not uses_llm(scenario):
        return None
    from simworld.llm import INSTALL_HINT, build_language_model, embedded_available

    if scenario.llm.is_embedded and not embedded_available(scenario.llm.model.split("/", 1)[1]):
        raise SimworldError(f"llm.model {scenario.llm.model!r} is the embedded offline model, "
                            f"which is not installed: {INSTALL_HINT}")
    return build_language_model(scenario.llm, run_dir, run_id=run_id, seed=scenario.seed)


def seeded_share(agent_ids: list[int], fraction: float, seed: list[int]) -> set[int]:
    n = round(len(agent_ids) * fraction)
    rng = np.random.default_rng(seed)
    return {int(i) for i in rng.choice(sorted(agent_ids), size=n, replace=False)} if n else set()


def llm_agent_ids(scenario: Scenario, agent_ids: list[int]) -> set[int]:
    """Which agents decide by LLM: all (llm), none (rule), or a seeded share (hybrid)."""
    kind = scenario.policy.kind
    if kind == "llm":
        return set(agent_ids)
    if kind == "rule":
        return set()
    return seeded_share(agent_ids, scenario.policy.llm_fraction, [scenario.seed, 2])  # the mix's own stream


def voiced_agent_ids(scenario: Scenario, agent_ids: list[int], deciders: set[int]) -> set[int]:
    """Hybrid with voice: the seeded share of rule-deciding agents whose feelings the LLM writes."""
    spec = scenario.policy
    if spec.kind != "hybrid" or not spec.voice:
        return set()
    rest = [a for a in agent_ids if a not in deciders]
    return seeded_share(rest, spec.voice_fraction, [scenario.seed, 3])


def policy_factory(scenario: Scenario, llm=None, llm_ids: set[int] = frozenset(),
                   voice_ids: set[int] = frozenset()) -> Callable[[Persona], Policy]:
    spec = scenario.policy
    rule = RulePolicy(spec.rule)
    if spec.kind == "rule" or llm is None:
        return lambda persona: rule
    from simworld.agents.llm_policy import LLMPolicy, VoicePolicy

    decider, voice = LLMPolicy(llm, rule), VoicePolicy(llm, rule)

    def policy_for(persona: Persona) -> Policy:
        if persona.agent_id in llm_ids:
            return decider
        return voice if persona.agent_id in voice_ids else rule

    return policy_for


def build_world(scenario: Scenario, run_id: str, run_dir: Path | None = None) -> SimWorld:
    catalog = build_catalog(scenario)
    personas, history = build_population(scenario, catalog)
    llm = build_llm(scenario, run_dir, run_id)
    # Content-based ranking needs item text embeddings: load the packaged MiniLM only then.
    embedder = make_embedder("minilm") if scenario.recommender.name == "content" else None
    context = RecommenderContext(catalog=catalog, seed=scenario.seed, embedder=embedder, llm=llm)
    recommender = build_recommender(scenario.recommender.name, scenario.recommender.params, context)
    ids = [p.agent_id for p in personas]
    llm_ids = llm_agent_ids(scenario, ids)
    voice_ids = voiced_agent_ids(scenario, ids, llm_ids)
    world = SimWorld(scenario, catalog, personas, recommender, policy_factory(scenario, llm, llm_ids, voice_ids),
                     history=history, run_id=run_id)
    world.llm, world.embedder = llm, embedder
    world.memory = build_memory(scenario, catalog, run_dir, run_id)
    return world


def build_memory(scenario: Scenario, catalog: Catalog, run_dir: Path | None, run_id: str):
    """The run's agent memory (chromadb in the run folder or on a server), or None."""
    if scenario.memory is None:
        return None
    from simworld.memory import open_memory
    from simworld.world_memory import WorldMemory

    store = open_memory(scenario.memory, run_dir, make_embedder(scenario.memory.embedder), run_id)
    return WorldMemory(store, scenario.memory, catalog)


# -- a run -----------------------------------------------------------------------------------

@dataclass
class Simulation:
    """A world plus its run folder. `step()` runs and records one round; `run()` runs the rest."""

    scenario: Scenario
    world: SimWorld
    recorder: Recorder
    _personas_dirty: bool = False
    _llm_for_interviews: object = None

    @property
    def run_dir(self) -> Path:
        return self.recorder.run_dir

    @property
    def rounds_done(self) -> int:
        return self.world.round

    @property
    def finished(self) -> bool:
        return self.world.round >= self.scenario.rounds

    def step(self) -> tuple[RoundResult, dict]:
        llm_before = self.world.llm.summary() if self.world.llm is not None else None
        self.world.step()
        result = self.world.last_result
        metrics = self.recorder.record_round(result.round, result.events, result.active, result.wall_s,
                                             extra=self.llm_round_metrics(llm_before))
        self.recorder.record_agents(self.world.agent_snapshot())
        if self.world.llm is not None:
            self.world.llm.flush()  # the round's calls, before the round commits
        if self.world.memory is not None:
            self.world.memory.flush()  # the round's memories, before the round commits
        if self._personas_dirty:
            self.recorder.record_personas(self.world.persona_frame())
            self._personas_dirty = False
        self.recorder.checkpoint(self.world.state_dict())  # the commit point of the round
        self.recorder.write_summary(self.scenario, "running", self.world.round, extra=self.llm_summary())
        return result, metrics

    def llm_round_metrics(self, before: dict | None) -> dict[str, float] | None:
        """This round's LLM calls, tokens and cost (the ledger's totals now minus before)."""
        if before is None:
            return None
        after = self.world.llm.summary()
        return {f"llm_{key}": float(after[key] - before[key]) for key in ("calls", "tokens", "cost_usd")}

    def llm_summary(self) -> dict | None:
        return {"llm": self.world.llm.summary()} if self.world.llm is not None else None

    def budget_message(self) -> str | None:
        """Why the run must stop now, if the LLM budget is spent."""
        if self.world.llm is None:
            return None
        from simworld.llm import BudgetedModel

        budget = self.world.llm.find(BudgetedModel)
        return budget.message if budget is not None and budget.exhausted else None

    def run(self, on_round: Callable[[RoundResult, dict], None] | None = None) -> None:
        try:
            while not self.finished:
                result, metrics = self.step()
                if on_round:
                    on_round(result, metrics)
                stop = self.budget_message()
                if stop:  # a clean stop at the end of a round; the run folder stays resumable
                    self.recorder.write_summary(self.scenario, "budget_exhausted", self.world.round,
                                                message=stop, extra=self.llm_summary())
                    return
        except KeyboardInterrupt:
            self.recorder.write_summary(self.scenario, "interrupted", self.world.round,
                                        message=f"interrupted during round {self.world.round + 1}",
                                        extra=self.llm_summary())
            raise
        self.recorder.finish(self.scenario, "finished", self.world.round, extra=self.llm_summary())

    def memories(self, agent_id: int) -> list[str] | None:
        """What the agent remembers in its memory store, or None when the run has none."""
        return self.world.memory.texts(agent_id) if self.world.memory is not None else None

    def interview(self, agent_id: int, question: str, remember: bool = False) -> str:
        """Ask an agent a question; it answers in character from its persona and memories.

        Nothing about the agent changes (not even its memories' access statistics) unless
        `remember`, which writes the exchange to its memory. A run without an LLM policy uses
        the scenario's `llm` (by default the embedded model). The call is in the ledger."""
        from simworld.agents.llm_policy import interview_agent

        if agent_id not in self.world.users:
            raise SimworldError(f"no agent {agent_id} in this run")
        llm = self.world.llm or self._interview_llm()
        state = self.world.users[agent_id].state
        now = self.world.round
        memory = self.world.memory
        recalled = memory.peek(agent_id, question, now) if memory is not None else tuple(state.recent)
        answer = interview_agent(llm, state.persona, recalled, question, now)
        if remember:
            note = f'Round {now}: a researcher asked "{question}"; I answered "{answer}"'
            state.recent.append(note)
            if memory is not None:
                memory.note(agent_id, note, kind="interview", importance=0.6, round_no=now)
        llm.flush()
        return answer

    def _interview_llm(self):
        if self._llm_for_interviews is None:  # built on the first interview of a run without one
            from simworld.llm import build_language_model

            self._llm_for_interviews = build_language_model(self.scenario.llm, self.run_dir,
                                                            run_id=self.recorder.run_id, seed=self.scenario.seed)
        return self._llm_for_interviews

    def edit_persona(self, agent_id: int, **changes) -> None:
        """Change who an agent is; takes effect from the next round, and is recorded."""
        self.world.edit_persona(agent_id, **changes)
        self._personas_dirty = True

    def inject(self, agent_ids: list[int], text: str, item_id: int | None = None) -> None:
        """Put an event (a news post; an ad when item_id is given) in front of these agents next round."""
        self.world.inject(agent_ids, text, item_id)

    def close(self) -> None:
        self.world.close()


def new_run_id(scenario: Scenario) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{scenario.name}-{stamp}-s{scenario.seed}"


def start(scenario: Scenario | str | Path, *, out_dir: str | Path | None = None, run_id: str | None = None,
          rounds: int | None = None, seed: int | None = None) -> Simulation:
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    scenario = scenario.with_overrides(rounds=rounds, seed=seed)
    run_id = run_id or scenario.output.run_id or new_run_id(scenario)
    out = Path(out_dir) if out_dir is not None else Path(scenario.output.dir)
    run_dir = out / run_id
    if scenario.output.run_id is None and run_id == new_run_id(scenario):
        n = 1
        while run_dir.exists():  # two runs in the same second
            n += 1
            run_dir = out / f"{run_id}-{n}"
        run_id = run_dir.name
    Recorder.claim(run_dir)
    world = build_world(scenario, run_id, run_dir)
    recorder = Recorder.create(scenario, run_dir, run_id, world.catalog)
    recorder.shared = world.shared_objects()
    recorder.record_personas(world.persona_frame())
    recorder.record_agents(world.agent_snapshot())  # round 0: the tastes people start with
    return Simulation(scenario, world, recorder)


def resume(run_dir: str | Path) -> Simulation:
    """Continue a run from its last complete round, with no duplicated or missing rows."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    scenario = load_scenario(run_dir / "scenario.yaml")  # saved with its paths made absolute
    world = build_world(scenario, summary["run_id"], run_dir)
    shared = world.shared_objects()
    state = read_checkpoint(run_dir, **shared)
    if state is not None:
        world.load_state(state)
    if world.memory is not None:  # memories of the round that did not commit are written again
        world.memory.forget_after(world.round, world.order)
    recorder = Recorder.reopen(run_dir, summary["run_id"], world.catalog, world.round)
    recorder.shared = shared
    return Simulation(scenario, world, recorder)


def run_scenario(path: str | Path, **kwargs) -> Path:
    """Run a scenario to the end; return its run folder."""
    sim = start(path, **kwargs)
    try:
        sim.run()
    finally:
        sim.close()
    return sim.run_dir


def list_runs(out_dir: str | Path = "runs") -> list[dict]:
    rows = []
    for path in sorted(Path(out_dir).glob("*/summary.json")):
        try:
            summary = read_summary(path.parent)
        except (SimworldError, ValueError):
            continue
        summary["path"] = str(path.parent)
        rows.append(summary)
    return rows


def wall_clock() -> float:
    return time.perf_counter()
