"""The OpenAI-protocol test server (tests/openai_server.py) as a benchmark's model endpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1] / "tests" / "openai_server.py"


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    """Start the server with `latency` seconds per answer; (its process, its /v1 URL)."""
    proc = subprocess.Popen([sys.executable, str(SERVER), "--latency", str(latency)],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL,  # a client closing kept-alive connections at exit is no news
                            text=True)
    line = proc.stdout.readline().split()  # "PORT <n>"
    if len(line) != 2 or line[0] != "PORT":
        proc.kill()
        raise SystemExit("the test server did not start")
    return proc, f"http://127.0.0.1:{line[1]}/v1"
