"""A CRS generation end to end: the run folder, determinism, resume after SIGKILL, the CLI, the
exports, the shipped scenario, MovieLens-grounded seekers, and the LLM variants against a real
OpenAI-protocol server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from simworld.crs.config import load_crs_scenario
from simworld.crs.export import DIALOGUE_SCHEMA, read_parquet
from simworld.crs.generation import Generation, generate, read_crs_summary, read_dialogues
from simworld.crs.records import END_REASONS
from simworld.llm import read_ledger
from tests.helpers import write_scenario
from tests.openai_server import openai_server  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]

SMALL = """
name: small
seed: {seed}
dialogues: {n}
population: {{size: 15}}
seeker:
  knobs:
    disclosure: {{dist: uniform, low: 0.5, high: 1.5}}
    patience: {{dist: choice, values: [3, 5, 8]}}
crs: {{kind: retrieval, recommender: {{name: {rec}}}}}
generation: {{batch_size: {batch}}}
"""


def scenario(tmp_path, seed=5, n=24, batch=5, rec="popularity", name="small.yaml") -> Path:
    return write_scenario(tmp_path, SMALL.format(seed=seed, n=n, batch=batch, rec=rec), name)


def records(dialogues) -> list[dict]:
    return [{k: v for k, v in d.as_record().items() if k != "run_id"} for d in dialogues]


def test_the_run_folder_holds_everything(tmp_path):
    run_dir = generate(scenario(tmp_path), out_dir=tmp_path / "runs", run_id="r")
    names = {p.name for p in run_dir.iterdir()}
    assert {"crs_scenario.yaml", "crs_summary.json", "dialogues.parquet", "dialogue_metrics.parquet",
            "crs_metrics.json"} <= names
    assert "dialogues" not in names and "summary.json" not in names  # batches folded; not a simulation run
    summary = read_crs_summary(run_dir)
    assert summary["status"] == "finished" and summary["dialogues_done"] == 24 and summary["batches_done"] == 5
    dialogues = read_dialogues(run_dir)
    assert [d.index for d in dialogues] == list(range(24))
    for d in dialogues:
        assert d.end_reason in END_REASONS and d.targets and d.constraints
        assert d.turns[0].role == "seeker" and d.turns[-1].role == "seeker"
        assert d.crs_name == "retrieval" and d.crs_model == "popularity" and d.seeker_model == "template"
        for t in d.recommender_turns:
            assert len(t.ranking) <= 50 and set(t.recommended) <= set(t.ranking)
        for t in d.seeker_turns:
            assert t.patience_left is not None and 0 <= t.satisfaction <= 1
    metrics = summary["metrics"]
    assert 0 <= metrics["success_rate"] <= 1 and set(metrics["human_likeness"]) == {
        "mattr", "hdd", "yules_k", "utterance_length", "seeker_turns"}
    assert load_crs_scenario(run_dir / "crs_scenario.yaml").dialogues == 24


def test_same_seed_same_dialogues_whatever_the_batch_size(tmp_path):
    a = read_dialogues(generate(scenario(tmp_path), out_dir=tmp_path / "a", run_id="r"))
    b = read_dialogues(generate(scenario(tmp_path, batch=7, name="b.yaml"), out_dir=tmp_path / "b", run_id="r"))
    c = read_dialogues(generate(scenario(tmp_path, seed=6, name="c.yaml"), out_dir=tmp_path / "c", run_id="r"))
    assert records(a) == records(b)
    assert records(a) != records(c)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "simworld.cli", *args]


def test_a_killed_generation_resumes_without_lost_or_duplicated_dialogues(tmp_path):
    path = scenario(tmp_path, n=300, batch=10)
    reference = read_dialogues(generate(path, out_dir=tmp_path / "ref", run_id="r"))
    out = tmp_path / "crash"
    proc = subprocess.Popen(_cli("crs", "generate", str(path), "--out", str(out), "--run-id", "r"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    batches = out / "r" / "dialogues"
    try:
        deadline = time.time() + 600  # a cold interpreter on a loaded 2-core machine is slow to start
        while len(list(batches.glob("batch-*.parquet"))) < 2:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "ended early"
            assert time.time() < deadline, "no batch committed in time"
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    committed = len(list(batches.glob("batch-*.parquet")))
    assert 2 <= committed < 30, "the kill must land mid-run"
    done = subprocess.run(_cli("crs", "resume", str(out / "r")), capture_output=True, text=True,
                          env=dict(os.environ, COLUMNS="200"))
    assert done.returncode == 0, done.stderr
    assert "resuming after" in done.stdout
    resumed = read_dialogues(out / "r")
    assert [d.index for d in resumed] == list(range(300))  # none lost, none twice
    assert records(resumed) == records(reference)
    assert read_crs_summary(out / "r")["status"] == "finished"


def cli(*args: str):
    from typer.testing import CliRunner

    from simworld.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_generate_and_export_every_format(tmp_path):
    path = scenario(tmp_path, n=10)
    result = cli("crs", "generate", str(path), "--out", str(tmp_path / "runs"), "--run-id", "c", "--dialogues", "8")
    assert result.exit_code == 0, result.stderr
    assert "success_rate" in result.stdout and "z vs ReDial" in result.stdout
    run_dir = tmp_path / "runs" / "c"
    assert read_crs_summary(run_dir)["dialogues_done"] == 8  # --dialogues overrides the file
    result = cli("crs", "export", str(run_dir), "--format", "parquet", "--format", "chat", "--format", "card",
                 "--format", "redial")
    assert result.exit_code == 0, result.stderr
    export = run_dir / "export"
    assert {p.name for p in export.iterdir()} == {"dialogues.parquet", "chat.jsonl", "redial.jsonl", "README.md"}
    chat = [json.loads(line) for line in (export / "chat.jsonl").read_text().splitlines()]
    assert len(chat) == 8 and chat[0]["messages"][0]["role"] == "system"
    assert {m["role"] for c in chat for m in c["messages"][1:]} == {"user", "assistant"}
    assert not any("@" in m["content"] and any(ch.isdigit() for ch in m["content"].split("@")[1][:1])
                   for c in chat for m in c["messages"])  # titles written out, no @ids
    card = (export / "README.md").read_text()
    for part in ("## Knobs", "## Metrics", "recall@10", "## Sources and licences", "CC BY 4.0", "patience",
                 "choice values="):
        assert part in card, part


def test_cli_user_errors_exit_2_with_one_message(tmp_path):
    bad = write_scenario(tmp_path, "crs: {kind: retrieval}\ndialogues: 0\nseeker: {knobs: {patience: 99}}\n",
                         "bad.yaml")
    result = cli("crs", "generate", str(bad), "--out", str(tmp_path / "runs"))
    assert result.exit_code == 2
    assert "dialogues: must be > 0, got 0" in result.stderr and "seeker.knobs.patience" in result.stderr
    assert "Traceback" not in result.stderr
    sim = write_scenario(tmp_path, "rounds: 3\npopulation: {size: 4}\n", "sim.yaml")
    result = cli("crs", "generate", str(sim))
    assert result.exit_code == 2 and "simulation scenario" in result.stderr and "simworld run" in result.stderr
    good = scenario(tmp_path, n=3)
    assert cli("crs", "generate", str(good), "--out", str(tmp_path / "runs"), "--run-id", "x").exit_code == 0
    again = cli("crs", "generate", str(good), "--out", str(tmp_path / "runs"), "--run-id", "x")
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert cli("crs", "generate", str(good), "--run-id", "../up").exit_code == 2
    result = cli("crs", "export", str(tmp_path / "runs" / "x"), "--format", "xml")
    assert result.exit_code == 2 and "unknown export format 'xml'" in result.stderr
    result = cli("crs", "export", str(tmp_path))
    assert result.exit_code == 2 and "not a CRS run folder" in result.stderr
    assert cli("crs", "resume", str(tmp_path / "nope")).exit_code == 2


def test_schema_documents_every_knob():
    result = cli("schema", "--crs")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    knobs = schema["$defs"]["KnobsSpec"]["properties"]
    assert set(knobs) == {"cooperativeness", "disclosure", "patience", "verbosity", "leniency", "frustration",
                          "ambiguity", "lowercase", "typos", "chit_chat"}
    assert all("description" in k and "distribution" in k["description"] for k in knobs.values())


def test_the_parquet_export_loads_against_its_schema(tmp_path):
    run_dir = generate(scenario(tmp_path, n=6), out_dir=tmp_path / "runs", run_id="p")
    table = pq.read_table(run_dir / "dialogues.parquet")
    assert table.schema.equals(DIALOGUE_SCHEMA)
    assert table.num_rows == 6
    turns = table.column("turns").to_pylist()[0]
    assert {"role", "text", "mentions", "recommended", "ranking", "satisfaction", "patience_left"} <= set(turns[0])
    # only the types `datasets` maps to Features (Value, Sequence/list, struct): no maps, unions, dictionaries

    def plain(t: pa.DataType) -> bool:
        if pa.types.is_struct(t):
            return all(plain(t.field(i).type) for i in range(t.num_fields))
        if pa.types.is_list(t):
            return plain(t.value_type)
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t) or pa.types.is_boolean(t)

    assert all(plain(f.type) for f in table.schema)
    dialogues = read_parquet(run_dir / "dialogues.parquet")
    assert records(dialogues) == records(read_dialogues(run_dir))
    persona = table.column("persona").to_pylist()[0]
    assert persona["name"] and persona["genre_taste"] and "description" in persona


def test_the_shipped_crs_scenario_runs_small(tmp_path):
    base = load_crs_scenario(REPO / "scenarios" / "crs_movies.yaml")
    assert base.crs.kind == "retrieval" and base.seeker.kind == "template" and not base.uses_llm
    run_dir = generate(REPO / "scenarios" / "crs_movies.yaml", out_dir=tmp_path, run_id="s", dialogues=30)
    summary = read_crs_summary(run_dir)
    assert summary["status"] == "finished" and summary["dialogues_done"] == 30
    assert summary["metrics"]["leaks"] == 0 and summary["metrics"]["success_rate"] > 0.3


def test_movielens_grounded_seekers_want_films_they_rated_well(movielens_small, tmp_path):
    text = f"""
name: ml
seed: 2
dialogues: 20
catalog: {{source: movielens, path: {movielens_small}, max_items: 800}}
population: {{size: 20, source: movielens}}
crs: {{kind: retrieval, recommender: {{name: itemknn}}}}
"""
    gen = Generation.start(write_scenario(tmp_path, text), out_dir=tmp_path / "runs", run_id="m")
    history = gen.parts.history
    try:
        gen.run()
    finally:
        gen.close()
    from simworld.movielens import load_movielens_ratings

    ratings = load_movielens_ratings(movielens_small)
    dialogues = read_dialogues(gen.run_dir)
    grounded = 0
    for d in dialogues:
        source_user = int(d.persona["source"].split(":")[1])
        liked = set(ratings.filter((ratings["user_id"] == source_user) & (ratings["rating"] >= 4.0))["item_id"])
        if len(liked & set(gen.parts.catalog.ids.tolist())) >= 2:  # else: films it has not seen, as synthetic
            assert set(d.targets) <= liked  # a real user's well-rated film
            grounded += 1
        seen = set(history.filter(history["user_id"] == d.seeker_id)["item_id"])
        assert not set(d.targets) & seen  # held out of what the CRS's recommender learned
    assert grounded >= 15
    assert read_crs_summary(gen.run_dir)["metrics"]["recall@50"] is not None


LLM_SCENARIO = """
name: llm
seed: 4
dialogues: 6
population: {{size: 6}}
seeker: {{kind: llm, judge: llm}}
crs: {{kind: llm, embedder: hashing, candidates: 8}}
dialogue: {{max_turns: 4}}
generation: {{batch_size: 3}}
llm:
  model: openai/test-model
  api_base: {url}
  retry_base_s: 0.01
  timeout_s: 10
  cache_dir: {cache}
"""


def recommending_answer(body: dict) -> str:
    """The test server's answer, except that the LLM CRS recommends its first candidate."""
    from tests.openai_server import default_answer, ids_in_prompt, prompt_text

    text = prompt_text(body)
    if "Candidates:" in text:
        ids = ids_in_prompt(text)
        return json.dumps({"act": "recommend", "message": f"You will love [{ids[0]}].", "item_ids": ids[:1]})
    return default_answer(body)


def test_llm_seekers_and_the_llm_crs_through_a_real_server_are_cached_for_replay(openai_server, tmp_path):
    server = openai_server(answer=recommending_answer)
    text = LLM_SCENARIO.format(url=server.url, cache=tmp_path / "cache")
    first = generate(write_scenario(tmp_path, text), out_dir=tmp_path / "runs", run_id="a")
    calls = server.count
    assert calls > 0
    ledger = read_ledger(first)
    assert ledger.height == calls and set(ledger["purpose"]) == {"crs_seeker", "crs_judge", "crs_recommender"}
    assert set(ledger["round"]) == {1, 2}  # one ledger round per committed batch
    dialogues = read_dialogues(first)
    assert {d.seeker_model for d in dialogues} == {"openai/test-model"}
    assert dialogues[0].crs_model == "openai/test-model"
    assert {t.voice for d in dialogues for t in d.seeker_turns} <= {"llm", "llm+template", "template-fallback"}
    assert {d.persuasiveness_source for d in dialogues} == {"llm"}
    assert all(t.recommended for d in dialogues for t in d.recommender_turns)
    second = generate(write_scenario(tmp_path, text), out_dir=tmp_path / "runs", run_id="b")
    assert server.count == calls  # the response cache answered everything
    assert records(read_dialogues(second)) == records(dialogues)
    summary = read_crs_summary(second)
    assert summary["llm"]["cache_hits"] == summary["llm"]["calls"]


def test_an_llm_budget_stops_the_generation_between_batches_and_resume_goes_on(openai_server, tmp_path):
    server = openai_server()
    text = LLM_SCENARIO.format(url=server.url, cache=tmp_path / "cache") + "  budget_tokens: 400\n"
    gen = Generation.start(write_scenario(tmp_path, text), out_dir=tmp_path / "runs", run_id="b")
    try:
        gen.run()
    finally:
        gen.close()
    summary = read_crs_summary(gen.run_dir)
    assert summary["status"] == "budget_exhausted" and summary["dialogues_done"] == 3
    data = yaml.safe_load((gen.run_dir / "crs_scenario.yaml").read_text())
    data["llm"]["budget_tokens"] = None
    (gen.run_dir / "crs_scenario.yaml").write_text(yaml.safe_dump(data))
    again = Generation.resume(gen.run_dir)
    try:
        again.run()
    finally:
        again.close()
    assert [d.index for d in read_dialogues(gen.run_dir)] == list(range(6))


@pytest.mark.parametrize("part", ["seeker", "crs"])
def test_the_embedded_model_missing_is_one_clear_error(tmp_path, monkeypatch, part):
    import simworld.llm as llm

    monkeypatch.setattr(llm, "embedded_available", lambda name="smollm2": False)
    text = ("crs: {kind: retrieval}\nseeker: {kind: llm}\n" if part == "seeker"
            else "crs: {kind: llm, embedder: hashing}\n")
    result = cli("crs", "generate", str(write_scenario(tmp_path, text)), "--out", str(tmp_path / "runs"),
                 "--run-id", "e")
    assert result.exit_code == 2 and "embedded offline model" in result.stderr
    assert not (tmp_path / "runs" / "e").exists()


def test_validate_knows_a_crs_scenario(tmp_path):
    result = cli("validate", str(REPO / "scenarios" / "crs_movies.yaml"))
    assert result.exit_code == 0 and "valid CRS scenario (200 dialogues" in result.stdout
    bad = write_scenario(tmp_path, "crs: {kind: telepathy}\n", "bad.yaml")
    result = cli("validate", str(bad))
    assert result.exit_code == 2 and "crs: " in result.stderr and "retrieval" in result.stderr
