"""Loading a user's plug-in by its dotted path 'package.module:name' (code the user trusts)."""

from __future__ import annotations

import importlib
from typing import Any

from simworld.errors import SimworldError


def import_object(path: str, what: str) -> Any:
    """The object named by 'package.module:name', or a SimworldError naming `what` and why."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise SimworldError(f"{what} {path!r} must look like 'package.module:name'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SimworldError(f"{what} {path!r} cannot be imported: {exc}") from exc
