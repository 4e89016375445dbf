"""Building a world's parts from a scenario: catalog, population, LLM stack, memory,
recommender, policies and plug-in stages. `SimWorld` receives them complete."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from simworld.agents.policy import Policy
from simworld.agents.rule_policy import RulePolicy
from simworld.aio import LoopRunner
from simworld.catalog import Catalog, load_bundled_catalog, load_csv_catalog
from simworld.config import Scenario
from simworld.embedding import Embedder, make_embedder
from simworld.errors import SimworldError
from simworld.execution import build_executor
from simworld.plugins import import_object
from simworld.population import Persona, movielens_personas, synthetic_personas
from simworld.recommenders.base import Recommender, RecommenderContext
from simworld.recommenders.registry import build_recommender
from simworld.stages import Stage
from simworld.streams import Streams


@dataclass
class PlacedStage:
    """A plug-in stage and where it goes in the round."""

    stage: Stage
    before: str | None = None
    after: str | None = None


@dataclass
class WorldParts:
    """Everything a `SimWorld` is made of, built outside it (dependency injection)."""

    catalog: Catalog
    personas: list[Persona]
    recommender: Recommender
    policy_for: Callable[[Persona], Policy]
    streams: Streams
    loop: LoopRunner
    history: pl.DataFrame | None = None
    llm: Any = None  # the run's LedgerModel when a policy or recommender uses an LLM
    embedder: Embedder | None = None
    memory: Any = None  # a simworld.world_memory.WorldMemory when the scenario has memory
    stages: list[PlacedStage] = field(default_factory=list)
    crowd: pl.DataFrame | None = None  # item_id, n, total: ratings the crowd gave before the run
    taste: Any = None  # a simworld.taste.TasteModel for MovieLens-grounded users
    executor: Any = None  # where the decide stage runs (simworld/execution); None: this process


def grounding(scenario: Scenario):
    """The MovieLens split a grounded population lives on (simworld/grounding.py), or None."""
    spec = scenario.population
    if spec.source != "movielens":
        return None
    folder = spec.path or scenario.catalog.path
    if not folder:
        raise SimworldError("population.source 'movielens' needs population.path (or a movielens catalog.path)")
    from simworld.grounding import load_grounding

    same = scenario.catalog.source == "movielens" and scenario.resolve_path(scenario.catalog.path or "").resolve() \
        == scenario.resolve_path(folder).resolve()
    cat = scenario.catalog
    return load_grounding(str(scenario.resolve_path(folder).resolve()), spec.holdout,
                          cat.min_ratings if same else 0, cat.max_items if same else None)


def build_catalog(scenario: Scenario) -> Catalog:
    spec = scenario.catalog
    ground = grounding(scenario)
    if ground is not None and spec.source == "movielens" and \
            scenario.resolve_path(spec.path or "").resolve() == ground.path:
        return ground.catalog  # filtered by training ratings only
    if spec.source == "bundled":
        return load_bundled_catalog()
    path = scenario.resolve_path(spec.path or "")
    if spec.source == "csv":
        return load_csv_catalog(path)
    from simworld.movielens import load_movielens_catalog

    return load_movielens_catalog(path, min_ratings=spec.min_ratings, max_items=spec.max_items)


def build_population(scenario: Scenario, catalog: Catalog, streams: Streams
                     ) -> tuple[list[Persona], pl.DataFrame | None]:
    spec = scenario.population
    rng = streams.generator("population")
    if spec.source == "synthetic":
        return synthetic_personas(spec.size, catalog, rng), None
    ground = grounding(scenario)
    pop = movielens_personas(ground.train, catalog, spec.size, rng)  # the held-out part stays out
    return pop.personas, (pop.history if spec.seed_history else None)


def uses_llm(scenario: Scenario) -> bool:
    social_llm = scenario.social is not None and scenario.social.chat.speaker == "llm"
    return scenario.policy.kind != "rule" or scenario.recommender.name == "llm_rerank" or social_llm


def build_llm(scenario: Scenario, run_dir: Path | None, run_id: str, streams: Streams):
    """The run's whole LLM stack (cache, ledger, limits, budget), or None when nothing needs one."""
    if not uses_llm(scenario):
        return None
    from simworld.llm import INSTALL_HINT, build_language_model, embedded_available

    if scenario.llm.is_embedded and not embedded_available(scenario.llm.model.split("/", 1)[1]):
        raise SimworldError(f"llm.model {scenario.llm.model!r} is the embedded offline model, "
                            f"which is not installed: {INSTALL_HINT}")
    return build_language_model(scenario.llm, run_dir, run_id=run_id, seed=streams.int_seed("llm_retry"))


def seeded_share(agent_ids: list[int], fraction: float, rng: np.random.Generator) -> set[int]:
    n = round(len(agent_ids) * fraction)
    return {int(i) for i in rng.choice(sorted(agent_ids), size=n, replace=False)} if n else set()


def llm_agent_ids(scenario: Scenario, agent_ids: list[int], streams: Streams) -> set[int]:
    """Which agents decide by LLM: all (llm), none (rule), or a seeded share (hybrid)."""
    kind = scenario.policy.kind
    if kind == "llm":
        return set(agent_ids)
    if kind == "rule":
        return set()
    return seeded_share(agent_ids, scenario.policy.llm_fraction, streams.generator("policy_mix"))


def voiced_agent_ids(scenario: Scenario, agent_ids: list[int], deciders: set[int], streams: Streams) -> set[int]:
    """Hybrid with voice: the seeded share of rule-deciding agents whose feelings the LLM writes."""
    spec = scenario.policy
    if spec.kind != "hybrid" or not spec.voice:
        return set()
    rest = [a for a in agent_ids if a not in deciders]
    return seeded_share(rest, spec.voice_fraction, streams.generator("voice_mix"))


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


def build_memory(scenario: Scenario, catalog: Catalog, run_dir: Path | None, run_id: str):
    """The run's agent memory (chromadb in the run folder or on a server), or None."""
    if scenario.memory is None:
        return None
    from simworld.memory import open_memory
    from simworld.world_memory import WorldMemory

    store = open_memory(scenario.memory, run_dir, make_embedder(scenario.memory.embedder), run_id)
    return WorldMemory(store, scenario.memory, catalog)


def build_stages(scenario: Scenario) -> list[PlacedStage]:
    """The scenario's plug-in stages: each `path` names a factory called with `params`."""
    placed = []
    for spec in scenario.stages:
        stage = import_object(spec.path, "stage")(**spec.params)
        if not isinstance(stage, Stage):
            raise SimworldError(f"stage {spec.path!r} made {type(stage).__name__}, which has no `name` and "
                                "`run(world, rnd)`")
        placed.append(PlacedStage(stage, before=spec.before, after=spec.after))
    return placed


def build_social(scenario: Scenario, catalog: Catalog, personas: list[Persona], streams: Streams,
                 run_dir: Path | None) -> list[PlacedStage]:
    """The social layer's stages (simworld/social), or none when the scenario has no `social:`."""
    if scenario.social is None:
        return []
    from simworld.social.stages import SocialLayer

    layer = SocialLayer(scenario.social, catalog, personas, streams, run_dir, Path(scenario.base_dir))
    return [PlacedStage(stage, **where) for stage, where in layer.stages()]


def build_parts(scenario: Scenario, run_id: str = "run", run_dir: Path | None = None) -> WorldParts:
    """Every part of a world for this scenario; `run_dir` holds the LLM ledger and memory."""
    streams = Streams(scenario.seed)
    loop = LoopRunner()
    catalog = build_catalog(scenario)
    personas, history = build_population(scenario, catalog, streams)
    ground = grounding(scenario)
    llm = build_llm(scenario, run_dir, run_id, streams)
    # Content-based ranking needs item text embeddings: load the packaged MiniLM only then.
    embedder = make_embedder("minilm") if scenario.recommender.name == "content" else None
    context = RecommenderContext(catalog=catalog, seed=scenario.seed, embedder=embedder, llm=llm, loop=loop,
                                 streams=streams)
    recommender = build_recommender(scenario.recommender.name, scenario.recommender.params, context)
    ids = [p.agent_id for p in personas]
    llm_ids = llm_agent_ids(scenario, ids, streams)
    voice_ids = voiced_agent_ids(scenario, ids, llm_ids, streams)
    return WorldParts(
        catalog=catalog, personas=personas, history=history, recommender=recommender,
        policy_for=policy_factory(scenario, llm, llm_ids, voice_ids), streams=streams, loop=loop,
        llm=llm, embedder=embedder, memory=build_memory(scenario, catalog, run_dir, run_id),
        stages=[*build_social(scenario, catalog, personas, streams, run_dir), *build_stages(scenario)],
        crowd=ground.crowd if ground is not None and ground.catalog is catalog else None,
        taste=ground.taste if ground is not None and ground.catalog is catalog else None,
        executor=build_executor(scenario.execution, run_id),  # last: a Ray address is checked here
    )
