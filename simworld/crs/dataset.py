"""A CRS run folder as a data set: `export_run` writes the chosen formats and the card.

    simworld crs export runs/crs_movies-... --format parquet --format redial --format chat --format card
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from simworld.crs.config import load_crs_scenario
from simworld.crs.export import FORMATS, card_text, write_chat, write_parquet
from simworld.crs.generation import SCENARIO_FILE, read_crs_metrics, read_crs_summary, read_dialogues
from simworld.crs.metrics import summarise
from simworld.crs.redial import write_redial
from simworld.errors import SimworldError
from simworld.recorder import atomic_write_bytes

FILES = {"parquet": "dialogues.parquet", "redial": "redial.jsonl", "chat": "chat.jsonl", "card": "README.md"}

MOVIELENS = ("MovieLens ml-latest-small (F. Maxwell Harper and Joseph A. Konstan, 2015, \"The MovieLens "
             "Datasets: History and Context\", ACM TiiS 5(4)): research use; redistribution, including "
             "transformations, only under the same licence; no commercial use without permission.")
REDIAL = ("ReDial (Raymond Li, Samira Kahou, Hannes Schulz, Vincent Michalski, Laurent Charlin, Chris Pal, 2018, "
          "\"Towards Deep Conversational Recommendations\", NeurIPS), CC BY 4.0: only summary statistics of its "
          "test split's human seekers, as the reference of the human-likeness z-scores.")
BUNDLED = "simworld's bundled film catalog (titles, years, genres and one-line descriptions shipped with simworld)."


def export_run(run_dir: str | Path, formats: Iterable[str], out_dir: str | Path, chat_role: str = "crs") -> list[Path]:
    run_dir, out = Path(run_dir), Path(out_dir)
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise SimworldError(f"unknown export format {unknown[0]!r}: use {', '.join(FORMATS)}")
    if chat_role not in ("crs", "seeker"):
        raise SimworldError(f"--chat-role must be crs or seeker, got {chat_role!r}")
    summary = read_crs_summary(run_dir)
    dialogues = read_dialogues(run_dir)
    if not dialogues:
        raise SimworldError(f"{run_dir} holds no committed dialogues yet")
    scenario = load_crs_scenario(run_dir / SCENARIO_FILE)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "parquet" in formats:
        written.append(write_parquet(dialogues, out / FILES["parquet"]))
    if "redial" in formats:
        written.append(write_redial(dialogues, out / FILES["redial"]))
    if "chat" in formats:
        from simworld.build import build_catalog

        written.append(write_chat(dialogues, out / FILES["chat"], build_catalog(scenario), chat_role))  # type: ignore[arg-type]
    if "card" in formats:
        metrics = read_crs_metrics(run_dir) or summarise(dialogues)
        sources = [MOVIELENS if scenario.catalog.source == "movielens" or scenario.population.source == "movielens"
                   else BUNDLED, REDIAL]
        text = card_text(summary, metrics, (run_dir / SCENARIO_FILE).read_text(encoding="utf-8"),
                         scenario.seeker.knobs.summary(), dialogues, sources,
                         [FILES[f] for f in formats if f != "card"])
        path = out / FILES["card"]
        atomic_write_bytes(path, text.encode("utf-8"))
        written.append(path)
    return written


