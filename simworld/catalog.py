"""The item catalog: films with genres and one-line descriptions, plus a small text search."""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:
    import polars as pl

from simworld.errors import DataError

# MovieLens' genre vocabulary, in its own order; other spellings are mapped onto it.
GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
_GENRE_ALIASES = {"children's": "Children", "sci fi": "Sci-Fi", "science fiction": "Sci-Fi",
                  "film noir": "Film-Noir", "noir": "Film-Noir", "family": "Children"}
_CANONICAL = {g.lower(): g for g in GENRES}


def normalise_genre(name: str) -> str | None:
    """Canonical MovieLens genre for `name`, or None for tags outside the vocabulary (IMAX...)."""
    key = name.strip().lower()
    return _CANONICAL.get(key) or _GENRE_ALIASES.get(key)


@dataclass(frozen=True, slots=True)
class Item:
    item_id: int
    title: str
    year: int | None
    genres: tuple[str, ...]
    description: str = ""

    @property
    def label(self) -> str:
        year = f" ({self.year})" if self.year else ""
        return f"{self.title}{year}"

    @property
    def text(self) -> str:
        """What embedders and prompts see: title, year, genres and the one-liner."""
        genres = ", ".join(self.genres) or "no genre"
        desc = f": {self.description}" if self.description else ""
        return f"{self.label} [{genres}]{desc}"


@dataclass(frozen=True)
class Catalog:
    items: tuple[Item, ...]
    name: str = "catalog"
    _index: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.items:
            raise DataError(f"{self.name}: the catalog holds no items")
        index: dict[int, int] = {}
        for row, item in enumerate(self.items):
            if item.item_id in index:
                raise DataError(f"{self.name}: item id {item.item_id} appears twice")
            index[item.item_id] = row
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: int) -> bool:
        return item_id in self._index

    def get(self, item_id: int) -> Item:
        return self.items[self._index[item_id]]

    def row(self, item_id: int) -> int:
        return self._index[item_id]

    def rows(self, item_ids: Iterable[int]) -> np.ndarray:
        return np.fromiter((self._index[i] for i in item_ids), dtype=np.int64)

    @cached_property
    def ids(self) -> np.ndarray:
        return np.array([item.item_id for item in self.items], dtype=np.int64)

    @cached_property
    def genres(self) -> tuple[str, ...]:
        present = {g for item in self.items for g in item.genres}
        return tuple(g for g in GENRES if g in present)

    @cached_property
    def genre_matrix(self) -> np.ndarray:
        """(items, genres) float32, each row L2-normalised (zero rows for genre-less items)."""
        col = {g: j for j, g in enumerate(self.genres)}
        m = np.zeros((len(self.items), len(self.genres)), dtype=np.float32)
        for row, item in enumerate(self.items):
            for g in item.genres:
                m[row, col[g]] = 1.0
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        return m / np.where(norms == 0, 1.0, norms)

    @cached_property
    def genre_pairs(self) -> "pl.DataFrame":
        """One row per (item_id, genre): for joins in metrics and exports."""
        import polars as pl

        pairs = [(item.item_id, g) for item in self.items for g in item.genres]
        return pl.DataFrame(pairs, schema={"item_id": pl.Int64, "genre": pl.String}, orient="row")

    @cached_property
    def _search_index(self) -> tuple[dict[str, list[tuple[int, float]]], dict[str, float]]:
        postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for row, item in enumerate(self.items):
            weights: dict[str, float] = defaultdict(float)
            for tok in _tokens(item.title):
                weights[tok] += 3.0  # a word of the title counts more than one of the blurb
            for tok in _tokens(" ".join(item.genres)):
                weights[tok] += 2.0
            for tok in _tokens(item.description):
                weights[tok] += 1.0
            for tok, w in weights.items():
                postings[tok].append((row, w))
        n = len(self.items)
        idf = {tok: math.log(1 + n / len(rows)) for tok, rows in postings.items()}
        return dict(postings), idf

    def search(self, query: str, k: int = 10) -> list[int]:
        """Item ids best matching `query` (weighted token overlap, idf); ties by catalog order."""
        postings, idf = self._search_index
        scores: dict[int, float] = defaultdict(float)
        for tok in set(_tokens(query)):
            for row, w in postings.get(tok, ()):
                scores[row] += w * idf[tok]
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [self.items[row].item_id for row, _ in ranked]


_STOP = frozenset("a an and the of in on to for with by from at is it its as or be".split())


def _tokens(text: str) -> list[str]:
    return [t for t in re.findall(r"[a-z0-9]+", text.lower().replace("sci-fi", "scifi")) if t not in _STOP]


def bundled_catalog_path() -> Path:
    return Path(str(resources.files("simworld.scenarios") / "catalog" / "films.csv"))


def load_csv_catalog(path: Path, name: str | None = None) -> Catalog:
    """Read the bundled layout: item_id,title,year,genres (pipe-separated),description."""
    if not path.is_file():
        raise DataError(f"catalog file not found: {path}")
    required = {"item_id", "title", "year", "genres", "description"}
    items: list[Item] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = required - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, rec in enumerate(reader, start=2):
            try:
                genres = tuple(g for g in (normalise_genre(x) for x in rec["genres"].split("|")) if g)
                items.append(Item(int(rec["item_id"]), rec["title"].strip(),
                                  int(rec["year"]) if rec["year"].strip() else None,
                                  genres, rec["description"].strip()))
            except (ValueError, AttributeError) as exc:
                raise DataError(f"{path}, line {line}: malformed row ({exc})") from exc
    return Catalog(tuple(items), name=name or path.stem)


def load_bundled_catalog() -> Catalog:
    return load_csv_catalog(bundled_catalog_path(), name="bundled-films")


def subset(catalog: Catalog, item_ids: Sequence[int], name: str | None = None) -> Catalog:
    return Catalog(tuple(catalog.get(i) for i in item_ids), name=name or catalog.name)
