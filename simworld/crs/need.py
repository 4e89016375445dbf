"""A seeker's hidden information need: target films and the constraints that describe them.

The targets are drawn from the persona's taste among films it has not seen; the constraints
are what a person would say about them: their genres, their era, a mood, and a film the
persona has seen that is like them. The seeker reveals constraints, never the targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from simworld.catalog import Catalog, Item
from simworld.population import Persona

ConstraintKind = Literal["genre", "era", "mood", "similar_to"]
KINDS: tuple[ConstraintKind, ...] = ("genre", "era", "mood", "similar_to")

# What a person calls the feel of a genre; a mood is met by a film of that genre.
MOODS: dict[str, str] = {
    "Action": "exciting", "Adventure": "adventurous", "Animation": "colourful", "Children": "family-friendly",
    "Comedy": "funny", "Crime": "gritty", "Documentary": "eye-opening", "Drama": "moving",
    "Fantasy": "magical", "Film-Noir": "moody", "Horror": "scary", "Musical": "uplifting",
    "Mystery": "puzzling", "Romance": "romantic", "Sci-Fi": "mind-bending", "Thriller": "tense",
    "War": "harrowing", "Western": "rugged",
}
MOOD_GENRE = {mood: genre for genre, mood in MOODS.items()}
TASTE_SHARPNESS = 8.0  # how strongly the persona's taste picks its targets (softmax temperature)


@dataclass(frozen=True)
class Constraint:
    """One thing the seeker can say about what it wants. `value`: a genre, a decade ('1990'),
    a mood word, or the id of a film it has seen (similar_to)."""

    kind: ConstraintKind
    value: str

    def met_by(self, item: Item, catalog: Catalog) -> bool:
        if self.kind == "genre":
            return self.value in item.genres
        if self.kind == "era":
            return item.year is not None and item.year // 10 * 10 == int(self.value)
        if self.kind == "mood":
            return MOOD_GENRE[self.value] in item.genres
        other = catalog.get(int(self.value))
        return genre_overlap(item, other) >= 0.5

    def label(self) -> str:
        """A short name for tables and the viewer ('genre: Comedy', 'similar to: 42')."""
        return f"{self.kind.replace('_', ' ')}: {self.value}"


@dataclass(frozen=True)
class InformationNeed:
    targets: tuple[int, ...]
    constraints: tuple[Constraint, ...]  # in the order the seeker reveals them unless asked

    def match(self, item: Item, catalog: Catalog) -> float:
        """Share of the constraints the film meets (1.0 for a target)."""
        if item.item_id in self.targets:
            return 1.0
        if not self.constraints:
            return 0.0
        return sum(c.met_by(item, catalog) for c in self.constraints) / len(self.constraints)


def genre_overlap(a: Item, b: Item) -> float:
    """Jaccard overlap of two films' genres."""
    ga, gb = set(a.genres), set(b.genres)
    return len(ga & gb) / len(ga | gb) if ga | gb else 0.0


def taste_scores(persona: Persona, catalog: Catalog) -> np.ndarray:
    """How well each film fits the persona's genre taste (cosine, catalog order)."""
    return catalog.genre_matrix.astype(np.float64) @ persona.taste_vector(catalog.genres)


def taste_sample(persona: Persona, catalog: Catalog, rng: np.random.Generator, n: int,
                 exclude: set[int] = frozenset()) -> list[int]:
    """n distinct films drawn with probability rising with the persona's taste."""
    scores = taste_scores(persona, catalog)
    weights = np.exp(TASTE_SHARPNESS * (scores - scores.max()))
    if exclude:
        weights[catalog.rows([i for i in exclude if i in catalog])] = 0.0
    n = min(n, int((weights > 0).sum()))
    if n == 0:
        return []
    rows = rng.choice(len(catalog), size=n, replace=False, p=weights / weights.sum())
    return catalog.ids[rows].tolist()


def draw_need(persona: Persona, catalog: Catalog, seen: Sequence[int], rng: np.random.Generator,
              n_targets: int = 1, pool: Sequence[int] | None = None, liked: Sequence[int] | None = None,
              leaks=None) -> InformationNeed:
    """Targets, and the constraints that describe them.

    Targets come from `pool` (a MovieLens user's own well-rated films, held out of what it has
    seen) or else from every film the persona has not seen, drawn by its taste. Further
    targets share the first one's leading genre (and its decade when enough do), so one set of
    constraints describes them all. The similar-to film is one of `liked` (default: `seen`).
    `leaks(title, targets) -> bool` vetoes a similar-to film whose title would give a target
    away (a sequel's)."""
    seen_set = {int(i) for i in seen if int(i) in catalog}
    allowed = {int(i) for i in pool if int(i) in catalog} if pool else set(catalog.ids.tolist()) - seen_set
    first = taste_sample(persona, catalog, rng, 1, exclude=set(catalog.ids.tolist()) - allowed)
    if not first:
        return InformationNeed((), ())
    t0 = catalog.get(first[0])
    targets = [t0.item_id]
    if n_targets > 1:
        lead = t0.genres[0] if t0.genres else None
        same = [i for i in sorted(allowed) if i != t0.item_id and lead in catalog.get(i).genres
                and (catalog.get(i).year or 0) // 10 == (t0.year or 0) // 10]
        if len(same) < n_targets - 1:
            same = [i for i in sorted(allowed) if i != t0.item_id and lead in catalog.get(i).genres]
        if same:
            pick = rng.choice(len(same), size=min(n_targets - 1, len(same)), replace=False)
            targets += [same[int(k)] for k in sorted(pick)]
    items = [catalog.get(i) for i in targets]
    common = [g for g in t0.genres if all(g in it.genres for it in items)]
    constraints: list[Constraint] = [Constraint("genre", g) for g in common[:2]]
    decades = {(it.year // 10 * 10) if it.year else None for it in items}
    if len(decades) == 1 and None not in decades:
        constraints.append(Constraint("era", str(decades.pop())))
    moods = [g for g in common if g not in common[:2]] or common
    if moods:
        constraints.append(Constraint("mood", MOODS[moods[0]]))
    candidates = [catalog.get(i) for i in sorted({int(i) for i in (liked if liked is not None else seen)}
                                                  & seen_set - set(targets))]
    candidates = [c for c in candidates
                  if genre_overlap(c, t0) > 0 and not (leaks and leaks(c.title, tuple(targets)))]
    if candidates:
        best = max(genre_overlap(c, t0) for c in candidates)
        tied = [c for c in candidates if genre_overlap(c, t0) == best]
        constraints.append(Constraint("similar_to", str(tied[int(rng.integers(len(tied)))].item_id)))
    order = rng.permutation(len(constraints))
    return InformationNeed(tuple(targets), tuple(constraints[int(k)] for k in order))
