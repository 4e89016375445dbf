"""Films named in free text (a chat line, a post), resolved to catalog ids.

Titles are matched on normalised words: lower case, punctuation dropped, a leading article
("the", "a", "an") optional on both sides, "Matrix, The" read as "The Matrix", and a year
after the title ("Alien (1979)", "Alien 1979") used to pick between films of the same name.
A one-word title that is also an everyday word ("Up", "Her", "Heat") counts only when it
is written with a capital letter away from the start of a sentence, in quotes, or with its
year; a name of someone in the conversation is never a title. What no exact rule finds is
tried fuzzily (difflib, ratio >= 0.88) on quoted and capitalised spans, so a model's typo
("The Godfater") still resolves.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from simworld.catalog import Catalog

ARTICLES = ("the", "a", "an")
# one-word titles of the bundled catalog (and common English) that are ordinary words too
COMMON_WORDS = frozenset("""
up big her once room soul heat speed ghost glory drive flow nope moon ran rope hair flee carol
babe amy it us them now then here there this that all gone elf cars brave frozen rush crash
signs taken network arrival rocky laura thing birds host game fly road hunt help artist graduate
wall menu apartment conversation
""".split())
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
_YEAR = re.compile(r"^(1[89]\d\d|20\d\d)$")


@dataclass(frozen=True)
class Mention:
    item_id: int
    start: int  # character span in the text
    end: int
    fuzzy: bool = False


@dataclass(frozen=True)
class _Token:
    norm: str
    raw: str
    start: int
    end: int
    sentence_start: bool
    quoted: bool


def normalise(text: str) -> list[str]:
    return [w.lower().replace("’", "'") for w in _WORD.findall(text)]


def title_key(title: str) -> tuple[str, ...]:
    """The words a title is matched on: 'Matrix, The' and 'The Matrix' both give ('matrix',)."""
    t = title.strip()
    m = re.match(r"^(.*),\s*(the|a|an)$", t, re.I)
    if m:
        t = f"{m.group(2)} {m.group(1)}"
    words = normalise(t)
    while len(words) > 1 and words[0] in ARTICLES:
        words = words[1:]
    return tuple(words)


class TitleMatcher:
    """Finds catalog films in text. Built once per run (one pass over the catalog)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._by_first: dict[str, list[tuple[tuple[str, ...], list[int]]]] = {}
        keys: dict[tuple[str, ...], list[int]] = {}
        for item in catalog.items:
            key = title_key(item.title)
            if key:
                keys.setdefault(key, []).append(item.item_id)
        for key, ids in keys.items():
            self._by_first.setdefault(key[0], []).append((key, ids))
        for options in self._by_first.values():
            options.sort(key=lambda kv: -len(kv[0]))  # longest title first: "Aliens" vs "Alien"
        self._keys = {" ".join(k): ids for k, ids in keys.items()}

    def find(self, text: str, *, prefer: frozenset[int] | set[int] = frozenset(),
             names: frozenset[str] | set[str] = frozenset()) -> list[Mention]:
        """The films named in `text`, in order of appearance (each once). `prefer`: ids to pick
        among same-titled films (what the speaker has seen); `names`: people's names in the
        conversation, which are never titles."""
        tokens = _tokens(text)
        names_lower = {n.lower() for n in names}
        found: list[Mention] = []
        used: set[int] = set()
        i = 0
        while i < len(tokens):
            hit = self._match_at(tokens, i, names_lower, prefer)
            if hit is None:
                i += 1
                continue
            item_id, end_index = hit
            if item_id not in used:
                used.add(item_id)
                found.append(Mention(item_id, tokens[i].start, tokens[end_index - 1].end))
            i = end_index
        for mention in self._fuzzy(text, tokens, found, names_lower, prefer):
            if mention.item_id not in used:
                used.add(mention.item_id)
                found.append(mention)
        return sorted(found, key=lambda m: m.start)

    def ids(self, text: str, **kwargs) -> list[int]:
        return [m.item_id for m in self.find(text, **kwargs)]

    # -- exact matching
    def _match_at(self, tokens: list[_Token], i: int, names: set[str], prefer) -> tuple[int, int] | None:
        start = i
        has_article = tokens[i].norm in ARTICLES and i + 1 < len(tokens)
        for skip in ((1, 0) if has_article else (0,)):
            j = start + skip
            options = self._by_first.get(tokens[j].norm, ())
            for key, ids in options:
                n = len(key)
                if j + n > len(tokens) or tuple(t.norm for t in tokens[j:j + n]) != key:
                    continue
                if not self._plausible(tokens, start, j, n, names):
                    continue
                end = j + n
                year = None
                if end < len(tokens) and _YEAR.match(tokens[end].norm):
                    year = int(tokens[end].norm)
                item = self._choose(ids, year, prefer)
                if year is not None and self.catalog.get(item).year == year:
                    end += 1  # the year belongs to the title
                return item, end
        return None

    def _plausible(self, tokens: list[_Token], start: int, j: int, n: int, names: set[str]) -> bool:
        """Longer titles match as they are; a one-word title needs signs that it is a title."""
        if n > 1:
            return True
        token = tokens[j]
        if token.norm in names:
            return False
        after = tokens[j + 1] if j + 1 < len(tokens) else None
        with_year = after is not None and _YEAR.match(after.norm) is not None
        capital = token.raw[:1].isupper() or token.raw[:1].isdigit()
        if token.quoted or with_year:
            return True
        if len(token.norm) == 1:
            return False
        common = token.norm in COMMON_WORDS
        if not capital:
            # "the godfather": a rare word after an article is the title even in lower case
            return j > start and not common and len(token.norm) >= 5
        if not common or j > start:
            return True
        # an everyday word: a capital letter means little at the start of a sentence
        return not token.sentence_start

    def _choose(self, ids: list[int], year: int | None, prefer) -> int:
        if len(ids) == 1:
            return ids[0]
        if year is not None:
            dated = [i for i in ids if self.catalog.get(i).year == year]
            if dated:
                return dated[0]
        known = [i for i in ids if i in prefer]
        return known[0] if known else ids[0]

    # -- fuzzy matching of what the exact pass missed
    def _fuzzy(self, text: str, tokens: list[_Token], found: list[Mention], names: set[str], prefer) -> list[Mention]:
        taken = [(m.start, m.end) for m in found]
        spans = [(m.start(1), m.end(1)) for m in re.finditer(r"[\"“'‘*_]([^\"”'’*_]{4,60})[\"”'’*_]", text)]
        spans += _capitalised_spans(tokens)
        out = []
        for s, e in spans:
            if any(s < te and ts < e for ts, te in taken):
                continue
            words = normalise(text[s:e])
            while len(words) > 1 and words[0] in ARTICLES:
                words = words[1:]
            phrase = " ".join(words)
            if len(phrase) < 5 or phrase in names:
                continue
            close = difflib.get_close_matches(phrase, self._keys, n=1, cutoff=0.88)
            if close:
                out.append(Mention(self._choose(self._keys[close[0]], None, prefer), s, e, fuzzy=True))
                taken.append((s, e))
        return out


def _tokens(text: str) -> list[_Token]:
    out = []
    quotes = [(m.start(), m.end()) for m in re.finditer(r"[\"“‘*_][^\"”’*_]{1,80}[\"”’*_]", text)]
    for m in _WORD.finditer(text):
        before = text[:m.start()].rstrip()
        sentence_start = not before or before[-1] in ".!?:;\n-—–(\"“"
        quoted = any(s < m.start() and m.end() < e for s, e in quotes)
        word = m.group(0)
        out.append(_Token(word.lower().replace("’", "'"), word, m.start(), m.end(), sentence_start, quoted))
    return out


def _capitalised_spans(tokens: list[_Token]) -> list[tuple[int, int]]:
    """Runs of capitalised words (small words like 'of' allowed inside), two words or more."""
    spans, run = [], []
    small = {"of", "the", "and", "a", "an", "in", "on", "to", "for"}
    for t in tokens:
        if t.raw[:1].isupper() or (run and t.norm in small):
            run.append(t)
            continue
        if len(run) >= 2:
            spans.append((run[0].start, run[-1].end))
        run = []
    if len(run) >= 2:
        spans.append((run[0].start, run[-1].end))
    return spans
