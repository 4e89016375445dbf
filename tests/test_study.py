"""`simworld compare --seeds N`: arms over paired seeds, intervals and a paired test (issue 13 §5)."""

from __future__ import annotations

import pytest

from simworld.study import difference_table, interval, paired_test, run_arms
from tests.helpers import write_scenario
from tests.test_cli import cli

ARM = """
name: {name}
seed: 11
rounds: 4
population: {{size: 40}}
activity: {{model: constant, probability: 0.8}}
recommender: {{name: {rec}, page_size: 8, max_pages: 1}}
policy: rule
"""


def test_interval_and_paired_test_match_hand_computed_values():
    mean, low, high = interval([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.3027, sd = 1, half = 4.3027 / sqrt(3)
    assert mean == 2.0 and high - mean == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5) and mean - low == high - mean
    same = paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["difference"] == 0.0 and same["p"] == 1.0
    shifted = paired_test([1.0, 2.0, 3.0], [2.0, 3.5, 3.9])
    assert shifted["difference"] == pytest.approx(3.4 / 3) and shifted["low"] < 3.4 / 3 < shifted["high"]


def test_identical_arms_show_no_difference_and_popularity_vs_mf_shows_the_gini_gap(tmp_path):
    pop = write_scenario(tmp_path, ARM.format(name="pop", rec="popularity"), "pop.yaml")
    twin = write_scenario(tmp_path, ARM.format(name="pop", rec="popularity"), "twin.yaml")
    mf = write_scenario(tmp_path, ARM.format(name="mf", rec="mf"), "mf.yaml")
    arms = run_arms([pop, twin, mf], 4, tmp_path / "runs")
    assert [a.seeds for a in arms] == [(11, 12, 13, 14)] * 3
    table = difference_table(arms)
    rows = {(r["arm"], r["metric"]): r for r in table.iter_rows(named=True)}
    for metric in ("exposure_gini", "coverage", "mean_rating", "watches"):
        twin_row = rows[("pop-2", metric)]
        assert twin_row["difference"] == 0.0 and not twin_row["significant"] and twin_row["p"] == 1.0
    gap = rows[("mf", "exposure_gini")]
    assert gap["significant"] and (gap["low"] > 0 or gap["high"] < 0), gap  # the interval excludes zero


def test_compare_seeds_on_the_command_line(tmp_path):
    a = write_scenario(tmp_path, ARM.format(name="a", rec="popularity"), "a.yaml")
    b = write_scenario(tmp_path, ARM.format(name="b", rec="random"), "b.yaml")
    result = cli("compare", str(a), str(b), "--seeds", "2", "--rounds", "2", "--out", str(tmp_path / "study"))
    assert result.returncode == 0, result.stderr
    assert "paired" in result.stdout and "exposure_gini" in result.stdout
    html = (tmp_path / "study" / "report.html").read_text()
    assert "95% interval" in html and "Plotly.newPlot" in html
    bad = cli("compare", str(a), str(tmp_path / "study" / "a-s11"), "--seeds", "2", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "run folders" in bad.stderr
