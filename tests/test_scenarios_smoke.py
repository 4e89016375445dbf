"""Every shipped scenario runs: 20 agents x 5 rounds each, end to end, into a run folder."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from simworld import runner
from simworld.build import uses_llm
from simworld.config import load_scenario, parse_scenario
from simworld.crs.config import is_crs_scenario
from simworld.llm import embedded_available
from simworld.recorder import read_events, read_metrics, read_summary
from tests.openai_server import openai_server  # noqa: F401  (fixture)

SCENARIOS = sorted(p for p in (Path(__file__).resolve().parents[1] / "scenarios").glob("*.yaml")
                   if not is_crs_scenario(p))  # CRS scenarios: tests/test_crs_generation.py


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_scenario_runs_small(path, tmp_path, openai_server):
    base = load_scenario(path)
    if base.catalog.path and not base.resolve_path(base.catalog.path).exists():
        pytest.skip(f"{path.name}: its data folder {base.catalog.path} is absent (see ../shared/data/README.md)")
    data = base.model_dump()
    data["population"]["size"] = 20
    data["rounds"] = 5
    data["base_dir"] = base.base_dir
    hosted = uses_llm(base) and not (base.llm.is_embedded and embedded_available())
    if hosted:  # the scenario's own policy mix and limits, answered by the local test server
        data["llm"].update(model="openai/test-model", api_base=openai_server().url, api_key_env=None,
                           budget_usd=None)
    scenario = parse_scenario(data, str(path))
    sim = runner.start(scenario, out_dir=tmp_path, run_id="smoke")
    sim.run()
    sim.close()
    summary = read_summary(sim.run_dir)
    assert summary["status"] == "finished" and summary["rounds_done"] == 5
    events = read_events(sim.run_dir)
    assert events.height > 0 and set(events["agent_id"].unique().to_list()) <= set(range(1, 21))
    assert read_metrics(sim.run_dir)["round"].to_list() == [1, 2, 3, 4, 5]
    assert events.filter(pl.col("action") == "watch")["rating"].is_between(0.5, 5.0).all()
    if uses_llm(base):
        assert summary["llm"]["calls"] > 0
        assert events.filter(pl.col("policy") == "fallback").height < events.filter(pl.col("policy") != "rule").height
