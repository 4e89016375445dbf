"""User plug-ins: dotted paths and entry points, their errors, and the contract they can reuse."""

from __future__ import annotations

import polars as pl
import pytest

from simworld import runner
from simworld.errors import SimworldError
from simworld.recommenders.registry import ENTRY_POINT_GROUP, resolve
from simworld.recommenders.testing import RecommenderContract
from simworld.recorder import read_events
from tests.helpers import write_scenario
from tests.plugins.least_popular import LeastPopular

PLUGIN = "tests.plugins.least_popular:LeastPopular"


class TestContract_plugin(RecommenderContract):
    """The contract suite a plug-in author imports, run on a plug-in."""

    def make(self, context):
        return LeastPopular(LeastPopular.Config(), context)


def test_a_dotted_path_plugin_runs_a_scenario(tmp_path):
    path = write_scenario(tmp_path, f"""
name: plugin
seed: 2
rounds: 3
population: {{size: 30}}
recommender: {{name: "{PLUGIN}", page_size: 5, max_pages: 1}}
""")
    events = read_events(runner.run_scenario(path, out_dir=tmp_path, run_id="r"))
    pages = events.filter((pl.col("action") == "page") & (pl.col("round") == 3))
    watched = set(events.filter((pl.col("action") == "watch") & (pl.col("round") < 3))["item_id"])
    assert pages.height and not (set(pages["items"].explode()) & watched)  # the tail, not the hits


def test_an_entry_point_plugin_is_found(tmp_path, monkeypatch):
    dist = tmp_path / "least_popular_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: least-popular-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nleast_popular = {PLUGIN}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve("least_popular") is LeastPopular


@pytest.mark.parametrize("name, message", [
    ("no_such_algorithm", "unknown recommender 'no_such_algorithm': use one of"),
    ("tests.plugins.least_popular:Missing", "cannot be imported"),
    ("tests.plugins.nowhere:LeastPopular", "cannot be imported"),
    ("tests.plugins.least_popular:NotARecommender", "does not satisfy the Recommender protocol (missing update, recommend)"),
])
def test_bad_plugins_are_clear_errors(name, message):
    with pytest.raises(SimworldError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(name)
