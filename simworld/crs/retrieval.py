"""The retrieval CRS: no LLM. It reads what the seeker asked for from its words, and ranks
with any registered recommender of `simworld.recommenders`.

Each turn it gathers, from the seeker's turns so far: genres (by name, or by a mood word:
'scary' is Horror), genres ruled out ('no horror'), a decade ('90s', 'nineties', '1990s',
'recent', 'old classic'), and the films the seeker mentioned liking. While it knows neither
a genre nor a decade it asks (at most `questions` times); then it recommends. The ranked
list is the recommender's ranking for the seeker (it knows the seeker's history), stably
re-sorted by how many of the stated wishes each film meets; films it proposed before and
films the seeker named are left out.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

import numpy as np

from simworld.catalog import GENRES, Catalog, Item
from simworld.crs.need import MOOD_GENRE, genre_overlap
from simworld.crs.protocol import CRSReply, CRSRequest
from simworld.crs.seeker import DECADE_WORDS, GENRE_WORDS

COLD_USER = 0  # a user id no seeker has: ranking "for a stranger"

_GENRE_NAMES: dict[str, str] = {g.lower(): g for g in GENRES}
_GENRE_NAMES.update({w.split()[0]: g for g, w in GENRE_WORDS.items() if w.split()[0] not in ("film",)})
_GENRE_NAMES.update({"noir": "Film-Noir", "scifi": "Sci-Fi", "sci": "Sci-Fi", "kids": "Children",
                     "cartoon": "Animation", "animated": "Animation", "romantic": "Romance", "funny": "Comedy",
                     "scary": "Horror", "documentaries": "Documentary", "comedies": "Comedy",
                     "thrillers": "Thriller", "westerns": "Western", "musicals": "Musical", "dramas": "Drama"})
_GENRE_NAMES.update({mood: genre for mood, genre in MOOD_GENRE.items() if " " not in mood})
_WORD = re.compile(r"@\d+|[a-z]+(?:-[a-z]+)?|'?\d{2,4}s\b")
_NEGATION = {"no", "not", "without", "hate", "nothing"}
_DECADE_NAMES = {word: decade for decade, word in DECADE_WORDS.items()}

QUESTIONS = {
    "genre": ("What kind of movie are you in the mood for?", "What genre do you usually enjoy?",
              "Any particular type of film you want?"),
    "era": ("Do you prefer something recent or an older film?", "Any particular decade or era?",
            "New releases or old classics?"),
    "similar_to": ("Is there a movie you loved recently that I could go from?",
                   "What's a film you really enjoyed?"),
}


@dataclass
class Wishes:
    """What the seeker has asked for so far, as far as words tell."""

    genres: set[str] = field(default_factory=set)
    not_genres: set[str] = field(default_factory=set)
    decades: set[int] = field(default_factory=set)
    era: tuple[int, int] | None = None  # a year range ('recent', 'old classic')
    liked: list[int] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.genres or self.decades or self.era or self.liked)

    def score(self, item: Item, catalog: Catalog) -> float:
        """How many stated wishes the film meets (genre share + era + likeness to liked films)."""
        s = 0.0
        if self.genres:
            s += len(self.genres & set(item.genres)) / len(self.genres)
        if self.not_genres & set(item.genres):
            s -= 2.0
        year = item.year or 0
        if self.decades:
            s += float(year // 10 * 10 in self.decades)
        elif self.era:
            s += float(self.era[0] <= year <= self.era[1])
        if self.liked:
            s += max(genre_overlap(item, catalog.get(i)) for i in self.liked)
        return s


def read_wishes(request: CRSRequest, catalog: Catalog) -> Wishes:
    w = Wishes()
    proposed = set(request.proposed)
    for message in request.messages:
        if message.role != "seeker":
            continue
        words = _WORD.findall(message.text.lower())
        for k, word in enumerate(words):
            if word.startswith("@"):
                item = int(word[1:])
                if item in catalog and item not in proposed and item not in w.liked:
                    w.liked.append(item)
                continue
            genre = _GENRE_NAMES.get(word) or _GENRE_NAMES.get(word.rstrip("s"))
            if genre:
                negated = any(x in _NEGATION for x in words[max(0, k - 3):k])
                (w.not_genres if negated else w.genres).add(genre)
                (w.genres if negated else w.not_genres).discard(genre)
                continue
            decade = _decade(word)
            if decade is not None:
                w.decades.add(decade)
            elif word in ("recent", "new", "newer"):
                w.era = (2010, 9999)
            elif word in ("old", "classic", "older"):
                w.era = (0, 1969)
    return w


def _decade(word: str) -> int | None:
    if word in _DECADE_NAMES:
        return _DECADE_NAMES[word]
    m = re.fullmatch(r"'?(\d{2,4})s", word)
    if not m:
        return None
    n = int(m.group(1))
    if n >= 1000:
        return n // 10 * 10
    if n % 10:
        return None
    return 2000 + n if n <= 10 else 1900 + n


def _choose(options, *keys) -> str:
    return options[zlib.crc32(repr(keys).encode()) % len(options)]


def describe(item: Item, wishes: Wishes) -> str:
    """Why this film: its genres and year, and which wishes it meets."""
    genres = [GENRE_WORDS.get(g, g.lower()) for g in item.genres[:2]]
    kind = " and ".join(genres) if genres else "film"
    year = f" from {item.year}" if item.year else ""
    met = sorted(wishes.genres & set(item.genres))
    because = f", and you wanted {_a(GENRE_WORDS.get(met[0], met[0].lower()))}" if met else ""
    blurb = f" {item.description}" if item.description else ""
    return f"It's {_a(kind)}{year}{because}.{blurb}"


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


class RetrievalCRS:
    """See the module docstring. `recommender` is fitted already (on the seekers' histories)."""

    def __init__(self, recommender, catalog: Catalog, *, recommender_name: str = "recommender",
                 personalised: bool = True, questions: int = 2, show: int = 1):
        self.recommender = recommender
        self.catalog = catalog
        self.personalised = personalised
        self.questions = questions
        self.show = show
        self.name = "retrieval"
        self.model = recommender_name
        self._rankings: dict[int, list[int]] = {}

    def _base_ranking(self, user: int) -> list[int]:
        if user not in self._rankings:  # the recommender does not change during a generation
            self._rankings[user] = self.recommender.recommend([user], k=len(self.catalog), exclude_seen=True)[0]
        return self._rankings[user]

    def rank(self, request: CRSRequest, wishes: Wishes) -> list[int]:
        user = request.seeker_id if self.personalised else COLD_USER
        base = self._base_ranking(user)
        skip = set(request.proposed) | set(wishes.liked) | {
            i for m in request.messages if m.role == "seeker" for i in m.mentions}
        candidates = [i for i in base if i not in skip]
        if wishes.empty:
            return candidates[:request.k]
        scores = np.array([wishes.score(self.catalog.get(i), self.catalog) for i in candidates])
        order = np.argsort(-np.round(scores, 6), kind="stable")  # ties keep the recommender's order
        return [candidates[int(j)] for j in order[:request.k]]

    async def respond(self, request: CRSRequest) -> CRSReply:
        wishes = read_wishes(request, self.catalog)
        asked = sum(1 for m in request.messages if m.role == "recommender" and not m.recommended)
        turn = len(request.messages)
        missing = [kind for kind, known in (("genre", wishes.genres), ("era", wishes.decades or wishes.era),
                                            ("similar_to", wishes.liked)) if not known]
        ranking = self.rank(request, wishes)
        if asked < self.questions and (not wishes.genres or not (wishes.decades or wishes.era)) and missing:
            question = _choose(QUESTIONS[missing[0]], request.dialogue_id, turn)
            return CRSReply(text=question, ranking=tuple(ranking), act="ask")
        shown = ranking[:self.show]
        if not shown:
            return CRSReply(text="I'm out of ideas, sorry.", ranking=tuple(ranking), act="chat")
        lead = _choose(("How about {m}?", "You might like {m}.", "I'd recommend {m}.", "Have you seen {m}?"),
                       request.dialogue_id, turn)
        mentions = " or ".join(f"@{i}" for i in shown)
        text = f"{lead.format(m=mentions)} {describe(self.catalog.get(shown[0]), wishes)}"
        return CRSReply(text=text, recommended=tuple(shown), ranking=tuple(ranking), act="recommend")
