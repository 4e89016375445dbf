"""A CRS generation and its run folder: `Generation` builds, runs, finishes and resumes it.

    runs/<run-id>/crs_scenario.yaml        the CRS scenario as resolved
    runs/<run-id>/crs_summary.json         status, dialogues done, timings, (at the end) metrics
    runs/<run-id>/dialogues/batch-*.parquet  one file per committed batch while the run is live
    runs/<run-id>/dialogues.parquet        every dialogue, written at the end (batches removed)
    runs/<run-id>/dialogue_metrics.parquet one row of metrics per dialogue (at the end)
    runs/<run-id>/crs_metrics.json         the data set's figures and z-scores (at the end)
    runs/<run-id>/llm_calls.parquet        the LLM ledger, when an LLM took part

The commit point is the batch file: dialogues run concurrently in batches of
`generation.batch_size`, and a batch is written (to a temporary name, then renamed) only when
all its dialogues are done. Each dialogue draws only from its own random streams (keyed by its
index) and the CRS keeps no state between calls, so a killed generation resumes at the first
missing batch and produces exactly the dialogues an uninterrupted one would: none lost, none
twice. The summary is `crs_summary.json`, not `summary.json`, so simulation tools
(`simworld runs`, the viewer's run list) never mistake a CRS run for a simulation.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import polars as pl

from simworld.aio import LoopRunner
from simworld.catalog import Catalog
from simworld.crs.config import CRSScenario, HTTPCRSSpec, LLMCRSSpec, RetrievalCRSSpec, load_crs_scenario
from simworld.crs.dialogue import DialogueInfo, run_dialogue
from simworld.crs.export import parquet_bytes, read_parquet, write_parquet
from simworld.crs.leak import LeakGuard
from simworld.crs.metrics import REDIAL_TEST_SEEKERS, HumanReference, metrics_frame, reference_from_redial, summarise
from simworld.crs.need import InformationNeed, draw_need, taste_sample, taste_scores
from simworld.crs.protocol import CRS, CRSError
from simworld.crs.records import Dialogue
from simworld.crs.seeker import LLMVoice, Seeker, TemplateVoice
from simworld.errors import SimworldError
from simworld.population import Persona
from simworld.recorder import atomic_write_bytes, atomic_write_parquet, list_run_folders, new_run_folder
from simworld.streams import Streams

SCENARIO_FILE = "crs_scenario.yaml"
SUMMARY_FILE = "crs_summary.json"
DIALOGUES_FILE = "dialogues.parquet"
METRICS_FILE = "crs_metrics.json"
DIALOGUE_METRICS_FILE = "dialogue_metrics.parquet"
BATCHES = "dialogues"
LIKED_RATING = 4.0  # a MovieLens rating at which a film counts as liked (a target, a similar-to film)


def persona_dict(p: Persona) -> dict[str, Any]:
    rec = {f.name: getattr(p, f.name) for f in fields(p)}
    rec["description"] = p.describe()
    return rec


@dataclass
class CRSParts:
    """Everything a generation is made of, built from its scenario (the same on resume)."""

    catalog: Catalog
    personas: list[Persona]
    history: pl.DataFrame  # user_id, item_id, rating, round: what each seeker has seen
    needs: list[InformationNeed]
    streams: Streams
    loop: LoopRunner
    crs: CRS
    llm: Any = None  # the seekers' LLM stack (LedgerModel), when one is used
    crs_llm: Any = None  # the LLM CRS's own stack, when it has its own model

    def stacks(self) -> list[Any]:
        return [m for m in (self.llm, self.crs_llm) if m is not None]


# -- building -------------------------------------------------------------------------------------

def _llm_stack(config, run_dir: Path | None, run_id: str, streams: Streams):
    from simworld.llm import INSTALL_HINT, build_language_model, embedded_available

    if config.is_embedded and not embedded_available(config.model.split("/", 1)[1]):
        raise SimworldError(f"llm.model {config.model!r} is the embedded offline model, which is not installed: "
                            f"{INSTALL_HINT}")
    return build_language_model(config, run_dir, run_id=run_id, seed=streams.int_seed("llm_retry"))


def _history(scenario: CRSScenario, personas: list[Persona], history: pl.DataFrame | None, catalog: Catalog,
             streams: Streams) -> pl.DataFrame:
    """What the seekers have seen: MovieLens users' own ratings, or films drawn from a synthetic
    persona's taste (rated by how well they fit it)."""
    if history is not None and history.height:
        return history.select("user_id", "item_id", "rating", "round")
    rows = []
    for p in personas:
        rng = streams.generator("crs_background", p.agent_id)
        scores = taste_scores(p, catalog)
        for item in taste_sample(p, catalog, rng, scenario.seeker.history):
            rating = min(5.0, max(0.5, round((3.0 + 2.0 * float(scores[catalog.row(item)]) + p.rating_bias) * 2) / 2))
            rows.append((p.agent_id, item, rating, -1))
    return pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64,
                                      "round": pl.Int64}, orient="row")


def _needs(scenario: CRSScenario, personas: list[Persona], history: pl.DataFrame, catalog: Catalog,
           streams: Streams, grounded: bool) -> list[InformationNeed]:
    """Each dialogue's hidden need. A MovieLens user's targets are films it rated well (held out of
    what the CRS's recommender learns); a synthetic seeker's, films it has not seen."""
    by_user = {u: (f["item_id"].to_list(), f.filter(pl.col("rating") >= LIKED_RATING)["item_id"].to_list())
               for (u,), f in history.partition_by("user_id", as_dict=True).items()}
    threshold = scenario.seeker.leak_threshold

    def leaks(title: str, targets: tuple[int, ...]) -> bool:
        return LeakGuard({t: catalog.get(t).title for t in targets}, threshold).title_leaks(title)

    out = []
    for index in range(scenario.dialogues):
        p = personas[index % len(personas)]
        seen, liked = by_user.get(p.agent_id, ([], []))
        pool = liked if grounded and len(liked) > scenario.seeker.targets else None
        out.append(draw_need(p, catalog, seen, streams.generator("crs_need", index), scenario.seeker.targets,
                             pool=pool, liked=liked or seen, leaks=leaks))
    return out


def build_crs(scenario: CRSScenario, catalog: Catalog, history: pl.DataFrame, streams: Streams, loop: LoopRunner,
              llm, crs_llm) -> CRS:
    spec = scenario.crs
    if isinstance(spec, RetrievalCRSSpec):
        from simworld.crs.retrieval import RetrievalCRS
        from simworld.embedding import make_embedder
        from simworld.recommenders.base import RecommenderContext
        from simworld.recommenders.registry import build_recommender

        name = spec.recommender.name
        embedder = make_embedder("minilm") if name == "content" else None
        context = RecommenderContext(catalog=catalog, seed=scenario.seed, embedder=embedder, loop=loop,
                                     streams=streams)
        recommender = build_recommender(name, spec.recommender.params, context)
        recommender.fit(history)
        return RetrievalCRS(recommender, catalog, recommender_name=name, personalised=spec.personalised,
                            questions=spec.questions, show=spec.show)
    if isinstance(spec, LLMCRSSpec):
        from simworld.crs.llm_crs import LLMCRS
        from simworld.embedding import make_embedder

        model = crs_llm if crs_llm is not None else llm
        config = spec.llm or scenario.llm
        return LLMCRS(model, catalog, make_embedder(spec.embedder), model_name=config.model,
                      candidates=spec.candidates, show=spec.show)
    assert isinstance(spec, HTTPCRSSpec)
    from simworld.crs.http_crs import HTTPCRS

    return HTTPCRS(spec.url, timeout_s=spec.timeout_s, retries=spec.retries, concurrency=spec.concurrency,
                   name=spec.name)


def build_parts(scenario: CRSScenario, run_dir: Path | None, run_id: str) -> CRSParts:
    from simworld.build import build_catalog, build_population

    streams = Streams(scenario.seed)
    loop = LoopRunner()
    catalog = build_catalog(scenario)  # type: ignore[arg-type]  (reads .catalog and resolve_path)
    personas, history = build_population(scenario, catalog, streams)  # type: ignore[arg-type]
    grounded = history is not None and history.height > 0
    seen = _history(scenario, personas, history, catalog, streams)
    needs = _needs(scenario, personas, seen, catalog, streams, grounded)
    targets = pl.DataFrame([(personas[i % len(personas)].agent_id, t) for i, n in enumerate(needs) for t in n.targets],
                           schema={"user_id": pl.Int64, "item_id": pl.Int64}, orient="row")
    seen = seen.join(targets.unique(), on=["user_id", "item_id"], how="anti")  # a target is never 'seen'
    needs_llm = scenario.seeker.kind == "llm" or scenario.seeker.judge == "llm" or (
        isinstance(scenario.crs, LLMCRSSpec) and scenario.crs.llm is None)
    llm = _llm_stack(scenario.llm, run_dir, run_id, streams) if needs_llm else None
    crs_llm = None
    if isinstance(scenario.crs, LLMCRSSpec) and scenario.crs.llm is not None:
        crs_llm = _llm_stack(scenario.crs.llm, run_dir, run_id, streams)
    crs = build_crs(scenario, catalog, seen, streams, loop, llm, crs_llm)
    return CRSParts(catalog=catalog, personas=personas, history=seen, needs=needs, streams=streams, loop=loop,
                    crs=crs, llm=llm, crs_llm=crs_llm)


# -- the generation -------------------------------------------------------------------------------

class Generation:
    """One CRS generation: the owner of its run folder from start to finish (and resume)."""

    def __init__(self, scenario: CRSScenario, run_dir: Path, run_id: str, parts: CRSParts, batches_done: int = 0,
                 wall_s: float = 0.0):
        self.scenario = scenario
        self.run_dir = run_dir
        self.run_id = run_id
        self.parts = parts
        self.batches_done = batches_done
        self.wall_s = wall_s
        self.status = "running"
        self.message: str | None = None
        self._titles = {item.item_id: item.title for item in parts.catalog.items}

    # -- lifecycle ----------------------------------------------------------------------------------
    @classmethod
    def start(cls, scenario: CRSScenario | str | Path, *, out_dir: str | Path | None = None,
              run_id: str | None = None, dialogues: int | None = None, seed: int | None = None) -> "Generation":
        """A new generation in a new run folder (removed again if it cannot be built)."""
        if not isinstance(scenario, CRSScenario):
            scenario = load_crs_scenario(scenario)
        scenario = scenario.with_overrides(dialogues=dialogues, seed=seed)
        out = Path(out_dir) if out_dir is not None else Path(scenario.output.dir)
        with new_run_folder(out, run_id or scenario.output.run_id, scenario.name, scenario.seed) as (run_dir,
                                                                                                    run_id):
            parts = build_parts(scenario, run_dir, run_id)
            (run_dir / BATCHES).mkdir()
            atomic_write_bytes(run_dir / SCENARIO_FILE, scenario.to_yaml().encode("utf-8"))
        gen = cls(scenario, run_dir, run_id, parts)
        gen.write_summary()
        return gen

    @classmethod
    def resume(cls, run_dir: str | Path) -> "Generation":
        """Continue after the last committed batch (a finished generation that was killed while
        finishing is finished)."""
        run_dir = Path(run_dir)
        summary = read_crs_summary(run_dir)
        scenario = load_crs_scenario(run_dir / SCENARIO_FILE)
        parts = build_parts(scenario, run_dir, summary["run_id"])
        batches = run_dir / BATCHES
        for stray in [*batches.glob(".*.tmp"), *run_dir.glob(".*.tmp")]:
            stray.unlink()
        done = summary.get("batches_planned", 0) if (run_dir / DIALOGUES_FILE).exists() else _committed(batches)
        gen = cls(scenario, run_dir, summary["run_id"], parts, batches_done=done,
                  wall_s=float(summary.get("wall_s", 0.0)))
        for llm in parts.stacks():
            llm.restore(done)
        if gen.finished:
            gen.finish()
        return gen

    @property
    def batch_size(self) -> int:
        return self.scenario.generation.batch_size

    @property
    def batches_planned(self) -> int:
        return -(-self.scenario.dialogues // self.batch_size)

    @property
    def dialogues_done(self) -> int:
        return min(self.scenario.dialogues, self.batches_done * self.batch_size)

    @property
    def finished(self) -> bool:
        return self.batches_done >= self.batches_planned

    @property
    def seeker_model(self) -> str:
        return "template" if self.scenario.seeker.kind == "template" else self.scenario.llm.model

    # -- dialogues ----------------------------------------------------------------------------------
    def seeker(self, index: int) -> tuple[Seeker, DialogueInfo]:
        """Dialogue `index`'s seeker, built from its persona, need and knobs."""
        p = self.parts
        persona = p.personas[index % len(p.personas)]
        need = p.needs[index]
        knobs = self.scenario.seeker.knobs.draw(p.streams, index)
        voice = LLMVoice(p.llm, p.catalog) if self.scenario.seeker.kind == "llm" else TemplateVoice()
        guard = LeakGuard({t: p.catalog.get(t).title for t in need.targets}, self.scenario.seeker.leak_threshold,
                          titles=self._titles)
        seeker = Seeker(persona, need, knobs, p.catalog, p.streams, index, voice, guard)
        info = DialogueInfo(index=index, persona=persona_dict(persona), knobs=knobs.as_dict(),
                            seeker_model=self.seeker_model, seed=self.scenario.seed, run_id=self.run_id)
        return seeker, info

    async def dialogue(self, index: int) -> Dialogue:
        seeker, info = self.seeker(index)
        judge = self.parts.llm if self.scenario.seeker.judge == "llm" else None
        return await run_dialogue(seeker, self.parts.crs, info, self.scenario.dialogue.max_turns,
                                  self.scenario.crs.ranking_k, judge_llm=judge)

    def run_batch(self, batch: int, on_dialogue: Callable[[Dialogue], None] | None = None) -> list[Dialogue]:
        """Run batch `batch` (1-based) concurrently and commit it."""
        start = (batch - 1) * self.batch_size
        indices = range(start, min(self.scenario.dialogues, start + self.batch_size))
        for llm in self.parts.stacks():
            llm.set_round(batch)

        async def one(index: int) -> Dialogue:
            d = await self.dialogue(index)
            if on_dialogue is not None:
                on_dialogue(d)
            return d

        async def all_of() -> list[Dialogue]:
            return list(await asyncio.gather(*(one(i) for i in indices)))

        began = time.perf_counter()
        dialogues = self.parts.loop.run(all_of())
        for llm in self.parts.stacks():
            llm.flush()
        atomic_write_bytes(self.run_dir / BATCHES / f"batch-{batch:06d}.parquet", parquet_bytes(dialogues))
        self.batches_done = batch  # committed: the file exists
        self.wall_s += time.perf_counter() - began
        self.write_summary()
        return dialogues

    def run(self, on_dialogue: Callable[[Dialogue], None] | None = None,
            on_batch: Callable[[int, list[Dialogue]], None] | None = None) -> None:
        """Every remaining batch, then `finish`. Stops early (resumable) when an LLM budget is spent."""
        try:
            while not self.finished:
                dialogues = self.run_batch(self.batches_done + 1, on_dialogue)
                if on_batch is not None:
                    on_batch(self.batches_done, dialogues)
                spent = self._budget_spent()
                if spent and not self.finished:
                    self.mark("budget_exhausted", spent)
                    return
        except CRSError as exc:
            self.mark("failed", str(exc))
            raise
        except KeyboardInterrupt:
            self.mark("interrupted", f"interrupted after {self.dialogues_done} dialogues")
            raise
        self.finish()

    def _budget_spent(self) -> str | None:
        from simworld.llm import BudgetedModel

        for llm in self.parts.stacks():
            budget = llm.find(BudgetedModel)
            if budget is not None and budget.exhausted:
                return f"the LLM budget is spent after {self.dialogues_done} dialogues"
        return None

    def finish(self) -> dict:
        """Fold the batches into dialogues.parquet, compute the metrics, mark the run finished.
        Each step is safe to repeat after a kill."""
        dialogues = read_dialogues(self.run_dir)
        if not (self.run_dir / DIALOGUES_FILE).exists():
            write_parquet(dialogues, self.run_dir / DIALOGUES_FILE)
        shutil.rmtree(self.run_dir / BATCHES, ignore_errors=True)
        atomic_write_parquet(metrics_frame(dialogues), self.run_dir / DIALOGUE_METRICS_FILE)
        metrics = summarise(dialogues, self.reference())
        atomic_write_bytes(self.run_dir / METRICS_FILE, json.dumps(metrics, indent=2).encode())
        self.status, self.message = "finished", None
        self.write_summary(metrics)
        return metrics

    def reference(self) -> HumanReference:
        path = self.scenario.metrics.reference
        return reference_from_redial(self.scenario.resolve_path(path)) if path else REDIAL_TEST_SEEKERS

    def mark(self, status: str, message: str | None = None) -> None:
        self.status, self.message = status, message
        self.write_summary()

    def write_summary(self, metrics: dict | None = None) -> None:
        s = self.scenario
        summary = {
            "kind": "crs", "run_id": self.run_id, "scenario": s.name, "seed": s.seed, "status": self.status,
            "message": self.message, "dialogues_planned": s.dialogues, "dialogues_done": self.dialogues_done,
            "batches_planned": self.batches_planned, "batches_done": self.batches_done, "batch_size": self.batch_size,
            "seeker": s.seeker.kind, "seeker_model": self.seeker_model, "judge": s.seeker.judge,
            "crs": s.crs.kind, "crs_name": self.parts.crs.name, "crs_model": self.parts.crs.model,
            "max_turns": s.dialogue.max_turns, "catalog_items": len(self.parts.catalog),
            "wall_s": round(self.wall_s, 3),
            "dialogues_per_minute": round(60 * self.dialogues_done / self.wall_s, 2) if self.wall_s else None,
        }
        stacks = self.parts.stacks()
        if stacks:
            summary["llm"] = stacks[0].summary()
        if metrics is not None:
            summary["metrics"] = metrics
        elif (self.run_dir / METRICS_FILE).exists():
            summary["metrics"] = json.loads((self.run_dir / METRICS_FILE).read_text())
        atomic_write_bytes(self.run_dir / SUMMARY_FILE, json.dumps(summary, indent=2).encode())

    def close(self) -> None:
        self.parts.loop.close()


def generate(path: str | Path, **kwargs) -> Path:
    """Run a CRS scenario to the end; return its run folder."""
    gen = Generation.start(path, **kwargs)
    try:
        gen.run()
    finally:
        gen.close()
    return gen.run_dir


# -- reading run folders (the CLI, the viewer and notebooks use these) ------------------------------

def _committed(batches: Path) -> int:
    """How many batches are committed: the files 1..n, all present."""
    numbers = sorted(int(p.stem.split("-")[1]) for p in batches.glob("batch-*.parquet"))
    n = 0
    while n < len(numbers) and numbers[n] == n + 1:
        n += 1
    return n


def is_crs_run(path: str | Path) -> bool:
    return (Path(path) / SUMMARY_FILE).is_file()


def read_crs_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        raise SimworldError(f"{run_dir} is not a CRS run folder (no {SUMMARY_FILE})")
    return json.loads(path.read_text())


def read_dialogues(run_dir: str | Path) -> list[Dialogue]:
    """Every committed dialogue of a run folder, in index order."""
    run_dir = Path(run_dir)
    whole = run_dir / DIALOGUES_FILE
    if whole.exists():
        return read_parquet(whole)
    out: list[Dialogue] = []
    for part in sorted((run_dir / BATCHES).glob("batch-*.parquet")):
        out.extend(read_parquet(part))
    return sorted(out, key=lambda d: d.index)


def read_crs_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    path = Path(run_dir) / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def list_crs_runs(out_dir: str | Path = "runs") -> list[dict[str, Any]]:
    """The summaries of the CRS generations in `out_dir`."""
    return list_run_folders(out_dir, SUMMARY_FILE, read_crs_summary)
