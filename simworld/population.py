"""Personas: seeded synthetic people, or people built from MovieLens users' rating histories."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import polars as pl

from simworld.catalog import Catalog

_FIRST = ("Ada Ben Chloe Dev Elena Farid Grace Hiro Ines Jonas Kemi Liam Maya Nikolai Olu Priya "
          "Quinn Rosa Sami Tara Umar Vera Wen Xavier Yara Zeke Amara Bruno Carmen Dmitri Esther "
          "Femi Gia Hugo Ivy Jamal Keiko Lars Mina Nora Omar Paula Rafael Sofia Tomas Uma Viktor "
          "Willa Yusuf Zoe Aiko Bilal Clara Diego Eun Felix Hana Isaac Jade Kofi").split()
_LAST = ("Adams Bauer Chen Diaz Eriksen Fischer Garcia Haddad Ito Jensen Kim Lopez Mensah Novak "
         "Okafor Patel Quint Rossi Silva Tanaka Ueda Varga Wright Xu Yilmaz Zhang Abe Brandt Costa "
         "Dubois Evans Ferreira Gupta Horvat Ibrahim Jovanovic Kowalski Larsen").split()
_OCCUPATIONS = ("student", "nurse", "software engineer", "teacher", "retiree", "chef", "lawyer",
                "electrician", "designer", "accountant", "farmer", "journalist", "doctor",
                "shop assistant", "researcher", "driver", "artist", "manager", "librarian", "unemployed")
_TRAITS = ("curious", "nostalgic", "critical", "easy-going", "sociable", "introverted", "impatient",
           "thoughtful", "adventurous", "cautious", "romantic", "sceptical", "playful", "loyal")


@dataclass(frozen=True)
class Persona:
    """Who a simulated user is. Immutable: a persona edit makes a new one (see `edited`)."""

    agent_id: int
    name: str
    age: int
    occupation: str
    traits: tuple[str, ...]
    genre_taste: dict[str, float]  # over the catalog's genres, sums to 1
    activity: float  # 0..1, how often this person tends to show up
    diversity: float  # 0..1, appetite for things outside their usual genres
    conformity: float  # 0..1, how much the crowd's opinion sways them
    curiosity: float  # 0..1, propensity to search rather than browse
    rating_bias: float = 0.0  # added to every rating (generous > 0, harsh < 0)
    rating_noise: float = 0.5  # spread of their ratings around their utility
    source: str = "synthetic"
    notes: str = ""  # free text a researcher adds (viewer persona edits land here)
    taste_summary: str = ""  # grounded users: what their training history says they love and dislike

    def top_genres(self, n: int = 3) -> list[str]:
        return [g for g, _ in sorted(self.genre_taste.items(), key=lambda kv: (-kv[1], kv[0]))[:n] if _ > 0]

    def describe(self) -> str:
        likes = ", ".join(self.top_genres(3)) or "anything"
        traits = ", ".join(self.traits)
        text = (f"{self.name}, {self.age}, {self.occupation}; {traits}. Likes {likes}. "
                f"{'Explores widely' if self.diversity > 0.6 else 'Sticks to favourites' if self.diversity < 0.3 else 'Sometimes tries new things'}; "
                f"{'follows the crowd' if self.conformity > 0.6 else 'trusts own judgement' if self.conformity < 0.3 else 'listens to others a little'}.")
        return f"{text} {self.taste_summary} {self.notes}".strip().replace("  ", " ")

    def taste_vector(self, genres: Sequence[str]) -> np.ndarray:
        v = np.array([self.genre_taste.get(g, 0.0) for g in genres], dtype=np.float64)
        n = np.linalg.norm(v)
        return v / n if n > 0 else v

    def edited(self, **changes) -> "Persona":
        return replace(self, **changes)


def synthetic_personas(n: int, catalog: Catalog, rng: np.random.Generator, first_id: int = 1) -> list[Persona]:
    """n seeded personas whose tastes follow the catalog's genre mix, concentrated on a few genres."""
    genres = catalog.genres
    prevalence = (catalog.genre_matrix > 0).sum(axis=0).astype(np.float64)
    base = prevalence / prevalence.sum()
    people = []
    for i in range(n):
        taste = rng.dirichlet(0.15 + 3.0 * base)  # small alphas: a few genres dominate each taste
        diversity = float(rng.beta(2, 3))
        people.append(Persona(
            agent_id=first_id + i,
            name=f"{_FIRST[int(rng.integers(len(_FIRST)))]} {_LAST[int(rng.integers(len(_LAST)))]}",
            age=int(rng.integers(16, 76)),
            occupation=_OCCUPATIONS[int(rng.integers(len(_OCCUPATIONS)))],
            traits=tuple(sorted(rng.choice(_TRAITS, size=2, replace=False).tolist())),
            genre_taste={g: round(float(t), 4) for g, t in zip(genres, taste)},
            activity=float(rng.beta(2, 3)),
            diversity=diversity,
            conformity=float(rng.beta(2, 2)),
            curiosity=float(rng.beta(2, 4)),
            rating_bias=float(np.clip(rng.normal(0.0, 0.35), -1.0, 1.0)),
            rating_noise=float(rng.uniform(0.3, 0.8)),
        ))
    return people


@dataclass(frozen=True)
class MovieLensPopulation:
    personas: list[Persona]
    history: pl.DataFrame  # user_id (agent id), item_id, rating, round (-1: before the run)
    source_users: dict[int, int] = field(default_factory=dict)  # agent id -> MovieLens userId


def movielens_personas(ratings: pl.DataFrame, catalog: Catalog, n: int, rng: np.random.Generator,
                       first_id: int = 1) -> MovieLensPopulation:
    """Personas from real users: taste = genres of the films they liked; traits from their history.

    activity: percentile of their number of ratings; diversity: normalised genre entropy of what
    they rated; conformity: how closely their ratings follow each film's mean rating; rating
    bias and noise: their mean offset from, and spread around, the films' means.
    """
    known = ratings.filter(pl.col("item_id").is_in(catalog.ids.tolist()))
    item_mean = known.group_by("item_id").agg(pl.col("rating").mean().alias("item_mean"))
    known = known.join(item_mean, on="item_id").with_columns((pl.col("rating") - pl.col("item_mean")).alias("resid"))
    per_user = known.group_by("user_id").agg(
        pl.len().alias("n"), pl.col("resid").mean().alias("bias"), pl.col("resid").std().alias("noise"),
        pl.col("resid").abs().mean().alias("mad"),
    ).filter(pl.col("n") >= 5).sort("user_id")
    if per_user.height == 0:
        from simworld.errors import DataError
        raise DataError("no MovieLens user has 5 or more ratings on the catalog's films")
    users = per_user["user_id"].to_numpy()
    chosen = np.sort(rng.choice(users, size=min(n, len(users)), replace=False))
    counts = per_user["n"].to_numpy()
    genres = catalog.genres
    gm = catalog.genre_matrix > 0
    people, parts, mapping = [], [], {}
    stats = {row["user_id"]: row for row in per_user.iter_rows(named=True)}
    by_user = known.partition_by("user_id", as_dict=True)
    for i, user in enumerate(chosen.tolist()):
        agent_id = first_id + i
        mapping[agent_id] = user
        hist = by_user[(user,)]
        if "timestamp" in hist.columns:  # oldest first: the taste model weighs recent films more
            hist = hist.sort("timestamp", "item_id")
        rows = catalog.rows(hist["item_id"].to_list())
        liked = hist["rating"].to_numpy() >= 4.0
        basis = gm[rows[liked]] if liked.any() else gm[rows]
        taste = basis.sum(axis=0).astype(np.float64) + 0.05
        taste /= taste.sum()
        all_g = gm[rows].sum(axis=0).astype(np.float64)
        p = all_g[all_g > 0] / all_g.sum()
        entropy = float(-(p * np.log(p)).sum() / np.log(len(genres))) if len(p) > 1 else 0.0
        s = stats[user]
        people.append(Persona(
            agent_id=agent_id, name=f"MovieLens user {user}", age=int(rng.integers(18, 70)),
            occupation=_OCCUPATIONS[int(rng.integers(len(_OCCUPATIONS)))],
            traits=tuple(sorted(rng.choice(_TRAITS, size=2, replace=False).tolist())),
            genre_taste={g: round(float(t), 4) for g, t in zip(genres, taste)},
            activity=float((counts < s["n"]).mean()),
            diversity=entropy,
            conformity=float(np.clip(1.0 - s["mad"] / 1.5, 0.0, 1.0)),
            curiosity=float(rng.beta(2, 4)),
            rating_bias=float(np.clip(s["bias"], -1.5, 1.5)),
            rating_noise=float(np.clip(s["noise"] or 0.5, 0.2, 1.2)),
            source=f"movielens:{user}",
            taste_summary=taste_summary(hist, catalog),
        ))
        parts.append(hist.select(pl.lit(agent_id, dtype=pl.Int64).alias("user_id"),
                                 pl.col("item_id").cast(pl.Int64), pl.col("rating").cast(pl.Float64),
                                 pl.lit(-1, dtype=pl.Int64).alias("round")))
    return MovieLensPopulation(people, pl.concat(parts), mapping)


def taste_summary(history: pl.DataFrame, catalog: Catalog, n: int = 3) -> str:
    """A template's one-line summary of a rating history (item_id, rating; oldest first): the
    best-rated and worst-rated films, the latest first among equals."""
    rows = list(enumerate(zip(history["item_id"].to_list(), history["rating"].to_list())))
    loved = [catalog.get(i).title for _, (i, r) in sorted(rows, key=lambda x: (-x[1][1], -x[0])) if r >= 4][:n]
    hated = [catalog.get(i).title for _, (i, r) in sorted(rows, key=lambda x: (x[1][1], -x[0])) if r <= 2][:2]
    parts = [f"Loved {', '.join(loved)}." if loved else "", f"Disliked {', '.join(hated)}." if hated else ""]
    return " ".join(p for p in parts if p)
