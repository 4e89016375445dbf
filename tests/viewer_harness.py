"""Test support: serve the viewer on a free loopback port and drive it in headless Chromium
(the viewer's browser test and benchmarks/bench_viewer.py).

Uses the system's Chromium (Debian `chromium`) through Playwright for Python; never downloads a
browser. Streamlit runs as a subprocess bound to 127.0.0.1 and is stopped by its process id.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from simworld.memory.testing import free_port
from simworld.viewer.launch import streamlit_command

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    """The system Chromium (Debian package `chromium`), or None when it is not installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    default = Path("/usr/bin/chromium")
    return str(default) if default.exists() else None


@contextlib.contextmanager
def serve(cwd: Path, *, port: int | None = None, log: Path | None = None, timeout_s: float = 90.0,
          env: dict[str, str] | None = None) -> Iterator[str]:
    """`streamlit run app.py` in `cwd` (its runs/ and scenarios/ are the page's); yields the URL."""
    port = port or free_port()
    cmd = streamlit_command("127.0.0.1", port, "--server.fileWatcherType", "none",
                            "--global.developmentMode", "false")
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer on {url} within {timeout_s:.0f}s")
            time.sleep(0.25)
        yield url
    finally:
        _stop(proc)
        if log:
            out.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and any child it made
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def browser_page(width: int = 1500, height: int = 1000) -> Iterator[object]:
    """A Playwright page in headless system Chromium with a fresh profile."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError("Chromium is not installed (Debian package `chromium`)")
    profile = tempfile.mkdtemp(prefix="simworld-chromium-")
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile, executable_path=exe, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": width, "height": height}, device_scale_factor=1)
            try:
                page = ctx.pages[0] if ctx.pages else ctx.new_page()
                yield page
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# -- selectors the tests and the benchmark share -------------------------------------------------
START = ".st-key-start button"
CHART = '[data-testid="stPlotlyChart"] .main-svg'
FEED_ROW = ".st-key-feed_rows .sw-row"
STATUS = ".sw-status"


def view_selector(key: str) -> str:
    return f".st-key-view_{key}"


def click_view(page, title: str) -> None:
    """Pick a page in the view switcher by its visible title (e.g. 'Metrics')."""
    page.locator(".st-key-view button, .st-key-view label").filter(has_text=title).first.click()
