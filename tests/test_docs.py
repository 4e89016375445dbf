"""The generated docs match the code (issue 13 §7)."""

from __future__ import annotations

from pathlib import Path

from simworld.schema_doc import scenario_reference

ROOT = Path(__file__).resolve().parents[1]


def test_the_scenario_reference_is_generated_from_the_current_schema():
    committed = (ROOT / "docs" / "scenario-reference.md").read_text(encoding="utf-8")
    assert committed == scenario_reference(), \
        "docs/scenario-reference.md is stale: run `python -m simworld.schema_doc > docs/scenario-reference.md`"
    for field in ("holdout", "page_contrast", "min_ratings", "pareto_alpha"):
        assert f"`{field}`" in committed


def test_the_plugin_guide_names_files_that_exist():
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert "examples/my_plugins.py" in guide and (ROOT / "examples" / "my_plugins.py").is_file()
    for kind in ("Policy", "Recommender", "CRS", "Memory store", "Stage"):
        assert f"## {kind}" in guide
