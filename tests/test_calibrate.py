"""`simworld calibrate`: the choice and activity models' constants fitted to data (issue 13 §3)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from simworld.calibrate import activity_counts, fit_activity_alpha, fit_choice, fit_pareto_alpha, page_probabilities
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
    assert {"watch_threshold", "watch_slope", "page_contrast"} <= set(rule)
    assert scenario.activity.pareto_alpha >= 0.5
