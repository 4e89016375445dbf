"""MovieLens loaders against the real ml-latest-small, tiny ml-100k / ml-1m folders written in
their real formats, every error a user can cause, and the bundled film catalog."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from simworld.catalog import GENRES, load_csv_catalog
from simworld.errors import DataError
from simworld.movielens import (
    detect_layout,
    load_movielens_catalog,
    load_movielens_items,
    load_movielens_ratings,
    rating_counts,
    split_title,
)

RATING_SCHEMA = {"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float64, "timestamp": pl.Int64}


# --------------------------------------------------------------------------- fixtures


def _u_item_line(movie_id: int, title: str, release: str, genres: set[str]) -> str:
    order = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
             "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
             "Romance", "Sci-Fi", "Thriller", "War", "Western"]
    flags = "|".join("1" if g in genres else "0" for g in order)
    return f"{movie_id}|{title}|{release}||http://us.imdb.com/M/title-exact?x|{flags}\n"


@pytest.fixture
def ml100k(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    lines = [
        _u_item_line(1, "Toy Story (1995)", "01-Jan-1995", {"Animation", "Children's", "Comedy"}),
        _u_item_line(2, "Jour de fête (1949)", "01-Jan-1949", {"Comedy"}),
        _u_item_line(3, "Usual Suspects, The (1995)", "14-Aug-1995", {"Crime", "Thriller"}),
        _u_item_line(4, "Dead Man", "10-May-1996", {"Western"}),  # no year in the title
        _u_item_line(267, "unknown", "", {"unknown"}),
    ]
    (folder / "u.item").write_bytes("".join(lines).encode("latin-1"))
    (folder / "u.data").write_text(
        "196\t1\t3\t881250949\n186\t1\t5\t891717742\n22\t2\t1\t878887116\n196\t3\t4\t881251111\n"
    )
    return folder


@pytest.fixture
def ml1m(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    movies = (
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Ciudad de los niños, La (1995)::Adventure|Fantasy\n"
        "3::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Fantasy|Sci-Fi\n"
    )
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    (folder / "ratings.dat").write_text(
        "1::1::5::978300760\n1::3::3::978302109\n2::3::4::978301968\n3::3::5::978300275\n"
    )
    return folder


# --------------------------------------------------------------------------- titles


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Toy Story (1995)", ("Toy Story", 1995)),
        ("Matrix, The (1999)", ("The Matrix", 1999)),
        ("City of Lost Children, The (Cité des enfants perdus, La) (1995)",
         ("The City of Lost Children", 1995)),
        ("Twelve Monkeys (a.k.a. 12 Monkeys) (1995)", ("Twelve Monkeys", 1995)),
        ("Guilty of Romance (Koi no tsumi) (2011) ", ("Guilty of Romance", 2011)),
        ("Man of No Importance, A (1994)", ("A Man of No Importance", 1994)),
        ("Avventura, L' (1960)", ("L'Avventura", 1960)),
        ("(500) Days of Summer (2009)", ("(500) Days of Summer", 2009)),
        ("Death Note: Desu nôto (2006–2007)", ("Death Note: Desu nôto", 2006)),
        ("Black Mirror", ("Black Mirror", None)),
    ],
)
def test_split_title(raw: str, expected: tuple[str, int | None]) -> None:
    assert split_title(raw) == expected


# --------------------------------------------------------------------------- real ml-latest-small


def test_detect_layouts(movielens_small: Path, ml100k: Path, ml1m: Path) -> None:
    assert detect_layout(movielens_small) == "csv"
    assert detect_layout(ml100k) == "100k"
    assert detect_layout(ml1m) == "1m"


def test_small_items(movielens_small: Path) -> None:
    items = load_movielens_items(movielens_small)
    assert len(items) == 9742
    assert [i.item_id for i in items] == sorted(i.item_id for i in items)
    by_id = {i.item_id: i for i in items}
    toy = by_id[1]
    assert (toy.title, toy.year) == ("Toy Story", 1995)
    assert toy.genres == ("Adventure", "Animation", "Children", "Comedy", "Fantasy")
    assert toy.description.startswith("Tagged: ")
    assert 1 <= len(toy.description.removeprefix("Tagged: ").split(", ")) <= 3
    assert any(i.title == "The Matrix" and i.year == 1999 for i in items)
    assert by_id[29].title == "The City of Lost Children"
    vocabulary = set(GENRES)
    assert all(set(i.genres) <= vocabulary for i in items)
    assert any(not i.genres for i in items)  # "(no genres listed)" becomes no genre
    assert all(not i.title.endswith((", The", ", A", ", An")) for i in items)
    assert sum(i.year is None for i in items) < 20


def test_small_items_subset(movielens_small: Path) -> None:
    items = load_movielens_items(movielens_small, item_ids=[2571, 1, 999_999])
    assert [i.item_id for i in items] == [1, 2571]
    assert items[1].title == "The Matrix"


def test_small_ratings(movielens_small: Path) -> None:
    ratings = load_movielens_ratings(movielens_small)
    assert dict(ratings.schema) == RATING_SCHEMA
    assert ratings.height == 100836
    assert ratings["user_id"].n_unique() == 610
    assert ratings["rating"].min() == 0.5 and ratings["rating"].max() == 5.0
    first = ratings.row(0, named=True)
    assert first == {"user_id": 1, "item_id": 1, "rating": 4.0, "timestamp": 964982703}


def test_small_catalog_filters(movielens_small: Path) -> None:
    ratings = load_movielens_ratings(movielens_small)
    counts = dict(ratings.group_by("item_id").len().iter_rows())

    popular = load_movielens_catalog(movielens_small, min_ratings=50)
    expected = sorted(i for i, n in counts.items() if n >= 50)
    assert popular.ids.tolist() == expected
    assert 400 < len(popular) < 500

    top = load_movielens_catalog(movielens_small, max_items=100)
    assert len(top) == 100
    assert top.ids.tolist() == sorted(top.ids.tolist())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:100]
    assert set(top.ids.tolist()) == {i for i, _ in ranked}
    assert 356 in top  # Forrest Gump, the most-rated film of the set
    assert top.name == "movielens-ml-latest-small"

    both = load_movielens_catalog(movielens_small, min_ratings=200, max_items=1000)
    assert both.ids.tolist() == sorted(i for i, n in counts.items() if n >= 200)

    assert rating_counts(movielens_small).filter(pl.col("item_id") == 356)["n"].item() == counts[356]


# --------------------------------------------------------------------------- ml-100k, ml-1m


def test_ml100k(ml100k: Path) -> None:
    items = {i.item_id: i for i in load_movielens_items(ml100k)}
    assert (items[1].title, items[1].year) == ("Toy Story", 1995)
    assert items[1].genres == ("Animation", "Children", "Comedy")
    assert (items[2].title, items[2].year) == ("Jour de fête", 1949)
    assert items[3].title == "The Usual Suspects"
    assert (items[4].title, items[4].year, items[4].genres) == ("Dead Man", 1996, ("Western",))
    assert (items[267].title, items[267].year, items[267].genres) == ("unknown", None, ())
    assert all(i.description == "" for i in items.values())

    ratings = load_movielens_ratings(ml100k)
    assert dict(ratings.schema) == RATING_SCHEMA
    assert ratings.rows() == [(196, 1, 3.0, 881250949), (186, 1, 5.0, 891717742),
                              (22, 2, 1.0, 878887116), (196, 3, 4.0, 881251111)]
    catalog = load_movielens_catalog(ml100k, min_ratings=1)
    assert catalog.ids.tolist() == [1, 2, 3]
    assert load_movielens_catalog(ml100k, max_items=1).ids.tolist() == [1]


def test_ml1m(ml1m: Path) -> None:
    items = load_movielens_items(ml1m)
    assert [(i.item_id, i.title, i.year) for i in items] == [
        (1, "Toy Story", 1995),
        (2, "La Ciudad de los niños", 1995),
        (3, "Star Wars: Episode IV - A New Hope", 1977),
    ]
    assert items[0].genres == ("Animation", "Children", "Comedy")
    assert items[2].genres == ("Action", "Adventure", "Fantasy", "Sci-Fi")

    ratings = load_movielens_ratings(ml1m)
    assert dict(ratings.schema) == RATING_SCHEMA
    assert ratings.rows()[0] == (1, 1, 5.0, 978300760)
    assert ratings.height == 4
    # item 3 has three ratings, item 1 one, item 2 none: the top two, listed in id order
    assert load_movielens_catalog(ml1m, max_items=2).ids.tolist() == [1, 3]
    assert load_movielens_catalog(ml1m, min_ratings=2).ids.tolist() == [3]


def test_tags_ties_and_case(tmp_path: Path) -> None:
    folder = tmp_path / "tagged"
    folder.mkdir()
    (folder / "movies.csv").write_text("movieId,title,genres\n7,\"Sabrina (1954)\",Comedy|Romance|IMAX\n")
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,7,4.5,1000\n")
    (folder / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n"
        "1,7,Audrey Hepburn,1\n2,7,audrey hepburn,2\n"
        "3,7,\"paris, france\",3\n4,7,\"Paris, France \",4\n"
        "5,7,charming,5\n6,7,boring,6\n"
    )
    # counted case-insensitively; ties broken by name: two 2-counts, then "boring" before "charming"
    (item,) = load_movielens_items(folder)
    assert item.genres == ("Comedy", "Romance")
    assert item.description == "Tagged: audrey hepburn, paris, france, boring"


# --------------------------------------------------------------------------- errors


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for call in (detect_layout, load_movielens_items, load_movielens_ratings, load_movielens_catalog):
        with pytest.raises(DataError, match="folder not found") as err:
            call(missing)
        assert str(missing) in str(err.value)


def test_unknown_layout(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not movielens\n")
    with pytest.raises(DataError, match="No MovieLens files found") as err:
        load_movielens_ratings(tmp_path)
    assert str(tmp_path) in str(err.value)
    file = tmp_path / "notes.txt"
    with pytest.raises(DataError, match="is a file"):
        detect_layout(file)


def test_missing_ratings_file(tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Comedy\n")
    assert len(load_movielens_items(tmp_path)) == 1
    with pytest.raises(DataError, match="ratings file not found") as err:
        load_movielens_ratings(tmp_path)
    assert str(tmp_path / "ratings.csv") in str(err.value)
    with pytest.raises(DataError, match="ratings.csv"):
        load_movielens_catalog(tmp_path, min_ratings=1)


def test_missing_movies_file(ml1m: Path) -> None:
    (ml1m / "movies.dat").unlink()
    with pytest.raises(DataError, match="movies file not found.*movies.dat"):
        load_movielens_items(ml1m)


@pytest.mark.parametrize(
    ("layout", "name", "content", "line"),
    [
        ("csv", "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,abc,4.0,9\n", 3),
        ("csv", "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,1,5.0,1\n3,1\n", 4),
        ("csv", "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1,extra\n", 2),
        ("100k", "u.data", "196\t242\t3\t881250949\n186\t302\tthree\t891717742\n", 2),
        ("1m", "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n1::914\n", 3),
        ("1m", "ratings.dat", "1::1193::5::978300760\nhello world\n", 2),
    ],
)
def test_garbage_rating_row(tmp_path: Path, layout: str, name: str, content: str, line: int) -> None:
    (tmp_path / name).write_text(content)
    assert detect_layout(tmp_path) == layout
    with pytest.raises(DataError, match=rf"{name}, line {line}: malformed row") as err:
        load_movielens_ratings(tmp_path)
    assert str(tmp_path / name) in str(err.value)


def test_bad_ratings_header(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("user,item,score,ts\n1,1,4.0,1\n")
    with pytest.raises(DataError, match=r"ratings.csv, line 1: expected the header"):
        load_movielens_ratings(tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "encoding", "line"),
    [
        ("movies.csv", "movieId,title,genres\n1,Toy Story (1995),Comedy\nx,Heat (1995),Action\n", "utf-8", 3),
        ("movies.dat", "1::Toy Story (1995)::Comedy\n2::Heat (1995)\n", "latin-1", 2),
        ("u.item", _u_item_line(1, "Toy Story (1995)", "01-Jan-1995", {"Comedy"}) + "2|Heat (1995)|x\n",
         "latin-1", 2),
    ],
)
def test_garbage_movie_row(tmp_path: Path, name: str, content: str, encoding: str, line: int) -> None:
    (tmp_path / name).write_bytes(content.encode(encoding))
    with pytest.raises(DataError, match=rf"{name}, line {line}: malformed row"):
        load_movielens_items(tmp_path)


def test_filter_leaving_nothing(ml1m: Path) -> None:
    with pytest.raises(DataError, match="at least 100 ratings"):
        load_movielens_catalog(ml1m, min_ratings=100)


# --------------------------------------------------------------------------- bundled catalog


def test_bundled_films_catalog(repo_root: Path) -> None:
    path = repo_root / "scenarios" / "catalog" / "films.csv"
    with path.open(encoding="utf-8") as fh:
        assert fh.readline().strip() == "item_id,title,year,genres,description"
    catalog = load_csv_catalog(path)
    assert len(catalog) >= 300
    assert catalog.ids.tolist() == list(range(1, len(catalog) + 1))  # unique ids 1..N
    counts = Counter(g for item in catalog.items for g in item.genres)
    assert {g: counts[g] for g in GENRES if counts[g] < 8} == {}
    assert len({(i.title.lower(), i.year) for i in catalog.items}) == len(catalog)
    decades = Counter(i.year // 10 * 10 for i in catalog.items if i.year)
    assert set(range(1920, 2030, 10)) <= set(decades)
    for item in catalog.items:
        assert item.year is not None and 1900 <= item.year <= 2030, item
        assert 1 <= len(item.genres) <= 3, item
        assert 10 <= len(item.description.split()) <= 25, item
        assert "\n" not in item.description and not item.title.endswith(")"), item
