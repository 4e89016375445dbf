"""How the viewer is started: `simworld ui`, the tests and the benchmark build the same command."""

from __future__ import annotations

import sys
from pathlib import Path

# Also in .streamlit/config.toml; given on the command line so any working directory gets them.
# postScriptGC off: a full collection after each one-second rerun held the GIL long enough to
# starve the simulation thread; toolbarMode minimal: no "Deploy" button on a local research tool.
SERVER_FLAGS = ("--server.headless", "true", "--browser.gatherUsageStats", "false",
                "--runner.postScriptGC", "false", "--client.toolbarMode", "minimal")


def app_path() -> Path:
    """app.py of a source checkout, or the same page shipped inside the package."""
    checkout = Path(__file__).resolve().parents[2] / "app.py"
    return checkout if checkout.is_file() else Path(__file__).resolve().with_name("streamlit_app.py")


def streamlit_command(address: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(app_path()), "--server.address", address,
            "--server.port", str(port), *SERVER_FLAGS, *extra]
