"""The fidelity report's numbers, each a small pure function (checked by hand in tests/test_fidelity.py)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


def alignment(decisions: Iterable[tuple[Sequence[bool], Sequence[bool]]]) -> dict[str, float]:
    """Accuracy, precision, recall and F1 over every film of every trial.

    Each trial is (truth, chosen): truth[k] says film k is the held-out liked one, chosen[k]
    that the policy picked it (Agent4Rec's 1:m protocol labels each shown film liked or not)."""
    tp = fp = fn = tn = 0
    for truth, chosen in decisions:
        for t, c in zip(truth, chosen):
            tp += t and c
            fp += (not t) and c
            fn += t and not c
            tn += (not t) and not c
    total = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": (tp + tn) / total if total else math.nan, "precision": precision, "recall": recall,
            "f1": f1}


def rmse_mae(predicted: Sequence[float], actual: Sequence[float]) -> tuple[float, float]:
    p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if not len(p):
        return math.nan, math.nan
    return float(np.sqrt(np.mean((p - a) ** 2))), float(np.mean(np.abs(p - a)))


def gini(values: Sequence[float]) -> float:
    """Gini coefficient of non-negative values (0: all equal, toward 1: one holds everything)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def ks_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    if not len(a) or not len(b):
        return math.nan
    grid = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b))))


def total_variation(p: dict, q: dict) -> float:
    """Half the L1 distance between two distributions given as {key: share} (shares renormalised)."""
    keys = set(p) | set(q)
    sp, sq = sum(p.values()) or 1.0, sum(q.values()) or 1.0
    return 0.5 * sum(abs(p.get(k, 0.0) / sp - q.get(k, 0.0) / sq) for k in keys)


def top_share(counts: Sequence[float], share: float = 0.2) -> float:
    """Share of all interactions that go to the most-interacted `share` of the items."""
    x = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    if not len(x) or x.sum() == 0:
        return 0.0
    return float(x[:max(1, math.ceil(share * len(x)))].sum() / x.sum())


def histogram(ratings: Sequence[float]) -> dict[str, float]:
    """Shares of each half-star rating 0.5..5 (keys as strings: they go to JSON)."""
    r = np.round(np.asarray(ratings, dtype=np.float64) * 2) / 2
    bins = np.arange(1, 11) / 2
    n = len(r) or 1
    return {f"{b:g}": float((r == b).sum() / n) for b in bins}
