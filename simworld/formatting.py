"""How a figure reads in a table cell (the viewer's tables, the CRS data-set card)."""

from __future__ import annotations


def cell(value) -> str:
    """A dash for nothing, three decimals for a float, the value itself otherwise."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
