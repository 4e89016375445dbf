"""The scenario reference (docs/scenario-reference.md), generated from the JSON Schema.

    python -m simworld.schema_doc > docs/scenario-reference.md

tests/test_docs.py fails when the committed file differs from what this prints, so the
reference cannot fall behind the schema.
"""

from __future__ import annotations

import json
from typing import Any

from simworld.config import scenario_json_schema


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        return f"[{prop['$ref'].split('/')[-1]}](#{prop['$ref'].split('/')[-1].lower()})"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "anyOf" in prop:
        return " or ".join(_type(p, defs) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list of {_type(prop.get('items', {}), defs)}"
    return prop.get("type", "any")


def _bounds(prop: dict[str, Any]) -> str:
    parts = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        for p in [prop, *prop.get("anyOf", [])]:
            if key in p:
                parts.append(f"{sign} {p[key]:g}" if isinstance(p[key], float) else f"{sign} {p[key]}")
    return ", ".join(parts)


def _section(title: str, schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    lines = [f"## {title}", ""]
    if schema.get("description"):
        lines += [" ".join(schema["description"].split()), ""]
    lines += ["| field | type | default | bounds | description |", "|---|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        default = json.dumps(prop["default"]) if "default" in prop else ("required" if name in
                                                                          schema.get("required", []) else "")
        desc = " ".join(prop.get("description", "").split()).replace("|", "\\|")
        lines.append(f"| `{name}` | {_type(prop, defs)} | {default} | {_bounds(prop)} | {desc} |")
    return lines + [""]


def scenario_reference() -> str:
    schema = scenario_json_schema()
    defs = schema.get("$defs", {})
    lines = ["# Scenario reference", "",
             "Every field of a scenario YAML file, generated from the JSON Schema (`simworld schema`) by",
             "`python -m simworld.schema_doc`; do not edit by hand. Sections link to their sub-sections.", ""]
    lines += _section("Scenario (top level)", schema, defs)
    for name in sorted(defs):
        lines += _section(name, defs[name], defs)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(scenario_reference(), end="")
