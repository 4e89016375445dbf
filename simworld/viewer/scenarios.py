"""Scenario files the viewer offers, and scenarios parsed from edited or uploaded YAML text."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from simworld.config import Scenario, load_scenario, parse_scenario
from simworld.errors import ScenarioError
from simworld.viewer.data import masked_yaml, unmask


@dataclass(frozen=True)
class ScenarioFile:
    label: str  # what the picker shows
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem


def scenario_files(cwd: Path | None = None) -> list[ScenarioFile]:
    """scenarios/*.yaml of the working directory first, then the ones shipped with simworld."""
    out: list[ScenarioFile] = []
    seen: set[Path] = set()
    local = (cwd or Path.cwd()) / "scenarios"
    for path in sorted(local.glob("*.yaml")) + sorted(local.glob("*.yml")):
        seen.add(path.resolve())
        out.append(ScenarioFile(f"scenarios/{path.name}", path))
    try:
        shipped = Path(str(resources.files("simworld.scenarios")))
    except (ModuleNotFoundError, TypeError):
        shipped = None
    if shipped is not None:
        for path in sorted(shipped.glob("*.yaml")):
            if path.resolve() not in seen:
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
                       original_text: str | None = None) -> Scenario:
    """Validate YAML text (edited in the page or uploaded); raise ScenarioError with one line per problem.

    Masked secrets (shown as •••• in the editor) are restored from `original_text`."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ScenarioError(source, [f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc})"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(source, [f"the top level must be a mapping of sections, got {type(data).__name__}"])
    if original_text:
        try:
            original = yaml.safe_load(original_text)
        except yaml.YAMLError:
            original = None
        if isinstance(original, dict):
            data = unmask(data, original)
    data.setdefault("name", name)
    data["base_dir"] = str(Path(base_dir).resolve())
    return parse_scenario(data, source)


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
