"""Text realism scores separate a planted bad line from a good one (issue 13 §4)."""

from __future__ import annotations

from simworld.text_realism import line_flags, score_texts, sentiment


def test_a_planted_bad_line_is_flagged_and_a_good_one_is_not():
    assert line_flags("Loved it: sci-fi at its best.", 4.5) == set()
    assert line_flags("2.5 star", 3.0) == {"short", "numeric"}
    assert line_flags("stoic", 3.0) == {"short"}
    assert "contradicts" in line_flags("Boring and far too slow, a waste.", 5.0)
    assert "contradicts" in line_flags("One of the best I have seen.", 1.0)
    assert sentiment("not boring at all") > 0 > sentiment("not good, really dull")


def test_scores_over_many_lines_separate_good_from_bad_writers():
    good = [(1, "Loved it, gripping from start to finish.", 5.0), (2, "Too slow and dull for me.", 2.0),
            (3, "A lovely, moving story.", 4.0)]
    bad = [(1, "2.5 star", 5.0), (2, "2.5 star", 1.0), (3, "Boring, a waste of time.", 5.0)]
    g, b = score_texts(good), score_texts(bad)
    assert g["consistency"] == 1.0 and b["consistency"] == 0.0
    assert g["shared_across_agents"] == 0.0 and b["shared_across_agents"] == 2 / 3
    assert g["distinct_1"] > b["distinct_1"] and b["numeric"] == 2 / 3 and g["numeric"] == 0.0


def test_eval_text_on_a_run_folder(tmp_path):
    from simworld import runner
    from simworld.config import parse_scenario
    from tests.test_cli import cli

    scenario = parse_scenario({"name": "t", "seed": 2, "rounds": 2, "population": {"size": 15}, "policy": "rule"})
    sim = runner.start(scenario, out_dir=tmp_path, run_id="t")
    sim.run()
    sim.close()
    result = cli("eval", "text", str(sim.run_dir))
    assert result.returncode == 0, result.stderr
    assert "distinct_1" in result.stdout and "consistency" in result.stdout
