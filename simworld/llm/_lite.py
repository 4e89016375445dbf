"""Lazy, offline-safe access to litellm.

litellm fetches a model price map from the internet when it is imported unless
LITELLM_LOCAL_MODEL_COST_MAP is set, and prints a banner on some errors. Every module of
simworld.llm gets litellm through `litellm()`, so importing simworld never imports litellm
(about 2 s) and litellm never reaches off the machine.
"""

from __future__ import annotations

import functools
import os
from types import ModuleType


@functools.cache
def litellm() -> ModuleType:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as module

    module.suppress_debug_info = True
    module.telemetry = False
    return module
