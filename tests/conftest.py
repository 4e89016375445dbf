"""Shared fixtures. Real data lives in ../shared/data beside the repository; tests skip without it."""

from __future__ import annotations

import os
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
