"""What the viewer shows, read from a run folder with the recorder's readers (no Streamlit here).

Everything on the page comes from these frames or from the live Simulation, so a notebook
that calls the same readers sees the same numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from simworld import recorder
from simworld.events import SOCIAL_ACTIONS
from simworld.social import files as social_files

ACTIONS = ("page", "watch", "next_page", "leave", "search", "discover", "idle", "fallback", "reflect",
           *SOCIAL_ACTIONS)
FEED_ACTIONS = ("watch", "search", "fallback", "chat", "post", "repost")  # the feed's default filter
HIDDEN = "•••• (hidden)"
_SECRET_KEY = re.compile(r"(api[_-]?key|secret|token|passw(or)?d|credential|auth|bearer|private[_-]?key)", re.I)
_SECRET_VALUE = re.compile(r"^(sk-|sk_|pk_|rk_|hf_|ghp_|gho_|xox[abp]-|AKIA|AIza)[A-Za-z0-9_\-]{6,}")
_NOT_SECRET_KEYS = {"prompt_tokens", "completion_tokens", "max_tokens", "tokens", "token_budget", "max_output_tokens"}


# -- safety: never show a key -------------------------------------------------------------------

def is_secret_key(key: str) -> bool:
    k = str(key).lower()
    return k not in _NOT_SECRET_KEYS and not k.startswith(("max_", "min_")) and bool(_SECRET_KEY.search(k))


def mask_secrets(value: Any, key: str = "") -> Any:
    """A copy of a nested mapping with every key-like field (api_key, token, ...) hidden."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, key) for v in value]
    if isinstance(value, str) and value and (is_secret_key(key) or _SECRET_VALUE.match(value.strip())):
        return HIDDEN
    return value


def unmask(edited: Any, original: Any) -> Any:
    """Put the original secrets back where an edited copy still holds the mask."""
    if edited == HIDDEN:
        return original
    if isinstance(edited, dict) and isinstance(original, dict):
        return {k: unmask(v, original.get(k)) for k, v in edited.items()}
    if isinstance(edited, list) and isinstance(original, list):
        return [unmask(e, original[i] if i < len(original) else None) for i, e in enumerate(edited)]
    return edited


def masked_yaml(text: str) -> str:
    """The YAML text with secrets hidden (the text itself when it does not parse)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return "\n".join(_mask_line(line) for line in text.splitlines())
    if not isinstance(data, dict):
        return text
    if mask_secrets(data) == data:
        return text  # nothing to hide: keep the author's layout and comments
    return yaml.safe_dump(mask_secrets(data), sort_keys=False, allow_unicode=True)


def _mask_line(line: str) -> str:
    m = re.match(r"^(\s*-?\s*)([A-Za-z0-9_.-]+)(\s*:\s*)(\S.*)$", line)
    if m and is_secret_key(m.group(2)):
        return f"{m.group(1)}{m.group(2)}{m.group(3)}{HIDDEN}"
    return line


# -- one run folder -------------------------------------------------------------------------------

def stamp(run_dir: Path) -> tuple:
    """Changes whenever the run folder gains a round (cache key for `load_run`)."""
    out = []
    for name in ("summary.json", "metrics.parquet", "agents.parquet", "personas.parquet", "events.parquet",
                 social_files.ROUNDS):
        path = Path(run_dir) / name
        out.append(path.stat().st_mtime_ns if path.exists() else 0)
    return tuple(out)


@dataclass(frozen=True)
class RunData:
    run_dir: Path
    summary: dict[str, Any]
    events: pl.DataFrame
    metrics: pl.DataFrame
    agents: pl.DataFrame
    personas: pl.DataFrame
    scenario_yaml: str  # secrets masked
    social: dict[str, pl.DataFrame] = field(default_factory=dict)  # simworld.social.files name -> frame

    @property
    def name(self) -> str:
        return str(self.summary.get("run_id", self.run_dir.name))

    @property
    def rounds_done(self) -> int:
        return int(self.summary.get("rounds_done", 0))

    def persona_names(self) -> dict[int, str]:
        if self.personas.is_empty():
            return {}
        return dict(self.personas.select("agent_id", "name").iter_rows())


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    summary = recorder.read_summary(run_dir)
    scenario_path = run_dir / "scenario.yaml"
    text = scenario_path.read_text(encoding="utf-8") if scenario_path.exists() else ""
    social = {name: social_files.read(run_dir, name) for name in social_files.NAMES}
    return RunData(run_dir=run_dir, summary=summary, events=recorder.read_events(run_dir),
                   metrics=recorder.read_metrics(run_dir), agents=recorder.read_agents(run_dir),
                   personas=recorder.read_personas(run_dir), scenario_yaml=masked_yaml(text),
                   social={k: v for k, v in social.items() if not v.is_empty()})


# -- derived frames the views plot ------------------------------------------------------------------

def metric_columns(metrics: pl.DataFrame) -> list[str]:
    """Every numeric per-round column except the round number itself, and except series that
    say nothing (zero or empty in every round, e.g. friend_share in a run with no social side)."""
    out = []
    for c, t in metrics.schema.items():
        if c == "round" or not t.is_numeric():
            continue
        values = metrics[c].cast(pl.Float64).fill_nan(None).drop_nulls()
        if values.len() and (values != 0).any():
            out.append(c)
    return out


def token_frame(events: pl.DataFrame) -> pl.DataFrame:
    """Per round: LLM tokens and LLM decisions (empty when the run used no LLM)."""
    if events.is_empty():
        return pl.DataFrame()
    per = events.group_by("round").agg(
        pl.col("prompt_tokens").sum().alias("prompt_tokens"),
        pl.col("completion_tokens").sum().alias("completion_tokens"),
        (pl.col("action") == "fallback").sum().alias("llm_fallbacks"),
    ).sort("round")
    if per["prompt_tokens"].sum() == 0 and per["completion_tokens"].sum() == 0 and per["llm_fallbacks"].sum() == 0:
        return pl.DataFrame()
    return per


def popularity(events: pl.DataFrame, top: int = 10) -> pl.DataFrame:
    """Watches per round of the `top` most-watched items: round, item_id, watches, cumulative."""
    w = events.filter(pl.col("action") == "watch")
    if w.is_empty():
        return pl.DataFrame(schema={"round": pl.Int64, "item_id": pl.Int64, "watches": pl.UInt32,
                                    "cumulative": pl.UInt32})
    leaders = w.group_by("item_id").len().sort(["len", "item_id"], descending=[True, False]).head(top)["item_id"]
    rounds = pl.DataFrame({"round": sorted(events["round"].unique().to_list())})
    grid = rounds.join(pl.DataFrame({"item_id": leaders}), how="cross")
    counts = w.filter(pl.col("item_id").is_in(leaders.implode())).group_by("round", "item_id").len(name="watches")
    out = grid.join(counts, on=["round", "item_id"], how="left").with_columns(pl.col("watches").fill_null(0))
    return out.sort("item_id", "round").with_columns(
        pl.col("watches").cum_sum().over("item_id").alias("cumulative")).sort("round", "item_id")


def taste_map(agents: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """Agents' taste vectors of every round projected on the first two principal components.

    The axes are fitted once over all rounds together, so a point that moves between rounds
    really moved (a filter bubble shows as the cloud tightening). Returns the frame with x, y
    and the explained-variance ratio of the two axes."""
    if agents.is_empty():
        return agents.with_columns(pl.lit(0.0).alias("x"), pl.lit(0.0).alias("y")), np.zeros(2)
    x = np.asarray(agents["taste"].to_list(), dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], x.shape[1]))])
    # a stable sign per axis, so the picture does not flip between refreshes
    signs = np.sign(comps[np.arange(2), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1, signs)[:, None]
    xy = centred @ comps.T
    var = s ** 2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return agents.with_columns(pl.Series("x", xy[:, 0]), pl.Series("y", xy[:, 1])), ratio


def spread_by_round(mapped: pl.DataFrame) -> pl.DataFrame:
    """Mean distance of agents from their round's centroid in taste space, per round (lower = tighter)."""
    if mapped.is_empty():
        return pl.DataFrame()
    rows = []
    for (round_no,), part in mapped.partition_by("round", as_dict=True).items():
        x = np.asarray(part["taste"].to_list(), dtype=np.float64)
        rows.append({"round": round_no, "taste_spread": float(np.linalg.norm(x - x.mean(axis=0), axis=1).mean()),
                     "genres_dominant": part["dominant_genre"].n_unique()})
    return pl.DataFrame(rows).sort("round")


def item_titles(catalog: Any) -> dict[int, str]:
    return {item.item_id: item.label for item in catalog.items}
