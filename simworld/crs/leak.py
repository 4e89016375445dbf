"""The leak guard: a seeker never says a target's title.

Every seeker utterance passes through `LeakGuard.clean` before the CRS sees it. A sentence
leaks when it mentions a target (`@<id>`), mentions another film whose title is close to a
target's (a sequel), or spells out words that fuzzily match a target's title (difflib ratio
at least `threshold` over a window of about the title's length). A leaking sentence is
dropped when the utterance has others, and otherwise rewritten with the title replaced by a
neutral phrase. Each leaking sentence is counted.

Titles that normalise to fewer than four letters ('Up', 'It') are everyday words: for them
only a mention counts as a leak. A target the CRS has already named (`allowed`) is no
secret any more: the seeker may say it (to accept it, say).
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from typing import Iterable, Mapping

from simworld.crs.text import MENTION, normalise_title, sentences

REPLACEMENT = "a film I have in mind"
_WORD = re.compile(r"[A-Za-z0-9]+")


def similar(a: str, b: str) -> float:
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


class LeakGuard:
    """Keeps the target titles (`{item id: title}`) out of a seeker's text."""

    def __init__(self, targets: Mapping[int, str], threshold: float = 0.85,
                 titles: Mapping[int, str] | None = None):
        self.threshold = threshold
        self.targets = {int(k): normalise_title(v) for k, v in targets.items()}
        self.titles = titles or {}  # every film's title, to check the films a sentence mentions

    def title_leaks(self, title: str) -> bool:
        """Whether a (non-target) film's title is close enough to a target's to give it away."""
        key = normalise_title(title)
        return any(key and similar(key, t) >= self.threshold for t in self.targets.values())

    def _span(self, sentence: str, allowed: frozenset[int]) -> tuple[int, int] | None:
        """Where the sentence spells out a target's title, or None."""
        words = [(m.start(), m.end(), m.group(0).lower()) for m in _WORD.finditer(sentence)]
        for item_id, title in self.targets.items():
            if item_id in allowed:
                continue
            n = title.count(" ") + 1
            if len(title.replace(" ", "")) < 4:
                continue
            for size in sorted({max(1, n - 1), n, n + 1}):
                for k in range(0, len(words) - size + 1):
                    window = " ".join(w for _, _, w in words[k:k + size])
                    if similar(window, title) >= self.threshold:
                        return words[k][0], words[k + size - 1][1]
        return None

    def _leaky_mention(self, m: re.Match, allowed: frozenset[int]) -> bool:
        item_id = int(m.group(1))
        if item_id in allowed:
            return False
        return item_id in self.targets or (item_id in self.titles and self.title_leaks(self.titles[item_id]))

    def _leaks(self, sentence: str, allowed: frozenset[int]) -> bool:
        return any(self._leaky_mention(m, allowed) for m in MENTION.finditer(sentence)) or self._span(
            MENTION.sub(" ", sentence), allowed) is not None

    def _rewrite(self, sentence: str, allowed: frozenset[int]) -> str:
        text = MENTION.sub(lambda m: REPLACEMENT if self._leaky_mention(m, allowed) else m.group(0), sentence)
        for _ in range(8):  # a sentence may spell out more than one target
            plain = MENTION.sub(lambda m: " " * len(m.group(0)), text)  # keep offsets, hide mentions
            span = self._span(plain, allowed)
            if span is None:
                break
            text = text[:span[0]] + REPLACEMENT + text[span[1]:]
        return text

    def clean(self, text: str, allowed: Iterable[int] = ()) -> tuple[str, int]:
        """The text without leaks, and how many sentences leaked. `allowed`: films the CRS named."""
        allowed = frozenset(allowed)
        parts = sentences(text)
        leaking = [self._leaks(s, allowed) for s in parts]
        count = sum(leaking)
        if not count:
            return text, 0
        kept = [s for s, bad in zip(parts, leaking) if not bad]
        if kept:
            return " ".join(kept), count
        return " ".join(self._rewrite(s, allowed) for s in parts), count
