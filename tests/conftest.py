"""Shared fixtures. Real data lives in ../shared/data beside the repository; tests skip without it."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

import pytest

# The README installs with --no-compile (pip would otherwise byte-compile every file of torch,
# transformers, litellm...); modules are compiled once, on first import, and cached. A shell
# that sets PYTHONDONTWRITEBYTECODE would make every test process recompile them all.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["COLUMNS"] = "200"  # rich tables printed by in-process CLI tests keep cells on one line
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _loopback(host: object) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it would need DNS


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test runs offline: a connection to anything but this machine fails loudly
    (a model download, telemetry, a hosted API). Child processes are not covered."""
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(sock: socket.socket, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise ConnectionRefusedError(f"a test tried to reach {address[0]}:{address[1]} (tests run offline)")

    monkeypatch.setattr(socket.socket, "connect", lambda s, a: (guard(s, a), connect(s, a))[1])
    monkeypatch.setattr(socket.socket, "connect_ex", lambda s, a: (guard(s, a), connect_ex(s, a))[1])
    yield


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def movielens_small() -> Path:
    path = SHARED_DATA / "movielens" / "ml-latest-small"
    if not (path / "movies.csv").is_file():
        pytest.skip("MovieLens ml-latest-small not found in ../shared/data/movielens")
    return path


@pytest.fixture(scope="session")
def redial_dir() -> Path:
    path = SHARED_DATA / "redial"
    if not (path / "test_data.jsonl").is_file():
        pytest.skip("ReDial test split not found in ../shared/data/redial")
    return path
