"""Loaders for the GroupLens MovieLens data sets, in their three on-disk layouts.

* ``csv``: ``movies.csv`` + ``ratings.csv`` (+ optional ``tags.csv``), with a header row;
  ml-latest-small, ml-latest, ml-20m, ml-25m and ml-32m all share it (UTF-8).
* ``100k``: ``u.item`` (pipe-separated, latin-1, 19 binary genre flags) + ``u.data``
  (tab-separated, no header).
* ``1m``: ``movies.dat`` + ``ratings.dat``, ``::``-separated, latin-1.

Ratings are read with polars (lazily, never looping in Python over rows), so ml-25m and
ml-32m load in seconds. The movie files are small and are parsed line by line, which gives
exact line numbers in error messages. Every problem a user can cause (missing folder or
file, unknown layout, malformed row) raises :class:`simworld.errors.DataError`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Literal

import polars as pl

from simworld.catalog import Catalog, Item, normalise_genre
from simworld.errors import DataError

Layout = Literal["csv", "100k", "1m"]

# (movies file, ratings file) for each layout, in detection order.
_FILES: dict[Layout, tuple[str, str]] = {
    "csv": ("movies.csv", "ratings.csv"),
    "1m": ("movies.dat", "ratings.dat"),
    "100k": ("u.item", "u.data"),
}

# ml-100k's u.item genre flags, in file order (after id, title, dates and URL).
_GENRES_100K: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)

RATING_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(), "item_id": pl.Int64(), "rating": pl.Float64(), "timestamp": pl.Int64(),
}
_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")

# "Toy Story (1995)", "Death Note (2006–2007)": the year is the last parenthesised group.
_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$")
_TRAILING_PAREN = re.compile(r"^(?P<rest>.+?)\s*\([^()]*\)\s*$")
# "Matrix, The" -> "The Matrix"; MovieLens moves leading articles of several languages.
_ARTICLE = re.compile(
    r"^(?P<rest>.+?),\s*(?P<article>The|A|An|Les|La|Le|L'|Il|Lo|Gli|Die|Der|Das|El|Los|Las|Un|Une)$"
)


def detect_layout(path: Path) -> Layout:
    """Which MovieLens layout the folder `path` holds: "csv", "100k" or "1m".

    A layout is recognised by either of its two files, so that a folder missing one of them
    fails later with a message naming the missing file rather than "unknown layout".
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"MovieLens folder not found: {path}.")
    if not path.is_dir():
        raise DataError(f"MovieLens path {path} is a file, not a folder of MovieLens files.")
    for layout, names in _FILES.items():
        if any((path / name).is_file() for name in names):
            return layout
    raise DataError(
        f"No MovieLens files found in {path}: expected movies.csv and ratings.csv (ml-latest, "
        "ml-25m, ml-32m), u.item and u.data (ml-100k), or movies.dat and ratings.dat (ml-1m)."
    )


def _data_file(path: Path, layout: Layout, which: Literal["movies", "ratings"]) -> Path:
    name = _FILES[layout][0 if which == "movies" else 1]
    file = Path(path) / name
    if not file.is_file():
        raise DataError(f"MovieLens {which} file not found: {file} (the {layout} layout needs it).")
    return file


# --------------------------------------------------------------------------- titles


def split_title(raw: str) -> tuple[str, int | None]:
    """MovieLens title -> (display title, year or None).

    "Matrix, The (1999)" -> ("The Matrix", 1999); alternative titles in trailing parentheses
    are dropped: "City of Lost Children, The (Cité des enfants perdus, La) (1995)" ->
    ("The City of Lost Children", 1995).
    """
    title = raw.strip()
    year: int | None = None
    match = _TITLE_YEAR.match(title)
    if match and match.group("title").strip():
        title, year = match.group("title").strip(), int(match.group("year"))
    # Drop trailing "(alternative title)" / "(a.k.a. ...)" groups, keeping something.
    while title.endswith(")") and (paren := _TRAILING_PAREN.match(title)):
        rest = paren.group("rest").strip()
        if rest.endswith(":") or rest.lower().endswith(": or"):  # "Birdman: Or (The ...)" is one title
            break
        title = rest
    art = _ARTICLE.match(title) if "," in title else None
    if art:
        article = art.group("article")
        sep = "" if article.endswith("'") else " "
        title = f"{article}{sep}{art.group('rest').strip()}"
    return title, year


def _genres(names: list[str]) -> tuple[str, ...]:
    """Canonical genres, unknown tags (IMAX, "(no genres listed)", "unknown") dropped, no repeats."""
    out: list[str] = []
    for name in names:
        genre = normalise_genre(name)
        if genre and genre not in out:
            out.append(genre)
    return tuple(out)


# --------------------------------------------------------------------------- items


def _iter_movies_csv(file: Path) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    with file.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["movieId", "title", "genres"]:
            raise DataError(f"{file}, line 1: expected the header movieId,title,genres, got {header!r}.")
        for rec in reader:
            if not rec:
                continue
            try:
                movie_id, title, genres = rec
                yield int(movie_id), title, _genres(genres.split("|"))
            except ValueError:
                raise DataError(
                    f"{file}, line {reader.line_num}: malformed row {rec!r} "
                    "(expected movieId,title,genres)."
                ) from None


def _iter_movies_dat(file: Path) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    with file.open(encoding="latin-1", newline="") as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("::")
            try:
                movie_id, title, genres = parts
                yield int(movie_id), title, _genres(genres.split("|"))
            except ValueError:
                raise DataError(
                    f"{file}, line {line_no}: malformed row {line!r} (expected MovieID::Title::Genres)."
                ) from None


def _iter_u_item(file: Path) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    with file.open(encoding="latin-1", newline="") as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("|")
            try:
                if len(parts) != 5 + len(_GENRES_100K):
                    raise ValueError
                movie_id, title, release = int(parts[0]), parts[1], parts[2].strip()
                flags = [int(f) for f in parts[5:]]
                if any(f not in (0, 1) for f in flags):
                    raise ValueError
            except ValueError:
                raise DataError(
                    f"{file}, line {line_no}: malformed row {line!r} (expected id|title|release "
                    f"date|video date|URL and {len(_GENRES_100K)} genre flags)."
                ) from None
            # A few ml-100k titles lack "(year)": fall back on the release date (01-Jan-1995).
            if not _TITLE_YEAR.match(title.strip()) and re.fullmatch(r"\d{2}-\w{3}-\d{4}", release):
                title = f"{title.strip()} ({release[-4:]})"
            yield movie_id, title, _genres([g for g, f in zip(_GENRES_100K, flags) if f])


def _tag_descriptions(file: Path, item_ids: set[int] | None) -> dict[int, str]:
    """movieId -> "Tagged: a, b, c" from the three most frequent tags (case-folded, ties by name)."""
    try:
        tags = pl.read_csv(file, columns=["movieId", "tag"],
                           schema_overrides={"movieId": pl.Int64, "tag": pl.String})
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{file}: cannot read the tags file ({str(exc).splitlines()[0]}).") from None
    tags = tags.drop_nulls().with_columns(pl.col("tag").str.strip_chars().str.to_lowercase())
    tags = tags.filter(pl.col("tag") != "")
    if item_ids is not None:
        tags = tags.filter(pl.col("movieId").is_in(list(item_ids)))
    top = (
        tags.group_by("movieId", "tag").len()
        .sort(["movieId", "len", "tag"], descending=[False, True, False])
        .group_by("movieId", maintain_order=True).head(3)
        .group_by("movieId", maintain_order=True).agg(pl.col("tag"))
    )
    return {mid: "Tagged: " + ", ".join(names) for mid, names in top.iter_rows()}


def load_movielens_items(path: Path, item_ids: Collection[int] | None = None) -> list[Item]:
    """The movies of a MovieLens folder as catalog Items, sorted by id.

    `item_ids` keeps only those ids. MovieLens has no plot text, so descriptions are "" unless
    a tags.csv sits beside movies.csv: then "Tagged: a, b, c" from the movie's top three tags.
    """
    path = Path(path)
    layout = detect_layout(path)
    file = _data_file(path, layout, "movies")
    parse = {"csv": _iter_movies_csv, "1m": _iter_movies_dat, "100k": _iter_u_item}[layout]
    wanted = set(item_ids) if item_ids is not None else None
    rows = [row for row in parse(file) if wanted is None or row[0] in wanted]
    descriptions: dict[int, str] = {}
    if (path / "tags.csv").is_file():
        descriptions = _tag_descriptions(path / "tags.csv", wanted)
    items: list[Item] = []
    seen: set[int] = set()
    for movie_id, raw_title, genres in sorted(rows, key=lambda r: r[0]):
        if movie_id in seen:
            raise DataError(f"{file}: movie id {movie_id} appears twice.")
        seen.add(movie_id)
        title, year = split_title(raw_title)
        items.append(Item(movie_id, title, year, genres, descriptions.get(movie_id, "")))
    return items


# --------------------------------------------------------------------------- ratings


def _scan_ratings(file: Path, layout: Layout) -> pl.LazyFrame:
    """A lazy frame with the four canonical columns; nothing is read until collect()."""
    if layout == "csv":
        with file.open(encoding="utf-8", newline="") as fh:
            header = fh.readline().strip().split(",")
        if tuple(h.strip() for h in header) != _CSV_HEADER:
            raise DataError(
                f"{file}, line 1: expected the header {','.join(_CSV_HEADER)}, got {','.join(header)!r}."
            )
        lf = pl.scan_csv(file, has_header=True, schema=dict(zip(_CSV_HEADER, RATING_SCHEMA.values())))
        return lf.rename(dict(zip(_CSV_HEADER, RATING_SCHEMA)))
    if layout == "100k":
        return pl.scan_csv(file, separator="\t", has_header=False, schema=RATING_SCHEMA)
    # ml-1m: "1::1193::5::978300760"; split on ':' and keep every other field.
    schema = {"user_id": pl.Int64(), "_1": pl.String(), "item_id": pl.Int64(), "_2": pl.String(),
              "rating": pl.Float64(), "_3": pl.String(), "timestamp": pl.Int64()}
    return pl.scan_csv(file, separator=":", has_header=False, schema=schema,
                       quote_char=None).select(list(RATING_SCHEMA))


def _check_line(line: str, layout: Layout) -> bool:
    """Whether one raw ratings line parses (used only to locate a bad row after a failure)."""
    if layout == "csv":
        parts = line.split(",")
    elif layout == "100k":
        parts = line.split("\t")
    else:
        parts = line.split("::")
    if len(parts) != 4:
        return False
    try:
        int(parts[0]), int(parts[1]), float(parts[2]), int(parts[3])
    except ValueError:
        return False
    return True


def _malformed(file: Path, layout: Layout, detail: str) -> DataError:
    """A DataError naming the first unparsable line of `file` (a slow pass, on the error path only)."""
    encoding = "utf-8" if layout == "csv" else "latin-1"
    with file.open(encoding=encoding, errors="replace", newline="") as fh:
        for line_no, line in enumerate(fh, start=1):
            if layout == "csv" and line_no == 1:
                continue
            line = line.rstrip("\r\n")
            if line.strip() and not _check_line(line, layout):
                expected = {"csv": "userId,movieId,rating,timestamp",
                            "100k": "user id, item id, rating, timestamp separated by tabs",
                            "1m": "UserID::MovieID::Rating::Timestamp"}[layout]
                return DataError(f"{file}, line {line_no}: malformed row {line!r} (expected {expected}).")
    return DataError(f"{file}: cannot read the ratings ({detail}).")


def _collect(lf: pl.LazyFrame, file: Path, layout: Layout) -> pl.DataFrame:
    try:
        df = lf.collect()
    except pl.exceptions.PolarsError as exc:
        raise _malformed(file, layout, str(exc).splitlines()[0]) from None
    if df.null_count().sum_horizontal().item():  # short rows come back with missing fields
        raise _malformed(file, layout, "missing fields")
    return df


def load_movielens_ratings(path: Path) -> pl.DataFrame:
    """All ratings of a MovieLens folder: user_id Int64, item_id Int64, rating Float64, timestamp Int64."""
    path = Path(path)
    layout = detect_layout(path)
    file = _data_file(path, layout, "ratings")
    return _collect(_scan_ratings(file, layout), file, layout)


def rating_counts(path: Path) -> pl.DataFrame:
    """Number of ratings per item (columns item_id, n), reading only the item column."""
    path = Path(path)
    layout = detect_layout(path)
    file = _data_file(path, layout, "ratings")
    lf = _scan_ratings(file, layout).select("item_id").group_by("item_id").agg(pl.len().alias("n"))
    return _collect(lf, file, layout).sort("item_id")


def load_movielens_catalog(path: Path, min_ratings: int = 0, max_items: int | None = None) -> Catalog:
    """A Catalog of the movies with at least `min_ratings` ratings, in item-id order.

    With `max_items`, only the `max_items` most-rated of those are kept (ties by lower id).
    With neither filter the ratings file is not read.
    """
    if min_ratings < 0:
        raise ValueError(f"min_ratings must be >= 0, got {min_ratings}")
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    path = Path(path)
    keep: list[int] | None = None
    if min_ratings > 0 or max_items is not None:
        counts = rating_counts(path)
        if min_ratings > 0:
            counts = counts.filter(pl.col("n") >= min_ratings)
        if max_items is not None:
            counts = counts.sort(["n", "item_id"], descending=[True, False]).head(max_items)
        keep = counts["item_id"].to_list()
    items = load_movielens_items(path, item_ids=keep)
    if not items:
        raise DataError(
            f"No MovieLens movies in {path} have at least {min_ratings} ratings; lower min_ratings."
        )
    return Catalog(tuple(items), name=f"movielens-{path.name}")
