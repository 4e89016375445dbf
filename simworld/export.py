"""Export a run's watch events as RecBole atomic files and as plain Parquet.

RecBole reads a data set from a folder of tab-separated "atomic files" whose header names
each field with its type (`name:token`, `name:token_seq`, `name:float`); see RecBole's
"Atomic Files" documentation. `export_recbole` writes, into `out_dir`:

* `<name>.inter`: `user_id:token  item_id:token  rating:float  timestamp:float`, one row per
  watch event (user = the agent id), in log order. RecBole orders interactions by timestamp,
  so the timestamp is the round with the event's position in that round as its fraction
  (`3.000012` = round 3, position 12); an unrated watch has an empty rating.
* `<name>.item`: `item_id:token  title:token_seq  year:token  genre:token_seq` for every
  catalog item (title words and genres are space-separated token sequences).
* `<name>.user` (only when `users` is given): `user_id:token` followed by the persona fields
  of the `users` frame: numbers as `float`, lists as `token_seq`, other values as `token`
  (or `token_seq` when a value holds spaces).
* `<name>.parquet`: the same interactions as `<name>.inter` with their natural types
  (user_id, item_id, rating, round, seq, timestamp).

To train on it: put the files in `<data_path>/<name>/` and run RecBole with `dataset=<name>`
(for implicit models such as BPR, `load_col: {inter: [user_id, item_id]}`).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from simworld.catalog import Catalog

INTER_HEADER = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
ITEM_HEADER = ("item_id:token", "title:token_seq", "year:token", "genre:token_seq")
_MAX_SEQ = 1_000_000  # positions within a round kept in the timestamp's fraction


def watch_interactions(events: pl.DataFrame) -> pl.DataFrame:
    """The watch events as user_id, item_id, rating, round, seq, timestamp (log order)."""
    watches = events.filter((pl.col("action") == "watch") & pl.col("item_id").is_not_null())
    if "seq" not in watches.columns:  # a log without positions: use the row order in the round
        watches = watches.with_columns(pl.int_range(pl.len()).over("round").alias("seq"))
    watches = watches.sort(["round", "seq"], maintain_order=True)
    if watches.height and int(watches["seq"].max()) >= _MAX_SEQ:
        raise ValueError(f"more than {_MAX_SEQ} events in one round: timestamps would collide")
    return watches.select(
        pl.col("agent_id").cast(pl.Int64).alias("user_id"),
        pl.col("item_id").cast(pl.Int64),
        pl.col("rating").cast(pl.Float64),
        pl.col("round").cast(pl.Int64),
        pl.col("seq").cast(pl.Int64),
        (pl.col("round").cast(pl.Float64) + pl.col("seq").cast(pl.Float64) / _MAX_SEQ).alias("timestamp"),
    )


def export_recbole(events: pl.DataFrame, catalog: Catalog, users: pl.DataFrame | None,
                   out_dir: Path, name: str) -> list[Path]:
    """Write `<name>.inter`, `<name>.item`, `<name>.user` (if `users`) and `<name>.parquet`.

    `events`: the run's event log (only `watch` rows are used); `users`: one row per agent
    with a `user_id` (or `agent_id`) column and persona fields. Returns the written paths.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"data set name {name!r}: use letters, digits, '_', '-' or '.'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inter = watch_interactions(events)
    paths = [out_dir / f"{name}.inter", out_dir / f"{name}.item"]
    lines = ["\t".join(INTER_HEADER)]
    for user, item, rating, round_no, seq in inter.select(
            "user_id", "item_id", "rating", "round", "seq").iter_rows():
        rating_text = "" if rating is None else _float(rating)
        lines.append(f"{user}\t{item}\t{rating_text}\t{round_no}.{seq:06d}")
    _write(paths[0], lines)

    lines = ["\t".join(ITEM_HEADER)]
    for item in catalog.items:
        year = "" if item.year is None else str(item.year)
        lines.append(f"{item.item_id}\t{_seq(item.title)}\t{year}\t{_seq(' '.join(item.genres))}")
    _write(paths[1], lines)

    if users is not None:
        paths.append(out_dir / f"{name}.user")
        _write(paths[-1], _user_lines(users))
    paths.append(out_dir / f"{name}.parquet")
    inter.write_parquet(paths[-1])
    return paths


def _user_lines(users: pl.DataFrame) -> list[str]:
    if "user_id" not in users.columns:
        if "agent_id" not in users.columns:
            raise ValueError("the users frame needs a user_id (or agent_id) column")
        users = users.rename({"agent_id": "user_id"})
    fields = ["user_id"] + [c for c in users.columns if c != "user_id"]
    users = users.select(fields)
    header, kinds = [], []
    for col in fields:
        dtype = users.schema[col]
        if col == "user_id":
            kind = "token"
        elif dtype.is_numeric() and dtype != pl.Boolean:
            kind = "float"
        elif isinstance(dtype, (pl.List, pl.Array)):
            kind = "token_seq"
        else:
            values = users[col].cast(pl.String).drop_nulls()
            kind = "token_seq" if values.str.contains(r"\s").any() else "token"
        header.append(f"{col}:{kind}")
        kinds.append(kind)
    lines = ["\t".join(header)]
    for row in users.iter_rows():
        cells = []
        for value, kind in zip(row, kinds):
            if value is None:
                cells.append("")
            elif kind == "float":
                cells.append(_float(value))
            elif isinstance(value, (list, tuple)):
                cells.append(" ".join(_token(str(v)) for v in value if v is not None))
            elif kind == "token_seq":
                cells.append(_seq(str(value)))
            else:
                cells.append(_token(str(value)))
        lines.append("\t".join(cells))
    return lines


def _float(value: float) -> str:
    value = float(value)
    return str(int(value)) + ".0" if value.is_integer() else repr(value)


def _seq(text: str) -> str:
    """Space-separated tokens: whitespace (tabs, newlines) collapsed to single spaces."""
    return " ".join(text.split())


def _token(text: str) -> str:
    """One token: whitespace replaced by '_'."""
    return "_".join(text.split())


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
