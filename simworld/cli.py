"""`simworld` command line. User errors end in one clear message and exit code 2."""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from simworld.errors import ScenarioError, SimworldError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="simworld: simulate users on a recommender platform.")
console = Console()
err = Console(stderr=True, soft_wrap=True)  # never break an error message across lines

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _fail(exc: SimworldError) -> None:
    if isinstance(exc, ScenarioError):
        err.print(f"[bold red]error:[/] {exc.source} is not a valid scenario:", highlight=False)
        for problem in exc.problems:
            err.print(f"  {problem}", highlight=False, markup=False)
    else:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(EXIT_USER_ERROR)


@contextlib.contextmanager
def _progress(unit: str, total: int, done: int, interrupted: Callable[[], str], close: Callable[[], None]):
    """A progress bar over `total` units (with a `last` text field); Ctrl-C prints how to go on
    (`interrupted()`) and exits 130; `close()` runs however the block ends."""
    with Progress(TextColumn(f"[bold]{unit}"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[last]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task(unit, total=total, completed=done, last="")
        try:
            yield progress, task
        except KeyboardInterrupt:
            progress.stop()
            err.print(interrupted())
            raise typer.Exit(EXIT_INTERRUPTED)
        finally:
            close()


def _run_with_progress(sim) -> None:
    console.print(f"run [bold]{sim.run_id}[/] -> {sim.run_dir}")
    with _progress("round", sim.scenario.rounds, sim.rounds_done, close=sim.close, interrupted=lambda: (
            f"interrupted after round {sim.rounds_done}; continue with: simworld resume {sim.run_dir}")) as (bar, task):

        def on_round(result, metrics) -> None:
            rating = metrics.get("mean_rating", math.nan)
            bar.update(task, completed=result.round,
                       last=f"{result.active} active, {int(metrics.get('watches', 0))} watches, "
                            f"rating {rating:.2f}" if rating == rating else f"{result.active} active, no watches")

        sim.run(on_round)
    _print_summary(sim.run_dir)


def _print_summary(run_dir: Path) -> None:
    from simworld.recorder import read_metrics, read_summary

    summary = read_summary(run_dir)
    table = Table(title=f"run {summary['run_id']}", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("status", "rounds_done", "agents", "catalog_items", "recommender", "policy", "events",
                "watches", "mean_rating", "prompt_tokens", "completion_tokens", "wall_s"):
        value = summary.get(key)
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    for key, value in (summary.get("llm") or {}).items():
        table.add_row(f"llm {key}", f"{value:.4f}" if isinstance(value, float) else str(value))
    metrics = read_metrics(run_dir)
    if metrics.height:
        last = metrics.row(-1, named=True)
        for key in ("coverage", "genre_entropy"):
            if key in last and last[key] is not None:
                table.add_row(f"{key} (last round)", f"{last[key]:.3f}")
    console.print(table)
    if summary.get("status") == "budget_exhausted":
        err.print(f"[bold yellow]stopped:[/] {summary.get('message')}; raise llm.budget_* and run "
                  f"simworld resume {run_dir} to go on", highlight=False)
    console.print(f"run folder: {run_dir}")


LOCAL_RAY = "local"  # `--ray` given without an address (main() puts it in), or `--ray local`


def _ray_alone(argv: list[str]) -> list[str]:
    """The arguments with `--ray` given alone (last, or before another option) made `--ray local`:
    an option of the command line library takes a value or none, not either."""
    out = []
    for k, arg in enumerate(argv):
        out.append(arg)
        if arg == "--ray" and (k + 1 == len(argv) or argv[k + 1].startswith("-")):
            out.append(LOCAL_RAY)
    return out


def _execution_settings(ray: str | None, workers: int | None) -> dict:
    """The scenario's `execution:` settings that --ray and --workers ask for."""
    settings: dict = {}
    if ray is not None:
        settings = {"execution.backend": "ray", "execution.address": None if ray == LOCAL_RAY else ray}
    elif workers is not None:
        settings = {"execution.backend": "processes"}
    if workers is not None:
        settings["execution.workers"] = workers
    return settings


@app.command()
def run(scenario: Path = typer.Argument(..., help="scenario YAML file"),
        rounds: Optional[int] = typer.Option(None, "--rounds", min=1, help="override the number of rounds"),
        seed: Optional[int] = typer.Option(None, "--seed", min=0, help="override the seed"),
        out: Optional[Path] = typer.Option(None, "--out", help="folder for run folders (default: the scenario's output.dir)"),
        run_id: Optional[str] = typer.Option(None, "--run-id", help="fixed run id"),
        ray: Optional[str] = typer.Option(
            None, "--ray", metavar="[ADDRESS]",
            help="decide in Ray actors: on the cluster at ADDRESS (ray://host:10001 or host:6379), or, given "
                 "alone, in a local Ray (only inside a loopback-only network namespace here: see README)"),
        workers: Optional[int] = typer.Option(
            None, "--workers", min=1, help="decide in N worker processes (with --ray: N actors)")) -> None:
    """Run a scenario to the end and write its run folder."""
    from simworld import runner
    from simworld.config import load_scenario, run_id_problem

    try:
        if run_id is not None and (problem := run_id_problem(run_id)):
            raise SimworldError(f"--run-id {problem}")
        execution = _execution_settings(ray, workers)
        if execution:
            scenario = load_scenario(scenario).with_settings(execution)
        sim = runner.start(scenario, out_dir=out, run_id=run_id, rounds=rounds, seed=seed)
        _run_with_progress(sim)
    except SimworldError as exc:
        _fail(exc)


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="a run folder, e.g. runs/movies-20261125-120000-s42"),
           ray: Optional[str] = typer.Option(None, "--ray", metavar="[ADDRESS]",
                                             help="decide in Ray actors from now on (see `run --ray`)"),
           workers: Optional[int] = typer.Option(None, "--workers", min=1, help="decide in N worker processes"),
           local: bool = typer.Option(False, "--local", help="decide in this process, whatever the run used")) -> None:
    """Continue a run from its last complete round (on the backend it used, unless told otherwise)."""
    from simworld import runner

    try:
        if not run_dir.is_dir():
            raise SimworldError(f"run folder not found: {run_dir}")
        if local and (ray is not None or workers is not None):
            raise SimworldError("--local decides in this process: give it without --ray and --workers")
        execution = {"execution.backend": "local"} if local else _execution_settings(ray, workers)
        sim = runner.resume(run_dir, execution or None)
        if sim.finished:
            console.print(f"run {sim.run_id} already has all {sim.scenario.rounds} rounds")
            sim.close()
            return
        console.print(f"resuming after round {sim.rounds_done}")
        _run_with_progress(sim)
    except SimworldError as exc:
        _fail(exc)


@app.command()
def replay(run_dir: Path = typer.Argument(..., help="a finished run folder"),
           out: Optional[Path] = typer.Option(None, "--out", help="folder for the new run folder (default: beside it)")
           ) -> None:
    """Run a run again from its response cache (no LLM call) into a new run folder, and print it."""
    from simworld import runner

    try:
        if not run_dir.is_dir():
            raise SimworldError(f"run folder not found: {run_dir}")
        console.print(str(runner.replay(run_dir, out)), highlight=False, soft_wrap=True)
    except SimworldError as exc:
        _fail(exc)


@app.command()
def branch(run_dir: Path = typer.Argument(..., help="the run folder to branch from (finished or stopped)"),
           round_no: str = typer.Option(..., "--round", help="the last round the branch shares with it (0: only "
                                        "the start)"),
           settings: list[str] = typer.Option([], "--set", help="a setting changed from then on, KEY=VALUE with a "
                                              "dotted key and a YAML value, e.g. recommender.name=mf (repeatable)"),
           rounds: Optional[int] = typer.Option(None, "--rounds", min=1, help="rounds of the branch in all "
                                                "(default: the scenario's)"),
           out: Optional[Path] = typer.Option(None, "--out", help="folder for the new run folder (default: beside it)"),
           run_id: Optional[str] = typer.Option(None, "--run-id", help="fixed run id (default: RUN-branch-rROUND)")
           ) -> None:
    """Start a new run from a completed round of an old one with changed settings (a
    counterfactual): rounds 1..ROUND are the old run's, replayed from its cache with no LLM call."""
    from simworld import branch as branching

    try:
        try:
            round_ = int(round_no)
        except ValueError:
            raise SimworldError(f"--round must be a round number, got {round_no!r}") from None
        with console.status(f"replaying rounds 1 to {round_} of {run_dir.name} from its cache ..."):
            sim = branching.start_branch(run_dir, round_, branching.parse_settings(settings), rounds=rounds,
                                         run_id=run_id, out_dir=out)
        console.print(f"branch of {run_dir.name} after round {round_}")
        _run_with_progress(sim)
    except branching.ReplayInterrupted as exc:
        err.print(f"interrupted while replaying the parent; continue with: simworld resume {exc.run_dir}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except SimworldError as exc:
        _fail(exc)


@app.command()
def schema(crs: bool = typer.Option(False, "--crs", help="the CRS scenario's schema (`simworld crs generate`), "
                                    "with every seeker knob")) -> None:
    """Print the scenario JSON Schema (for editor autocompletion)."""
    if crs:
        from simworld.crs.config import crs_json_schema

        sys.stdout.write(json.dumps(crs_json_schema(), indent=2) + "\n")
        return
    from simworld.config import scenario_json_schema

    sys.stdout.write(json.dumps(scenario_json_schema(), indent=2) + "\n")


@app.command()
def runs(out: Path = typer.Option(Path("runs"), "--out", help="folder that holds run folders")) -> None:
    """List run folders with their status."""
    from simworld.runner import list_runs

    rows = list_runs(out)
    if not rows:
        console.print(f"no runs in {out}")
        return
    table = Table(show_header=True)
    for col in ("run_id", "status", "rounds", "agents", "recommender", "policy", "watches", "mean rating"):
        table.add_column(col)
    for r in rows:
        rating = r.get("mean_rating")
        table.add_row(r["run_id"], r["status"], f"{r['rounds_done']}/{r['rounds_planned']}", str(r["agents"]),
                      r["recommender"], r["policy"], str(r["watches"]), f"{rating:.2f}" if rating else "-")
    console.print(table)


@app.command()
def validate(scenario: Path = typer.Argument(..., help="scenario YAML file")) -> None:
    """Check a scenario file (a simulation's, or a CRS scenario's) without running it."""
    from simworld.config import load_scenario
    from simworld.crs.config import is_crs_scenario, load_crs_scenario

    try:
        if is_crs_scenario(scenario):
            c = load_crs_scenario(scenario)
            console.print(f"{scenario}: valid CRS scenario ({c.dialogues} dialogues, {c.seeker.kind} seekers, "
                          f"{c.crs.kind} CRS); run it with `simworld crs generate {scenario}`")
            return
        s = load_scenario(scenario)
    except SimworldError as exc:
        _fail(exc)
    console.print(f"{scenario}: valid ({s.population.size} agents, {s.rounds} rounds, {s.recommender.name}, {s.policy.kind})")


@app.command()
def compare(paths: list[Path] = typer.Argument(..., help="two or more scenario files (run) or run folders (read)"),
            out: Path = typer.Option(Path("runs/compare"), "--out", help="folder for the runs and report.html"),
            rounds: Optional[int] = typer.Option(None, "--rounds", min=1, help="override the number of rounds"),
            seeds: int = typer.Option(1, "--seeds", min=1, help="run each arm over N seeds (paired) and report "
                                      "means with 95% intervals and paired tests"),
            window: int = typer.Option(1, "--window", min=1, help="with --seeds: compare the mean of the last N rounds")) -> None:
    """A/B: run the variants and write one HTML report of their metrics over rounds."""
    from simworld.compare import compare as run_compare

    try:
        for path in paths:
            if not path.exists():
                raise SimworldError(f"{path}: no such scenario file or run folder")
        if seeds > 1:
            from simworld.study import study

            report, table = study(paths, seeds, out, rounds, window,
                                  on_start=lambda p: console.print(f"running {p} ..."))
            _print_frame(f"difference from the first arm over {seeds} paired seeds (95% interval, paired t-test)",
                         table.select("metric", "arm", "baseline_mean", "arm_mean", "difference", "low", "high", "p"),
                         "{:.4g}")
            console.print(f"report: {report}")
            return
        report, table = run_compare(paths, out, rounds, on_start=lambda p: console.print(f"running {p} ..."))
    except SimworldError as exc:
        _fail(exc)
    _print_frame("last round, per variant", table.pivot(on="variant", index="metric", values="last"), "{:.4g}")
    console.print(f"report: {report}")


@app.command()
def export(run_dir: Path = typer.Argument(..., help="a run folder"),
           out: Optional[Path] = typer.Option(None, "--out", help="folder for the files (default: RUN_DIR/export)"),
           name: Optional[str] = typer.Option(None, "--name", help="data set name (default: the run id)")) -> None:
    """Export the run's watches as RecBole atomic files (.inter, .item, .user) and Parquet."""
    import polars as pl

    from simworld.build import build_catalog
    from simworld.config import load_scenario
    from simworld.export import export_recbole
    from simworld.recorder import read_events, read_summary

    try:
        summary = read_summary(run_dir)
        catalog = build_catalog(load_scenario(run_dir / "scenario.yaml"))
        personas = run_dir / "personas.parquet"
        users = pl.read_parquet(personas) if personas.exists() else None
        paths = export_recbole(read_events(run_dir), catalog, users, out or run_dir / "export",
                               name or summary["run_id"])
    except (SimworldError, ValueError) as exc:
        _fail(exc if isinstance(exc, SimworldError) else SimworldError(str(exc)))
    for path in paths:
        console.print(f"wrote {path}")


eval_app = typer.Typer(no_args_is_help=True, help="offline evaluation")
app.add_typer(eval_app, name="eval")


@eval_app.command("recommenders")
def eval_recommenders(data: Path = typer.Option(..., "--data", help="a MovieLens folder (ml-latest-small layout or ml-100k/ml-1m)"),
                      k: int = typer.Option(10, "--k", min=1, help="list length"),
                      max_users: Optional[int] = typer.Option(None, "--max-users", min=1, help="evaluate a seeded sample of users"),
                      seed: int = typer.Option(0, "--seed", min=0),
                      embedder: str = typer.Option("minilm", "--embedder",
                                                   help="item text embeddings of the content-based algorithm: minilm or hashing")) -> None:
    """Recall@k and NDCG@k of every built-in algorithm on a temporal MovieLens split."""
    from simworld.embedding import make_embedder
    from simworld.evaluation import run_offline_eval

    try:
        with console.status("fitting and evaluating every algorithm ..."):
            table = run_offline_eval(data, k=k, seed=seed, max_users=max_users, embedder=make_embedder(embedder))
    except SimworldError as exc:
        _fail(exc)
    _print_frame(f"offline evaluation on {data.name} (temporal split, last 20% of each user)", table, "{:.4f}")


@app.command()
def calibrate(scenario: Path = typer.Argument(..., help="a scenario with a MovieLens-grounded population"),
              out: Optional[Path] = typer.Option(None, "--out", help="the calibrated scenario file (default: "
                                                 "SCENARIO-calibrated.yaml beside it)"),
              users: Optional[int] = typer.Option(None, "--users", min=1, help="population size to fit and score on"),
              no_compare: bool = typer.Option(False, "--no-compare", help="skip the fidelity figures before and after"),
              objective: str = typer.Option("accuracy", "--objective", help="accuracy (expected balanced accuracy "
                                            "of the model's choices) or likelihood (maximum likelihood)")) -> None:
    """Fit the choice model's and activity model's constants to the training data (maximum
    likelihood) and write them as a scenario you can run, with fidelity before and after."""
    from simworld.calibrate import calibrate as run_calibrate

    try:
        with console.status("fitting on the training part ..."):
            if objective not in ("accuracy", "likelihood"):
                raise SimworldError(f"--objective must be accuracy or likelihood, got {objective!r}")
            result = run_calibrate(scenario, out, users, compare=not no_compare, objective=objective)
    except SimworldError as exc:
        _fail(exc)
    c = result.choice
    console.print(f"choice model: watch_threshold {c.watch_threshold:g}, watch_slope {c.watch_slope:g}, page_contrast "
                  f"{c.page_contrast:g} (log-likelihood {c.log_likelihood:.1f} on {c.pages} validation pages); "
                  f"activity: pareto_alpha {result.pareto_alpha:g}", highlight=False)
    if result.before:
        import polars as pl

        frame = pl.DataFrame([{"measure": k, "before": result.before[k], "after": result.after[k]} for k in result.before])
        _print_frame("fidelity on the held-out part, before and after", frame, "{:.3f}")
    console.print(f"calibrated scenario: {result.scenario_path}")


@eval_app.command("text")
def eval_text(run_dir: Path = typer.Argument(..., help="a run folder")) -> None:
    """Text realism of a run: feelings' sentiment against their ratings, repetition across agents
    (distinct-n, lines shared word for word), length and numeric junk ("2.5 star")."""
    import polars as pl

    from simworld.text_realism import score_run

    try:
        scores = score_run(run_dir)
    except SimworldError as exc:
        _fail(exc)
    keys = [k for k in scores["feelings"] if k != "lines"] if scores["feelings"]["lines"] else []
    rows = [{"measure": k, **{part: (scores[part].get(k) if scores[part].get(k) is not None else float("nan"))
                              for part in scores}} for k in ["lines", *keys]]
    _print_frame(f"text realism of {run_dir.name}", pl.DataFrame(rows), "{:.3f}")


@eval_app.command("fidelity")
def eval_fidelity(scenario: Path = typer.Argument(..., help="a scenario with a MovieLens-grounded population"),
                  policy: Optional[list[str]] = typer.Option(None, "--policy", help="rule, hybrid or llm (repeat "
                                                             "for several; default: rule and the scenario's own)"),
                  users: Optional[int] = typer.Option(None, "--users", min=1, help="population size (default: the scenario's)"),
                  trials: int = typer.Option(3, "--trials", min=1, help="1:m trials per user"),
                  rounds: Optional[int] = typer.Option(None, "--rounds", min=0, help="rounds of the run for "
                                                       "distributional realism (0: no run; default: the scenario's)"),
                  out: Optional[Path] = typer.Option(None, "--out", help="folder for fidelity.json, report.html and "
                                                     "the run (default: runs/fidelity-NAME)")) -> None:
    """How real the simulated users are: preference alignment (1:1, 1:3, 1:9), rating error and
    distributional realism against the held-out part of the MovieLens users they are built from."""
    from simworld.config import load_scenario
    from simworld.fidelity import run_fidelity

    try:
        spec = load_scenario(scenario)
        folder = out or Path("runs") / f"fidelity-{spec.name}"
        with console.status("judging the held-out trials ..."):
            result = run_fidelity(spec, policy or None, users=users, trials_per_user=trials, rounds=rounds,
                                  out_dir=folder)
    except SimworldError as exc:
        _fail(exc)
    _print_frame(f"preference alignment ({result.users} users, accuracy and F1 per 1:m)",
                 result.alignment_table().select("policy", *[c for c in result.alignment_table().columns
                                                             if c.startswith(("accu", "f1"))]), "{:.3f}")
    _print_frame("rating prediction on held-out ratings", result.ratings_table(), "{:.3f}")
    if result.realism:
        r = result.realism
        console.print(f"realism: activity Gini {r['activity']['gini_sim']:.3f} (real {r['activity']['gini_real']:.3f}, "
                      f"KS {r['activity']['ks']:.3f}); top-20% share {r['long_tail']['top20_share_sim']:.3f} "
                      f"(real {r['long_tail']['top20_share_real']:.3f}); genre TVD {r['genres']['tvd']:.3f}; "
                      f"rating TVD {r['ratings']['tvd']:.3f}", highlight=False)
    console.print(f"report: {folder / 'report.html'}")


def _print_frame(title: str, frame, number_format: str) -> None:
    """A polars frame as a rich table: the first column is the label, numbers right-aligned."""
    grid = Table(title=title)
    for k, column in enumerate(frame.columns):
        grid.add_column(column, justify="left" if k == 0 else "right")
    for row in frame.iter_rows():
        grid.add_row(*(number_format.format(x) if isinstance(x, float) else str(x) for x in row))
    console.print(grid)


crs_app = typer.Typer(no_args_is_help=True, help="conversational recommendation: simulated seekers talk to a CRS")
app.add_typer(crs_app, name="crs")


def _run_generation(gen) -> None:
    console.print(f"CRS run [bold]{gen.run_id}[/] -> {gen.run_dir}")
    with _progress("dialogues", gen.scenario.dialogues, gen.dialogues_done, close=gen.close, interrupted=lambda: (
            f"interrupted after {gen.dialogues_done} dialogues; continue with: simworld crs resume {gen.run_dir}")
            ) as (bar, task):
        outcomes: dict[str, int] = {}

        def on_dialogue(d) -> None:
            outcomes[d.end_reason] = outcomes.get(d.end_reason, 0) + 1
            bar.update(task, advance=1, last=", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))

        gen.run(on_dialogue=on_dialogue)
    _print_crs_summary(gen.run_dir)


def _print_crs_summary(run_dir: Path) -> None:
    from simworld.crs.generation import read_crs_summary

    summary = read_crs_summary(run_dir)
    table = Table(title=f"CRS run {summary['run_id']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("status", "dialogues_done", "seeker", "crs_name", "crs_model", "wall_s", "dialogues_per_minute"):
        value = summary.get(key)
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    metrics = summary.get("metrics") or {}
    for key in ("success_rate", "turns_to_success", "recall@1", "recall@10", "recall@50", "persuasiveness", "leaks"):
        value = metrics.get(key)
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    for measure, row in (metrics.get("human_likeness") or {}).items():
        z = row.get("z")
        table.add_row(f"{measure} (z vs ReDial)", f"{row['simulated']:.3f} ({z:+.2f})" if z is not None else "-")
    console.print(table)
    if summary.get("status") == "budget_exhausted":
        err.print(f"[bold yellow]stopped:[/] {summary.get('message')}; raise llm.budget_* and run "
                  f"simworld crs resume {run_dir} to go on", highlight=False)
    console.print(f"run folder: {run_dir}")


@crs_app.command("generate")
def crs_generate(scenario: Path = typer.Argument(..., help="CRS scenario YAML file (with a `crs:` section)"),
                 dialogues: Optional[int] = typer.Option(None, "--dialogues", min=1, help="override the number of dialogues"),
                 seed: Optional[int] = typer.Option(None, "--seed", min=0, help="override the seed"),
                 out: Optional[Path] = typer.Option(None, "--out", help="folder for run folders (default: output.dir)"),
                 run_id: Optional[str] = typer.Option(None, "--run-id", help="fixed run id")) -> None:
    """Generate dialogues between simulated seekers and a CRS into a run folder."""
    from simworld.config import run_id_problem
    from simworld.crs.generation import Generation

    try:
        if run_id is not None and (problem := run_id_problem(run_id)):
            raise SimworldError(f"--run-id {problem}")
        gen = Generation.start(scenario, out_dir=out, run_id=run_id, dialogues=dialogues, seed=seed)
        _run_generation(gen)
    except SimworldError as exc:
        _fail(exc)


@crs_app.command("resume")
def crs_resume(run_dir: Path = typer.Argument(..., help="a CRS run folder")) -> None:
    """Continue a CRS generation after its last committed batch."""
    from simworld.crs.generation import Generation

    try:
        if not run_dir.is_dir():
            raise SimworldError(f"run folder not found: {run_dir}")
        gen = Generation.resume(run_dir)
        if gen.status == "finished":
            console.print(f"CRS run {gen.run_id} already has all {gen.scenario.dialogues} dialogues")
            gen.close()
            _print_crs_summary(run_dir)
            return
        console.print(f"resuming after {gen.dialogues_done} dialogues")
        _run_generation(gen)
    except SimworldError as exc:
        _fail(exc)


@crs_app.command("export")
def crs_export(run_dir: Path = typer.Argument(..., help="a CRS run folder"),
               formats: list[str] = typer.Option(["parquet", "redial", "chat", "card"], "--format",
                                                 help="parquet, redial, chat or card (repeat for several)"),
               out: Optional[Path] = typer.Option(None, "--out", help="folder for the files (default: RUN_DIR/export)"),
               chat_role: str = typer.Option("crs", "--chat-role", help="chat format: who is the assistant, crs or seeker")) -> None:
    """Export a CRS run's dialogues: Parquet, ReDial JSON lines, chat JSON lines, a data-set card."""
    from simworld.crs.dataset import export_run

    try:
        paths = export_run(run_dir, formats, out or run_dir / "export", chat_role=chat_role)
    except SimworldError as exc:
        _fail(exc)
    for path in paths:
        console.print(f"wrote {path}")


@crs_app.command("redial-stats")
def crs_redial_stats(path: Path = typer.Argument(..., help="a ReDial JSON-lines file (e.g. test_data.jsonl)")) -> None:
    """The human seekers' lexical figures in a ReDial file (the reference of the z-scores)."""
    import polars as pl

    from simworld.crs.metrics import reference_from_redial

    try:
        ref = reference_from_redial(path)
    except SimworldError as exc:
        _fail(exc)
    frame = pl.DataFrame([{"measure": m, "mean": f.mean, "sd": f.sd, "dialogues": float(f.n)}
                          for m, f in ref.figures.items()])
    _print_frame(f"human seekers in {path.name}", frame, "{:.4f}")


@app.command()
def ui(port: int = typer.Option(8501, "--port", help="port for the viewer"),
       address: str = typer.Option("127.0.0.1", "--address", help="bind address (loopback unless you mean it)")) -> None:
    """Open the Streamlit live viewer (app.py)."""
    import subprocess

    from simworld.viewer.launch import streamlit_command

    cmd = streamlit_command(address, port)
    raise typer.Exit(subprocess.call(cmd))


def main() -> None:
    app(args=_ray_alone(sys.argv[1:]))


if __name__ == "__main__":
    main()
