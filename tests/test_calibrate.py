"""`simworld calibrate`: the choice and activity models' constants fitted to data (issue 13 §3)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from simworld.calibrate import (
    activity_counts, fit_activity_alpha, fit_choice, fit_discovery_rate, fit_pareto_alpha, page_probabilities,
    subsampled_top_share,
)
from simworld.config import load_scenario
from tests.test_cli import cli


def test_calibrate_recovers_known_constants_from_data_simulated_with_them():
    rng = np.random.default_rng(5)
    truth = (0.5, 8.0, 3.0)
    pages, chosen = [], []
    for _ in range(3000):
        u = rng.uniform(0.0, 1.0, size=4)
        pages.append(u)
        chosen.append(rng.random(4) < page_probabilities(u, *truth))
    fit = fit_choice(pages, chosen, start=(0.3, 4.0, 1.0))
    assert fit.watch_threshold == pytest.approx(truth[0], abs=0.03)
    assert fit.watch_slope == pytest.approx(truth[1], rel=0.15)
    assert fit.page_contrast == pytest.approx(truth[2], rel=0.2)
    counts = (rng.pareto(1.5, size=5000) + 1.0) * 20  # Pareto type I, x_min 20, alpha 1.5
    assert fit_pareto_alpha(counts) == pytest.approx(1.5, rel=0.06)


@pytest.mark.parametrize("alpha", [0.8, 1.5, 3.0])
def test_the_activity_fit_recovers_the_tail_index_that_made_the_counts(alpha):
    quantiles = (np.arange(600) + 0.5) / 600  # users at every activity percentile
    counts = activity_counts(quantiles, alpha, 0.5, rounds=40, draws=1, seed=9)[0]  # one run's rounds acted
    assert fit_activity_alpha(quantiles, counts, 0.5, rounds=40) == pytest.approx(alpha, rel=0.15)


@pytest.mark.slow
def test_calibrate_writes_a_runnable_scenario_with_fidelity_before_and_after(movielens_small, repo_root, tmp_path):
    out = tmp_path / "calibrated.yaml"
    result = cli("calibrate", str(repo_root / "scenarios" / "movielens.yaml"), "--users", "80", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "before" in result.stdout and "after" in result.stdout and "accuracy@1:1" in result.stdout
    scenario = load_scenario(out)  # valid, and its data path still resolves from the new folder
    assert scenario.name == "movielens-calibrated" and scenario.resolve_path(scenario.catalog.path).is_dir()
    rule = yaml.safe_load(out.read_text())["policy"]["rule"]
    assert {"watch_threshold", "watch_slope", "page_contrast", "discovery_rate", "discovery_films"} <= set(rule)
    assert "discovery_rate" in out.read_text().split("name:")[0]  # the header says how it was chosen
    assert scenario.activity.pareto_alpha >= 0.5


def test_the_long_tail_target_is_taken_at_the_runs_number_of_watches():
    from simworld.fidelity.metrics import top_share

    rng = np.random.default_rng(2)
    weights = (np.arange(500) + 1.0) ** -0.8  # popular films and a long tail over 500 films
    rows = rng.choice(500, size=20000, p=weights / weights.sum())
    full = top_share(np.bincount(rows, minlength=500))
    small = subsampled_top_share(rows, 300, 500)
    assert small > full + 0.05  # fewer ratings over the same films leave more of them unwatched
    assert subsampled_top_share(rows, 10**6, 500) == pytest.approx(full)  # capped at every rating
    assert subsampled_top_share(rows, 300, 500) == small  # seeded


def test_the_discovery_fit_lengthens_the_simulated_tail_and_takes_the_nearest_rate(movielens_small, repo_root):
    scenario = load_scenario(repo_root / "scenarios" / "movielens.yaml")
    scenario = scenario.with_settings({"population.size": 60, "catalog.path": str(movielens_small),
                                       "catalog.min_ratings": 40})  # a few hundred films: a few hundred watches suffice
    fit = fit_discovery_rate(scenario, grid=((0.0, 3), (0.5, 3), (1.0, 3), (1.0, 6)), rounds=5)
    sim = {key: share for key, (share, _) in fit.shares.items()}
    assert sim[(1.0, 6)] < sim[(1.0, 3)] < sim[(0.0, 3)] - 0.03  # films found outside the platform spread the watches
    gaps = {key: abs(s - t) for key, (s, t) in fit.shares.items()}
    best = (fit.discovery_rate, fit.discovery_films)
    assert gaps[best] == min(gaps.values()) and fit.target == fit.shares[best][1]
    assert 0.3 < fit.target < 0.95  # the training ratings' share, at the run's number of watches
