"""Lazy, offline-safe access to litellm.

litellm fetches a model price map from the internet when it is imported unless
LITELLM_LOCAL_MODEL_COST_MAP is set; it also prints a banner on some errors. Every
module of simworld.llm gets litellm through `litellm()` so that importing simworld never
imports litellm (about 2 s) and litellm never reaches off the machine.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType

_lock = threading.Lock()
_module: ModuleType | None = None


def litellm() -> ModuleType:
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm as _litellm

            _litellm.suppress_debug_info = True
            _litellm.telemetry = False
            _module = _litellm
    return _module
