"""The viewer's pages: one module per view in `simworld.viewer.views`, found by discovery.

A view module defines `VIEW = View(key, title, render, order=...)`. Adding a page (a social
graph, a dialogue browser) is adding one module to that package: nothing else changes.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from simworld.viewer import views as _views_pkg


@dataclass(frozen=True)
class View:
    key: str  # stable id, used in widget keys and the ?view= query parameter
    title: str
    render: Callable[..., None]  # render(ctx: ViewContext) -> None
    order: int = 100
    icon: str = ""
    live: bool = True  # refresh while rounds arrive; False for pages that hold their own inputs
    standalone: bool = False  # needs no simulation run: shown beside the welcome page too (the CRS page)


@dataclass(frozen=True)
class PageContext:
    """What a standalone page gets when no simulation run is open (a ViewContext otherwise)."""

    out_dir: Path


@functools.lru_cache(maxsize=8)
def discover(package=_views_pkg) -> tuple[View, ...]:
    """Every `VIEW` in the package's modules, sorted by `order` then title."""
    found: dict[str, View] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        view = getattr(module, "VIEW", None)
        if isinstance(view, View):
            if view.key in found:
                raise ValueError(f"two viewer pages use the key {view.key!r}")
            found[view.key] = view
    return tuple(sorted(found.values(), key=lambda v: (v.order, v.title)))
