"""A/B reports, RecBole export and offline evaluation, as a user meets them on the command line."""

from __future__ import annotations

import polars as pl

from simworld.compare import load_variants, summary_table
from simworld.recorder import read_events
from tests.helpers import write_scenario
from tests.test_cli import cli

AB = """
name: ab-{name}
seed: 3
rounds: 5
population: {{size: 60}}
activity: {{model: constant, probability: 0.7}}
recommender: {{name: {name}, page_size: 10, max_pages: 2}}
policy: rule
"""


def test_compare_runs_the_variants_and_writes_one_offline_html_report(tmp_path):
    a = write_scenario(tmp_path, AB.format(name="popularity"), "a.yaml")
    b = write_scenario(tmp_path, AB.format(name="mf"), "b.yaml")
    result = cli("compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert result.returncode == 0, result.stderr
    assert "genre_entropy" in result.stdout and "report:" in result.stdout
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "genre entropy" in html and "exposure gini" in html and "ab-popularity" in html and "ab-mf" in html
    assert "<script src=" not in html and "Plotly.newPlot" in html  # plotly.js inline: opens offline
    runs = sorted(p for p in (tmp_path / "cmp").iterdir() if p.is_dir())
    variants = load_variants(runs)
    table = summary_table(variants)
    # the same seeded population under two recommenders: the same agents, different exposure
    assert variants[0].seed == variants[1].seed
    ginis = table.filter(pl.col("metric") == "exposure_gini")["last"].to_list()
    assert len(ginis) == 2 and ginis[0] != ginis[1]
    # finished run folders can be compared again without running anything
    again = cli("compare", str(runs[0]), str(runs[1]), "--out", str(tmp_path / "again"))
    assert again.returncode == 0 and "running" not in again.stdout


def test_compare_with_a_missing_file_is_a_clear_error(tmp_path):
    a = write_scenario(tmp_path, AB.format(name="popularity"), "a.yaml")
    result = cli("compare", str(a), str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "nope.yaml: no such scenario file or run folder" in result.stderr


def test_export_writes_recbole_files_for_every_watch(tmp_path):
    path = write_scenario(tmp_path, AB.format(name="popularity"))
    assert cli("run", str(path), "--out", str(tmp_path), "--run-id", "r").returncode == 0
    result = cli("export", str(tmp_path / "r"), "--name", "sim")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "r" / "export"
    watches = read_events(tmp_path / "r").filter(pl.col("action") == "watch").height
    inter = (out / "sim.inter").read_text().splitlines()
    assert inter[0].split("\t") == ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    assert len(inter) == watches + 1
    assert (out / "sim.user").read_text().splitlines()[0].startswith("user_id:token")
    assert pl.read_parquet(out / "sim.parquet").height == watches


def test_eval_recommenders_prints_recall_and_ndcg_for_every_algorithm(movielens_small):
    result = cli("eval", "recommenders", "--data", str(movielens_small), "--max-users", "150",
                 "--embedder", "hashing")
    assert result.returncode == 0, result.stderr
    for name in ("random", "popularity", "itemknn", "mf", "content"):
        assert name in result.stdout
    assert "recall@10" in result.stdout and "ndcg@10" in result.stdout


def test_eval_recommenders_of_a_missing_folder_exits_2(tmp_path):
    result = cli("eval", "recommenders", "--data", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "nowhere" in result.stderr
