"""The one contract between the benchmark scripts and `benchmarks/run_all.py`: a script given
`--json PATH` writes its headline figures there as one flat JSON object (name -> number)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the headline figures to PATH as JSON (benchmarks/run_all.py reads it)")


def write_figures(path: Path | None, figures: dict[str, float | int | str | None]) -> None:
    """Write `figures` to `path` (nothing when `path` is None); NaN and inf become null."""
    if path is None:
        return
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in figures.items()}
    Path(path).write_text(json.dumps(clean, indent=2), encoding="utf-8")
