"""Metrics of a set of dialogues: did the seekers find something, did the CRS rank the targets,
and do the seekers talk like people.

Per dialogue (`dialogue_metrics`):
- `success`: the seeker accepted a film; `target_accepted`: the film was a target;
  `turns`: CRS turns; `turns_to_success`: CRS turns until the accepted film (successes only).
- `recall@k` (k = 1, 10, 50): share of the targets that appeared in the top k of any ranked
  list the CRS gave during the dialogue.
- `persuasiveness`: 0..2, the seeker's judgement (see `Seeker.judge`).
- the seeker's lexical figures over all its tokens in the dialogue (tokens: lower-cased words,
  every film mention one token '@movie'): `mattr` (moving-average type-token ratio, window 50;
  the plain TTR when the dialogue has fewer tokens), `hdd` (HD-D with samples of 42 tokens:
  the mean, over types, of the chance the type appears in a random 42-token sample, i.e.
  sum over types of (1 - C(N-f, 42) / C(N, 42)) / 42; undefined below 42 tokens),
  `yules_k` (10^4 * (sum of f^2 - N) / N^2, over the types' frequencies f), `utterance_length`
  (mean tokens per seeker turn) and `seeker_turns`.

Over dialogues (`summarise`): the rates and means above, and for each lexical figure the
z-score of the simulated seekers' mean against the human seekers of the ReDial test split,
(mean_sim - mean_human) / sd_human, with the human figures per dialogue from `redial`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from simworld.crs.records import Dialogue
from simworld.crs.text import tokens

RECALL_KS = (1, 10, 50)
MATTR_WINDOW = 50
HDD_SAMPLE = 42
LEXICAL = ("mattr", "hdd", "yules_k", "utterance_length", "seeker_turns")


def ttr(toks: Sequence[str]) -> float:
    return len(set(toks)) / len(toks) if toks else math.nan


def mattr(toks: Sequence[str], window: int = MATTR_WINDOW) -> float:
    """Mean type-token ratio over every window of `window` consecutive tokens (Covington &
    McFall 2010); the TTR of the whole text when it is shorter than the window."""
    n = len(toks)
    if n == 0:
        return math.nan
    if n <= window:
        return ttr(toks)
    counts = Counter(toks[:window])
    total = len(counts)
    for i in range(window, n):
        out, new = toks[i - window], toks[i]
        counts[out] -= 1
        if counts[out] == 0:
            del counts[out]
        counts[new] += 1
        total += len(counts)
    return total / (n - window + 1) / window


def hdd(toks: Sequence[str], sample: int = HDD_SAMPLE) -> float:
    """HD-D (McCarthy & Jarvis 2007): sum over types of P(type in a random sample of `sample`
    tokens) / sample, with the hypergeometric P = 1 - C(N-f, s) / C(N, s). NaN below `sample`."""
    n = len(toks)
    if n < sample:
        return math.nan
    log_total = _log_comb(n, sample)
    out = 0.0
    for f in Counter(toks).values():
        miss = math.exp(_log_comb(n - f, sample) - log_total) if n - f >= sample else 0.0
        out += (1.0 - miss) / sample
    return out


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def yules_k(toks: Sequence[str]) -> float:
    """Yule's K = 10^4 * (sum over types of f^2 - N) / N^2."""
    n = len(toks)
    if n == 0:
        return math.nan
    return 1e4 * (sum(f * f for f in Counter(toks).values()) - n) / (n * n)


def lexical_profile(utterances: Sequence[str]) -> dict[str, float]:
    """The lexical figures of one speaker's utterances in one dialogue."""
    per = [tokens(u) for u in utterances]
    toks = [t for u in per for t in u]
    return {"mattr": mattr(toks), "hdd": hdd(toks), "yules_k": yules_k(toks),
            "utterance_length": float(np.mean([len(u) for u in per])) if per else math.nan,
            "seeker_turns": float(len(per))}


def recall(dialogue: Dialogue, k: int) -> float | None:
    if not dialogue.targets:
        return None
    seen: set[int] = set()
    for t in dialogue.recommender_turns:
        seen.update((t.ranking or t.recommended)[:k])
    return sum(1 for i in dialogue.targets if i in seen) / len(dialogue.targets)


def dialogue_metrics(d: Dialogue) -> dict[str, float | int | str | None]:
    crs_turns = len(d.recommender_turns)
    row: dict[str, float | int | str | None] = {
        "dialogue_id": d.dialogue_id, "index": d.index, "seeker_id": d.seeker_id, "end_reason": d.end_reason,
        "success": int(d.success), "target_accepted": int(d.accepted_item is not None
                                                          and d.accepted_item in d.targets),
        "turns": crs_turns, "turns_to_success": crs_turns if d.success else None,
        "persuasiveness": d.persuasiveness, "leaks": d.leaks,
    }
    for k in RECALL_KS:
        row[f"recall@{k}"] = recall(d, k)
    row.update(lexical_profile([t.text for t in d.seeker_turns]))
    row.update({f"knob_{k}": v for k, v in d.knobs.items()})
    return row


def metrics_frame(dialogues: Iterable[Dialogue]):
    import polars as pl

    rows = [dialogue_metrics(d) for d in dialogues]
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


@dataclass(frozen=True)
class Figure:
    mean: float
    sd: float
    n: int


@dataclass(frozen=True)
class HumanReference:
    """The human seekers' lexical figures, one value per dialogue summarised as mean, sd, n."""

    source: str
    figures: dict[str, Figure]

    def z(self, measure: str, value: float) -> float | None:
        fig = self.figures.get(measure)
        if fig is None or fig.sd == 0 or value is None or math.isnan(value):
            return None
        return (value - fig.mean) / fig.sd

    def as_dict(self) -> dict:
        return {"source": self.source, "figures": {k: asdict(v) for k, v in self.figures.items()}}


def reference_of(profiles: Sequence[dict[str, float]], source: str) -> HumanReference:
    figures = {}
    for m in LEXICAL:
        values = np.array([p[m] for p in profiles if not math.isnan(p[m])], dtype=np.float64)
        figures[m] = Figure(float(values.mean()), float(values.std(ddof=1)), int(values.size))
    return HumanReference(source, figures)


def reference_from_redial(path: str | Path) -> HumanReference:
    """The human seekers' figures, computed from a ReDial JSON-lines file."""
    from simworld.crs.redial import read_redial, redial_to_dialogue

    profiles = [lexical_profile([t.text for t in redial_to_dialogue(obj).seeker_turns])
                for obj in read_redial(path)]
    return reference_of([p for p in profiles if p["seeker_turns"] > 0], f"ReDial file {Path(path).name}")


# The human seekers of the ReDial test split (test_data.jsonl, 1,342 dialogues; Li et al. 2018,
# CC BY 4.0), computed with `reference_from_redial`; tests/test_crs_redial.py recomputes them
# from the shared file and checks these numbers.
REDIAL_TEST_SEEKERS = HumanReference(
    source="ReDial test split (Li et al., NeurIPS 2018; CC BY 4.0), 1,342 dialogues",
    figures={
        "mattr": Figure(mean=0.7602599888114175, sd=0.07480593731147966, n=1342),
        "hdd": Figure(mean=0.780763696713854, sd=0.05554560951341981, n=1013),  # dialogues of 42+ tokens
        "yules_k": Figure(mean=157.25772869451828, sd=67.13554020004882, n=1342),
        "utterance_length": Figure(mean=6.7590161148130505, sd=2.591188104394116, n=1342),
        "seeker_turns": Figure(mean=9.240685543964233, sd=3.2275448738902233, n=1342),
    },
)


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else None


def summarise(dialogues: Sequence[Dialogue], reference: HumanReference = REDIAL_TEST_SEEKERS) -> dict:
    """The data set's figures (see the module docstring)."""
    rows = [dialogue_metrics(d) for d in dialogues]
    out: dict = {"dialogues": len(rows)}
    if not rows:
        return out
    out["success_rate"] = _mean(r["success"] for r in rows)
    out["target_accepted_rate"] = _mean(r["target_accepted"] for r in rows)
    out["turns"] = _mean(r["turns"] for r in rows)
    out["turns_to_success"] = _mean(r["turns_to_success"] for r in rows)
    for k in RECALL_KS:
        out[f"recall@{k}"] = _mean(r[f"recall@{k}"] for r in rows)
    out["persuasiveness"] = _mean(r["persuasiveness"] for r in rows)
    out["leaks"] = int(sum(r["leaks"] for r in rows))
    out["end_reasons"] = dict(sorted(Counter(r["end_reason"] for r in rows).items()))
    human = {}
    for m in LEXICAL:
        sim = _mean(r[m] for r in rows)
        fig = reference.figures.get(m)
        human[m] = {"simulated": sim, "human_mean": fig.mean if fig else None, "human_sd": fig.sd if fig else None,
                    "z": reference.z(m, sim) if sim is not None else None}
    out["human_likeness"] = human
    out["reference"] = reference.source
    return out
