"""Text realism: do the lines simulated users write read like people's (issue 13 §4)?

Three checks over a run's texts (watch feelings with their ratings; posts and chat lines):

* **consistency**: a line's sentiment against its rating. Sentiment is a small lexicon score
  in [-1, 1] (positive minus negative words over both, with "not"/"n't" flipping the next
  word); a line agrees when a rating >= 4 reads positive or one <= 2 reads negative, and
  contradicts when it reads the other way. Lines that read neutral are not counted.
* **repetition across agents**: distinct-1 and distinct-2 (unique n-grams over all n-grams),
  and the share of lines that another agent wrote word for word.
* **length and junk**: mean words, the share of lines under three words, and of lines that
  talk in numbers or stars ("2.5 star", "1.5 stars") instead of feelings.

`line_flags(text, rating)` says what is wrong with one line; `voice_flags` adds what is wrong
with a line a model wrote about one film (it only names the film, or names the speaker);
`score_texts` and `score_run` give the figures for many.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

POSITIVE = frozenset("""loved love lovely great best brilliant wonderful gripping gripped enjoyed enjoy fun funny
beautiful amazing excellent fantastic favourite favorite happily happy moving perfect superb good fine decent
pleasant charming delightful masterpiece recommend classic stunning touching clever solid better nice""".split())
NEGATIVE = frozenset("""boring bored disappointing disappointed dull slow bad worst awful terrible regret waste
hated hate predictable drifted weak poor mess tedious annoying forgettable silly stupid long confusing
overrated meh ugh gross cheap awful terrible ridiculous cliched cliche pitiful lazy soppy stiff flat bland
painful nightmare""".split())
NEGATORS = frozenset({"not", "no", "never", "didn't", "don't", "wasn't", "isn't", "nothing", "hardly"})
_WORD = re.compile(r"[a-z']+")
_NUMERIC = re.compile(r"\d+(\.\d+)?\s*(/\s*\d+\s*)?(stars?|out of)|\d\.\d|\bstars?\b", re.IGNORECASE)


def sentiment(text: str) -> float:
    words = _WORD.findall(text.lower())
    pos = neg = 0
    flip = False
    for word in words:
        if word in NEGATORS or word.endswith("n't"):
            flip = True
            continue
        if word in POSITIVE:
            pos, neg = (pos, neg + 1) if flip else (pos + 1, neg)
        elif word in NEGATIVE:
            pos, neg = (pos + 1, neg) if flip else (pos, neg + 1)
        flip = False
    return (pos - neg) / (pos + neg) if pos + neg else 0.0


def line_flags(text: str, rating: float | None = None) -> set[str]:
    """What reads wrong in one line: short, numeric (talks in stars/numbers), contradicts (its rating)."""
    flags = set()
    if len(_WORD.findall(text.lower())) < 3:
        flags.add("short")
    if _NUMERIC.search(text):
        flags.add("numeric")
    if rating is not None:
        s = sentiment(text)
        if (rating >= 4 and s < 0) or (rating <= 2 and s > 0):
            flags.add("contradicts")
    return flags


_FILLER = frozenset({"the", "a", "an", "of", "and", "in", "on", "it", "this", "film", "movie", "i", "my"})


def voice_flags(text: str, rating: float | None, title: str = "", name: str = "") -> set[str]:
    """`line_flags` plus what reads wrong in a line a model voiced about one film: "title" (the
    line only repeats words of the title), "speaker" (it names the speaker or says who they
    are: a prompt echo). The voice gate swaps such lines for the template's."""
    flags = line_flags(text, rating)
    words = [w for w in _WORD.findall(text.lower()) if w not in _FILLER]
    title_words = set(_WORD.findall(re.sub(r"\(\d{4}\)", "", title.lower())))
    if title_words and words and set(words) <= title_words:
        flags.add("title")
    low = text.lower()
    if (name and any(part.lower() in _WORD.findall(low) for part in name.split() if len(part) > 2)) \
            or re.search(r"\byou are\b|\blikes? [a-z]+, [a-z]+", low):
        flags.add("speaker")
    return flags


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def score_texts(lines: Sequence[tuple[int, str, float | None]]) -> dict[str, Any]:
    """Figures over (agent_id, text, rating or None) lines."""
    lines = [(a, t.strip(), r) for a, t, r in lines if t and t.strip()]
    if not lines:
        return {"lines": 0}
    words = [_WORD.findall(t.lower()) for _, t, _ in lines]
    uni = [g for w in words for g in _ngrams(w, 1)]
    bi = [g for w in words for g in _ngrams(w, 2)]
    authors: dict[str, set[int]] = {}
    for agent, text, _ in lines:
        authors.setdefault(text.lower(), set()).add(agent)
    shared = sum(1 for _, t, _ in lines if len(authors[t.lower()]) > 1)
    agree = contradict = 0
    for _, text, rating in lines:
        if rating is None:
            continue
        s = sentiment(text)
        if s == 0 or 2 < rating < 4:
            continue
        good = (rating >= 4 and s > 0) or (rating <= 2 and s < 0)
        agree += good
        contradict += not good
    flags = Counter(f for _, t, r in lines for f in line_flags(t, r))
    n = len(lines)
    return {"lines": n, "distinct_1": len(set(uni)) / max(len(uni), 1), "distinct_2": len(set(bi)) / max(len(bi), 1),
            "shared_across_agents": shared / n, "mean_words": sum(map(len, words)) / n,
            "short": flags["short"] / n, "numeric": flags["numeric"] / n,
            "consistency": agree / (agree + contradict) if agree + contradict else None,
            "contradicts": flags["contradicts"] / n}


def voiced_lines(events):
    """The watch rows an LLM was asked to voice (a hybrid agent's first VOICED_FILMS watches of a
    decision), with `template`: True where the voice gate, or an unusable answer, left the rule
    model's line (the decision's fallback row names those items)."""
    import polars as pl

    from simworld.agents.llm_policy import VOICED_FILMS, voice_gated_items

    watches = (events.filter((pl.col("action") == "watch") & pl.col("policy").is_in(["hybrid", "fallback"]))
               .sort("round", "seq"))
    voiced = watches.group_by("round", "agent_id", maintain_order=True).head(VOICED_FILMS)
    gated, failed = set(), set()
    for rnd, agent, text in events.filter(pl.col("action") == "fallback").select("round", "agent_id", "text").rows():
        items = voice_gated_items(text)
        gated |= {(rnd, agent, item) for item in items}
        if not items:
            failed.add((rnd, agent))  # a whole answer was invalid (runs before the gate): the templates spoke
    keys = voiced.select("round", "agent_id", "item_id").rows()
    return voiced.with_columns(template=pl.Series([k in gated or k[:2] in failed for k in keys], dtype=pl.Boolean))


def score_run(run_dir: Path) -> dict[str, Any]:
    """Text realism of a run folder: watch feelings (with ratings), every other text row, and
    where an LLM voiced feelings, its lines as shown ("voiced", with the share the templates
    wrote) and the model's own lines among them ("voiced_by_model")."""
    import polars as pl

    from simworld.recorder import read_events

    events = read_events(Path(run_dir)).filter(pl.col("text").is_not_null() & (pl.col("text") != ""))
    watches = events.filter(pl.col("action") == "watch")
    other = events.filter(pl.col("action").is_in(["post", "repost", "chat", "chat_line", "say"]))
    def rows(frame: pl.DataFrame) -> list[tuple]:
        return frame.select("agent_id", "text", "rating").rows()

    out = {"feelings": score_texts(rows(watches))}
    voiced = voiced_lines(events)
    if voiced.height:
        out["voiced"] = {**score_texts(rows(voiced)), "template_share": float(voiced["template"].mean())}
        out["voiced_by_model"] = score_texts(rows(voiced.filter(~pl.col("template"))))
        out["feelings"]["template_share"] = 1 - out["voiced_by_model"]["lines"] / max(watches.height, 1)
    out["posts_and_chats"] = score_texts([(a, t, None) for a, t in other.select("agent_id", "text").rows()])
    return out
