"""Scenario files the viewer offers, and scenarios parsed from edited or uploaded YAML text.

Text that arrives through the page (an upload, an edit) is not trusted like a file on this
machine: a recommender or stage named by a dotted path ('package.module:Class') would be
imported, and so run, while it is validated. Such scenarios are refused unless the viewer
was started with SIMWORLD_VIEWER_ALLOW_PLUGINS=1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from simworld.config import PLUGINS_OFF, Scenario, load_scenario, parse_scenario, read_yaml
from simworld.errors import ScenarioError
from simworld.viewer.data import masked_yaml, unmask


ALLOW_PLUGINS_ENV = "SIMWORLD_VIEWER_ALLOW_PLUGINS"
PLUGINS_HINT = f" (start the viewer with {ALLOW_PLUGINS_ENV}=1 to allow plug-ins in scenarios you trust)"


def plugins_allowed() -> bool:
    """Whether scenarios from the page may name code to import (off unless the environment says 1)."""
    return os.environ.get(ALLOW_PLUGINS_ENV, "").strip() == "1"


@dataclass(frozen=True)
class ScenarioFile:
    label: str  # what the picker shows
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem


def scenario_files(cwd: Path | None = None, *, crs: bool = False) -> list[ScenarioFile]:
    """scenarios/*.yaml of the working directory first, then the ones shipped with simworld: the
    simulation scenarios, or with `crs` the CRS scenarios (`simworld crs generate`)."""
    from simworld.crs.config import is_crs_scenario

    out: list[ScenarioFile] = []
    seen: set[Path] = set()
    local = (cwd or Path.cwd()) / "scenarios"
    for path in sorted(local.glob("*.yaml")) + sorted(local.glob("*.yml")):
        if is_crs_scenario(path) != crs:
            continue
        seen.add(path.resolve())
        out.append(ScenarioFile(f"scenarios/{path.name}", path))
    try:
        shipped = Path(str(resources.files("simworld.scenarios")))
    except (ModuleNotFoundError, TypeError):
        shipped = None
    if shipped is not None:
        for path in sorted(shipped.glob("*.yaml")):
            if path.resolve() not in seen and is_crs_scenario(path) == crs:
                out.append(ScenarioFile(f"{path.name} (bundled)", path))
    return out


def default_index(files: list[ScenarioFile], wanted: str | None) -> int:
    """Index of the scenario named by `wanted` (a stem, a file name or a label), else movies.yaml."""
    if not files:
        return 0
    for key in ([wanted] if wanted else []) + ["movies"]:
        for i, f in enumerate(files):
            if key in (f.name, f.path.name, f.label):
                return i
    return 0


def read_masked(path: Path) -> str:
    """A scenario file's text as the editor shows it: secrets hidden."""
    try:
        return masked_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return f"# cannot read {path.name}: {exc}\n"


def scenario_from_text(text: str, *, source: str, base_dir: Path, name: str = "scenario",
                       original_text: str | None = None, allow_plugins: bool | None = None) -> Scenario:
    """Validate YAML text (edited in the page or uploaded); raise ScenarioError with one line per problem.

    Masked secrets (shown as •••• in the editor) are restored from `original_text`. Dotted-path
    plug-ins are refused unless `allow_plugins` (default: `plugins_allowed()`)."""
    if allow_plugins is None:
        allow_plugins = plugins_allowed()
    data: Any = read_yaml(text, source, what="scenario")
    if original_text:
        try:
            original = yaml.safe_load(original_text)
        except yaml.YAMLError:
            original = None
        if isinstance(original, dict):
            data = unmask(data, original)
    data.setdefault("name", name)
    data["base_dir"] = str(Path(base_dir).resolve())
    try:
        return parse_scenario(data, source, allow_plugins=allow_plugins)
    except ScenarioError as exc:
        if allow_plugins:
            raise
        problems = [p + PLUGINS_HINT if p.endswith(PLUGINS_OFF) else p for p in exc.problems]
        raise ScenarioError(exc.source, problems) from None


def resolve_choice(file: ScenarioFile | None, edited_text: str | None, uploaded: tuple[str, bytes] | None) -> Scenario:
    """The scenario the researcher means: an upload wins, then an edited text, then the file."""
    if uploaded is not None:
        filename, raw = uploaded
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ScenarioError(filename, ["not a UTF-8 text file"]) from None
        return scenario_from_text(text, source=filename, base_dir=Path.cwd(), name=Path(filename).stem)
    if file is None:
        raise ScenarioError("scenario", ["no scenario chosen: pick a file, paste YAML or upload one"])
    if edited_text is not None and edited_text.strip() != read_masked(file.path).strip():
        return scenario_from_text(edited_text, source=f"{file.label} (edited)", base_dir=file.path.parent,
                                  name=file.name, original_text=file.path.read_text(encoding="utf-8"))
    return load_scenario(file.path)
