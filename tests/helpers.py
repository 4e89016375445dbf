"""Small helpers shared by tests (imported as `from tests.helpers import ...`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

# Wall-clock columns differ between identical runs; everything else must match exactly.
TIMING_COLUMNS = ["latency_ms"]


def comparable(events: pl.DataFrame) -> pl.DataFrame:
    return events.drop([c for c in TIMING_COLUMNS if c in events.columns]).sort(["round", "seq"])


def write_scenario(folder: Path, text: str, name: str = "scenario.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def viewer_scenario(name: str, seed: int, social: bool = False) -> str:
    """The small scenario the viewer tests run: 20 rule-driven agents over 5 rounds (with
    `social`: 30 agents with friends, chats and posts)."""
    text = f"""\
name: {name}
seed: {seed}
rounds: 5
population: {{size: {30 if social else 20}, source: synthetic}}
catalog: {{source: bundled}}
activity: {{model: constant, probability: 0.8}}
recommender: {{name: popularity, page_size: 8, max_pages: 2}}
policy: rule
"""
    return text + ("social: {graph: {degree: 5}, mix: {watch: 0.5, talk: 0.3, post: 0.2}}\n" if social else "")
