"""Dialogue text: film mentions, tokens, and the seeker's surface style.

Turn texts are stored as ReDial writes them: a film is `@<item id>` (`I loved @42`), so an
export to ReDial is lossless and the metrics never count a title's words as the speaker's.
`render` puts titles back for people and chat-format exports; `mark_mentions` turns the
titles an LLM wrote into mentions.
"""

from __future__ import annotations

import re
import numpy as np

from simworld.catalog import Catalog

MENTION = re.compile(r"@(\d+)")
_WORD = re.compile(r"@\d+|[a-z0-9]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def mentions(text: str) -> list[int]:
    """Film ids mentioned in a text, in order, without repeats."""
    return list(dict.fromkeys(int(m) for m in MENTION.findall(text)))


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens; every film mention is the one token '@movie' (as in ReDial)."""
    return ["@movie" if t.startswith("@") else t for t in _WORD.findall(text.lower())]


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def render(text: str, catalog: Catalog | None) -> str:
    """Mentions as 'Title (Year)' (unknown ids stay as written)."""
    if catalog is None:
        return text

    def title(m: re.Match) -> str:
        item_id = int(m.group(1))
        return catalog.get(item_id).label if item_id in catalog else m.group(0)

    return MENTION.sub(title, text)


def normalise_title(title: str) -> str:
    """'The Matrix (1999)' -> 'matrix': lower case, no year, no leading article, no punctuation."""
    t = re.sub(r"\(\s*\d{4}\s*\)", " ", title.lower())
    t = re.sub(r"[^a-z0-9 ]+", " ", t)
    words = t.split()
    if len(words) > 1 and words[0] in ("the", "a", "an"):
        words = words[1:]
    return " ".join(words)


_TITLE_INDEXES: dict[int, tuple[Catalog, dict[str, int], int]] = {}


def _title_index(catalog: Catalog) -> tuple[dict[str, int], int]:
    """Normalised title -> item id, and the most words in a title (built once per catalog)."""
    known = _TITLE_INDEXES.get(id(catalog))
    if known is not None and known[0] is catalog:
        return known[1], known[2]
    index: dict[str, int] = {}
    for item in catalog.items:
        key = normalise_title(item.title)
        # a one-word title shorter than 5 letters ('Up', 'Her') is an everyday word: never matched
        if key and (" " in key or len(key) >= 5):
            index.setdefault(key, item.item_id)
    longest = max((k.count(" ") + 1 for k in index), default=1)
    _TITLE_INDEXES[id(catalog)] = (catalog, index, longest)
    return index, longest


def mark_mentions(text: str, catalog: Catalog) -> str:
    """Replace catalog titles written out in free text ('I loved The Matrix (1999)') by mentions
    ('I loved @2571'); the longest title wins. Years in parentheses after a title go with it."""
    index, longest = _title_index(catalog)
    spans = [(m.start(), m.end(), m.group(0).lower()) for m in re.finditer(r"[A-Za-z0-9]+", text)]
    out, pos, k = [], 0, 0
    while k < len(spans):
        hit = None
        for n in range(min(longest, len(spans) - k), 0, -1):
            words = [w for _, _, w in spans[k:k + n]]
            key = " ".join(words[1:] if n > 1 and words[0] in ("the", "a", "an") else words)
            if key in index:
                hit = (n, index[key])
                break
        if hit is None:
            k += 1
            continue
        n, item_id = hit
        start, end = spans[k][0], spans[k + n - 1][1]
        year = re.match(r"\s*\(\s*\d{4}\s*\)", text[end:])
        end += year.end() if year else 0
        out.append(text[pos:start] + f"@{item_id}")
        pos = end
        k += n
        while k < len(spans) and spans[k][0] < end:
            k += 1
    out.append(text[pos:])
    return "".join(out)


# -- surface style --------------------------------------------------------------------------------

def typo(word: str, rng: np.random.Generator) -> str:
    """One typo: two neighbouring letters swapped, a letter dropped, or a letter doubled."""
    if len(word) < 3 or not word.isalpha():
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(3))
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def add_typos(text: str, rate: float, rng: np.random.Generator) -> str:
    """Each word (never a mention) gets a typo with chance `rate`. Draws one number per word,
    whatever the rate, so two rates give the same text apart from the typos."""
    def one(m: re.Match) -> str:
        word = m.group(0)
        hit = rng.random() < rate
        sub = np.random.Generator(np.random.PCG64(int(rng.integers(2**63))))
        return typo(word, sub) if hit and not word.startswith("@") else word

    return re.sub(r"@\d+|[A-Za-z]+", one, text)


def lower_case(text: str) -> str:
    """All lower case, mentions untouched (they hold only digits)."""
    return text.lower()
