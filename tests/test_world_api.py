"""The world as Mesa users and researchers drive it: reproducible across processes, persona
edits through Simulation, and Mesa's own batch_run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mesa
import numpy as np
import polars as pl

from simworld import runner
from simworld.recorder import read_events
from simworld.world import SimWorld
from tests.helpers import comparable, write_scenario

SCENARIO = """
name: api
seed: 4
rounds: {rounds}
population: {{size: 30}}
activity: {{model: constant, probability: 0.9}}
recommender: {{name: {recommender}, page_size: 6, max_pages: 2}}
policy: rule
"""

ROOT = Path(__file__).resolve().parents[1]


def scenario(tmp_path: Path, rounds: int = 4, recommender: str = "popularity") -> Path:
    return write_scenario(tmp_path, SCENARIO.format(rounds=rounds, recommender=recommender),
                          f"api-{rounds}-{recommender}.yaml")


def test_two_processes_with_different_hash_seeds_give_identical_events(tmp_path):
    path = scenario(tmp_path)
    folders = []
    for hash_seed, run_id in (("0", "first"), ("4242", "second")):
        code = (f"from simworld import runner; print(runner.run_scenario({str(path)!r}, "
                f"out_dir={str(tmp_path / 'runs')!r}, run_id={run_id!r}))")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed})
        assert out.returncode == 0, out.stderr
        folders.append(Path(out.stdout.strip().splitlines()[-1]))
    a, b = (comparable(read_events(f)).drop("run_id") for f in folders)
    assert a.height > 50 and a.equals(b)


def _watches_by(run_dir: Path, agent_id: int, after_round: int) -> list[int]:
    events = read_events(run_dir)
    return events.filter((pl.col("agent_id") == agent_id) & (pl.col("action") == "watch")
                         & (pl.col("round") > after_round))["item_id"].to_list()


def test_persona_edit_through_simulation_changes_later_choices(tmp_path):
    path = scenario(tmp_path, rounds=6)
    plain = runner.run_scenario(path, out_dir=tmp_path / "plain", run_id="r")
    sim = runner.start(path, out_dir=tmp_path / "edited", run_id="r")
    try:
        sim.step()
        sim.step()
        agent = sim.world.users[5]
        genres = sim.world.catalog.genres
        least = genres[int(np.argmin(agent.state.taste))]  # the genre the agent cares least about
        sim.edit_persona(5, genre_taste={least: 1.0})
        assert genres[int(np.argmax(agent.state.taste))] == least  # the taste the choice model uses moved
        sim.run()
    finally:
        sim.close()
    before, after = _watches_by(plain, 5, 2), _watches_by(sim.run_dir, 5, 2)
    assert before != after
    catalog = sim.world.catalog
    share = sum(least in catalog.get(i).genres for i in after) / max(1, len(after))
    share_before = sum(least in catalog.get(i).genres for i in before) / max(1, len(before))
    assert share > share_before
    # the edit is recorded, and other agents' rounds before the edit are untouched
    assert pl.read_parquet(sim.run_dir / "personas.parquet").filter(pl.col("agent_id") == 5)["top_genres"][0] \
        .startswith(least)
    early = lambda d: comparable(read_events(d).filter(pl.col("round") <= 2))  # noqa: E731
    assert early(plain).equals(early(sim.run_dir))


def test_mesa_batch_run_sweeps_a_scenario(tmp_path):
    path = scenario(tmp_path, rounds=3)
    results = mesa.batch_run(SimWorld, parameters={"scenario": str(path), "seed": [1, 2],
                                                   "recommender.name": ["popularity", "random"]},
                             iterations=1, max_steps=10, number_processes=1, display_progress=False)
    frame = pl.DataFrame(results)
    assert frame.height == 4
    assert set(frame["recommender.name"]) == {"popularity", "random"} and set(frame["seed"]) == {1, 2}
    assert set(frame["round"]) == {3} and set(frame["Step"]) == {2}  # ran to the scenario's end
    assert (frame["active"] > 0).all() and (frame["watches"] > 0).all()


def test_mesa_agentset_holds_the_users(tmp_path):
    world = SimWorld(scenario(tmp_path))
    try:
        ids = [a.unique_id for a in world.agents]
        assert ids == sorted(ids) == list(world.users) and len(ids) == 30
        world.step()
        assert world.steps == world.round == 1 and world.running
        assert world.datacollector.get_model_vars_dataframe()["round"].tolist() == [1]
    finally:
        world.close()
