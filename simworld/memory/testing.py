"""Helpers for tests and CI: start and stop a real local `chroma run` server.

Nothing here runs at import. The server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

#: Set by CI to the URL of a chroma server it started (e.g. http://127.0.0.1:8765).
SERVER_ENV = "SIMWORLD_CHROMA_SERVER"


def chroma_cli() -> str | None:
    """The `chroma` command beside this interpreter (a venv's bin/) or on PATH, or None."""
    beside = Path(sys.executable).parent / "chroma"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("chroma")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def heartbeat(url: str, timeout: float = 1.0) -> bool:
    """Whether a chroma server answers its v2 heartbeat at `url`."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/v2/heartbeat", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


@dataclass
class ChromaServer:
    """A `chroma run` subprocess; stop it with `stop()` (by its pid)."""

    url: str
    process: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


def start_chroma_server(data_dir: Path, port: int | None = None, timeout: float = 60.0) -> ChromaServer:
    """Start `chroma run --host 127.0.0.1 --port PORT --path DATA_DIR` and wait for its heartbeat.

    Raises FileNotFoundError when the `chroma` command is missing and RuntimeError when
    the server does not come up within `timeout` seconds (its log is in the message).
    """
    cli = chroma_cli()
    if cli is None:
        raise FileNotFoundError("the `chroma` command (from the chromadb package) is not installed")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir.parent / f"chroma-server-{port}.log"
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False", CHROMA_ANONYMIZED_TELEMETRY="False")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [cli, "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(data_dir)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
    server = ChromaServer(url, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if heartbeat(url):
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"chroma server at {url} did not start: {log.read_text(errors='replace')[-2000:]}")
