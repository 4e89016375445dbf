"""The dialogues as data sets: Parquet, ReDial JSON lines, chat JSON lines and a data-set card.

- Parquet (`dialogues.parquet`): one row per dialogue with a nested list of turns, typed by
  `DIALOGUE_SCHEMA` (structs, lists, strings and numbers only, so
  `datasets.load_dataset("parquet", data_files=...)` reads it as it is). The run folder keeps
  its dialogues in this same layout.
- ReDial (`redial.jsonl`): see `simworld.crs.redial`.
- Chat (`chat.jsonl`): `{"id": ..., "messages": [{"role": "system"|"user"|"assistant",
  "content": ...}]}` with titles written out, for fine-tuning: the CRS speaks as the assistant
  (`role="crs"`, default) or the seeker does (`role="seeker"`).
- Card (`README.md`): how the data set was made, its knobs, metrics and the sources' licences.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterable, Literal, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from simworld.catalog import Catalog
from simworld.crs.records import Dialogue
from simworld.crs.text import render
from simworld.formatting import cell
from simworld.recorder import atomic_write_bytes

FORMATS = ("parquet", "redial", "chat", "card")

_IDS = pa.list_(pa.int64())
TURN_TYPE = pa.struct([
    ("index", pa.int64()), ("role", pa.string()), ("text", pa.string()), ("act", pa.string()),
    ("mentions", _IDS), ("recommended", _IDS), ("ranking", _IDS), ("disclosed", pa.list_(pa.string())),
    ("accepted", pa.int64()), ("rejected", _IDS), ("satisfaction", pa.float64()), ("patience_left", pa.int64()),
    ("constraints_disclosed", pa.int64()), ("leaks", pa.int64()), ("voice", pa.string()),
    ("sender_id", pa.int64()), ("message_id", pa.int64()), ("time_offset", pa.int64()),
])
PERSONA_TYPE = pa.struct([
    ("agent_id", pa.int64()), ("name", pa.string()), ("age", pa.int64()), ("occupation", pa.string()),
    ("traits", pa.list_(pa.string())),
    ("genre_taste", pa.list_(pa.struct([("genre", pa.string()), ("weight", pa.float64())]))),
    ("activity", pa.float64()), ("diversity", pa.float64()), ("conformity", pa.float64()),
    ("curiosity", pa.float64()), ("rating_bias", pa.float64()), ("rating_noise", pa.float64()),
    ("source", pa.string()), ("notes", pa.string()), ("description", pa.string()),
])
DIALOGUE_SCHEMA = pa.schema([
    ("dialogue_id", pa.string()), ("index", pa.int64()), ("run_id", pa.string()), ("seed", pa.int64()),
    ("seeker_id", pa.int64()), ("recommender_id", pa.int64()), ("persona", PERSONA_TYPE),
    ("knobs", pa.list_(pa.struct([("name", pa.string()), ("value", pa.float64())]))),
    ("targets", _IDS), ("constraints", pa.list_(pa.struct([("kind", pa.string()), ("value", pa.string())]))),
    ("turns", pa.list_(TURN_TYPE)), ("end_reason", pa.string()), ("accepted_item", pa.int64()),
    ("persuasiveness", pa.float64()), ("persuasiveness_source", pa.string()),
    ("seeker_model", pa.string()), ("crs_name", pa.string()), ("crs_model", pa.string()),
    ("movie_mentions", pa.list_(pa.struct([("item_id", pa.int64()), ("title", pa.string())]))),
    ("questions", pa.list_(pa.struct([("item_id", pa.int64()), ("suggested", pa.int64()), ("seen", pa.int64()),
                                      ("liked", pa.int64())]))),
    ("source", pa.string()),
])


def dialogues_table(dialogues: Iterable[Dialogue]) -> pa.Table:
    return pa.Table.from_pylist([d.as_record() for d in dialogues], schema=DIALOGUE_SCHEMA)


def parquet_bytes(dialogues: Iterable[Dialogue]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(dialogues_table(dialogues), sink)
    return sink.getvalue()


def write_parquet(dialogues: Iterable[Dialogue], path: Path) -> Path:
    atomic_write_bytes(Path(path), parquet_bytes(dialogues))
    return Path(path)


def read_parquet(path: Path) -> list[Dialogue]:
    table = pq.read_table(path, schema=DIALOGUE_SCHEMA)
    return [Dialogue.from_record(rec) for rec in table.to_pylist()]


def chat_record(d: Dialogue, catalog: Catalog | None, role: Literal["crs", "seeker"] = "crs") -> dict:
    if role == "crs":
        system = "You are a conversational movie recommender. Ask what the user wants and recommend films."
    else:
        system = "You are a person looking for a film to watch, chatting with a movie recommender."
    messages = [{"role": "system", "content": system}]
    for t in d.turns:
        speaker = "assistant" if (t.role == "recommender") == (role == "crs") else "user"
        messages.append({"role": speaker, "content": render(t.text, catalog)})
    return {"id": d.dialogue_id, "messages": messages}


def write_chat(dialogues: Iterable[Dialogue], path: Path, catalog: Catalog | None,
               role: Literal["crs", "seeker"] = "crs") -> Path:
    text = "".join(json.dumps(chat_record(d, catalog, role), ensure_ascii=False) + "\n" for d in dialogues)
    atomic_write_bytes(Path(path), text.encode("utf-8"))
    return Path(path)


def card_text(summary: dict, metrics: dict, scenario_yaml: str, knobs_spec: dict[str, str] | None,
              dialogues: Sequence[Dialogue], sources: Sequence[str], files: Sequence[str]) -> str:
    """The data-set card (README.md beside the files)."""
    import numpy as np

    lines = [f"# {summary.get('run_id', 'CRS dialogues')}: simulated conversational-recommendation dialogues", ""]
    lines += [f"{len(dialogues)} dialogues between simulated seekers and a conversational recommender, generated "
              f"offline by simworld (`simworld crs generate`) from the scenario below, with seed "
              f"{summary.get('seed')}.", ""]
    words = "templates" if summary.get("seeker") == "template" else f"the LLM {summary.get('seeker_model')}"
    lines += ["## How they were generated", "",
              f"- Seekers: {summary.get('seeker')} (decisions by rule from the knobs; words by {words}); "
              "each has a hidden need (target films and the constraints that describe them) and never names a "
              f"target (leak guard: {metrics.get('leaks', 0)} sentences rewritten or dropped).",
              f"- CRS: {summary.get('crs')} ({summary.get('crs_model')}).",
              "- Dialogues end when the seeker accepts a film, gives up, or after "
              f"{summary.get('max_turns')} CRS turns.",
              "", "## Files", ""]
    lines += [f"- `{f}`" for f in files]
    lines += ["", "## Knobs", "", "| knob | scenario | drawn: mean | min | max |", "| --- | --- | --- | --- | --- |"]
    names = list(dialogues[0].knobs) if dialogues else []
    for name in names:
        values = np.array([d.knobs.get(name, np.nan) for d in dialogues], dtype=float)
        spec = (knobs_spec or {}).get(name, "")
        lines.append(f"| {name} | {spec} | {values.mean():.3f} | {values.min():.3f} | {values.max():.3f} |")
    lines += ["", "## Metrics", "", "| measure | value |", "| --- | --- |"]
    for key in ("success_rate", "target_accepted_rate", "turns", "turns_to_success", "recall@1", "recall@10",
                "recall@50", "persuasiveness", "leaks"):
        lines.append(f"| {key} | {cell(metrics.get(key))} |")
    lines.append(f"| end reasons | {', '.join(f'{k}: {v}' for k, v in (metrics.get('end_reasons') or {}).items())} |")
    human = metrics.get("human_likeness") or {}
    if human:
        lines += ["", f"Human-likeness of the seekers against {metrics.get('reference')} (z = (simulated - human "
                  "mean) / human sd; per dialogue, over the seeker's words):", "",
                  "| measure | simulated | human mean | human sd | z |", "| --- | --- | --- | --- | --- |"]
        for m, row in human.items():
            lines.append(f"| {m} | {cell(row['simulated'])} | {cell(row['human_mean'])} | {cell(row['human_sd'])} "
                         f"| {cell(row['z'])} |")
    lines += ["", "## Sources and licences", ""]
    lines += [f"- {s}" for s in sources]
    lines += ["", "## Scenario", "", "```yaml", scenario_yaml.strip(), "```", ""]
    return "\n".join(lines)
