"""ReDial (Li et al., NeurIPS 2018) JSON lines: import as `Dialogue`s, and export.

A ReDial line is one conversation: `conversationId` (a string), `initiatorWorkerId` (the
seeker), `respondentWorkerId` (the recommender), `messages` (`timeOffset`, `text` with films
written `@<movieId>`, `senderWorkerId`, `messageId`), `movieMentions` (`{"<id>": "Title
(Year)"}`), and `initiatorQuestions` / `respondentQuestions` (`{"<id>": {"suggested": 0|1,
"seen": 0|1|2, "liked": 0|1|2}}`, in the real file sometimes `[]`).

Lossless both ways: an imported conversation keeps the file's top-level fields verbatim
(`Dialogue.source`) and each message's ids and offsets in its turn, so `write_redial` of what
`read_redial` gave writes the same bytes; a generated dialogue is written from its own records
(mentions, `movie_mentions`, `questions`) with the same key order and JSON formatting as the
real file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from simworld.crs.records import Dialogue, Turn
from simworld.crs.text import mentions
from simworld.errors import DataError

KEY_ORDER = ("movieMentions", "respondentQuestions", "messages", "conversationId", "respondentWorkerId",
             "initiatorWorkerId", "initiatorQuestions")
_REQUIRED = {"conversationId", "initiatorWorkerId", "respondentWorkerId", "messages"}


def read_redial(path: str | Path) -> Iterator[dict[str, Any]]:
    """The conversations of a ReDial JSON-lines file; DataError naming the line of a bad one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"ReDial file not found: {path}")
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{path}, line {number}: not JSON ({exc})") from None
            missing = _REQUIRED - set(obj) if isinstance(obj, dict) else _REQUIRED
            if missing:
                raise DataError(f"{path}, line {number}: missing {', '.join(sorted(missing))}")
            yield obj


def redial_to_dialogue(obj: dict[str, Any], index: int = 0) -> Dialogue:
    seeker = obj["initiatorWorkerId"]
    turns = []
    for k, m in enumerate(obj["messages"]):
        role = "seeker" if m["senderWorkerId"] == seeker else "recommender"
        found = tuple(mentions(m["text"]))
        turns.append(Turn(index=k, role=role, text=m["text"], mentions=found,
                          recommended=found if role == "recommender" else (),
                          sender_id=m["senderWorkerId"], message_id=m["messageId"], time_offset=m["timeOffset"]))
    titles = obj.get("movieMentions") or {}
    movie_mentions = tuple((int(i), t) for i, t in titles.items()) if isinstance(titles, dict) else ()
    answers = obj.get("initiatorQuestions") or {}
    questions = tuple({"item_id": int(i), **{k: int(v) for k, v in a.items()}}
                      for i, a in answers.items()) if isinstance(answers, dict) else ()
    source = {k: v for k, v in obj.items() if k != "messages"}
    return Dialogue(dialogue_id=str(obj["conversationId"]), index=index, seeker_id=int(seeker), turns=tuple(turns),
                    end_reason="imported", recommender_id=int(obj["respondentWorkerId"]),
                    movie_mentions=movie_mentions, questions=questions, seeker_model="human", crs_name="human",
                    source=source)


def import_redial(path: str | Path) -> list[Dialogue]:
    return [redial_to_dialogue(obj, k) for k, obj in enumerate(read_redial(path))]


def dialogue_to_redial(d: Dialogue) -> dict[str, Any]:
    messages = [{"timeOffset": t.time_offset if t.time_offset is not None else 10 * t.index, "text": t.text,
                 "senderWorkerId": t.sender_id if t.sender_id is not None else
                 (d.seeker_id if t.role == "seeker" else d.recommender_id),
                 "messageId": t.message_id if t.message_id is not None else d.index * 1000 + t.index}
                for t in d.turns]
    if d.source is not None:
        fields = dict(d.source)
    else:
        answers = {str(q["item_id"]): {"suggested": q["suggested"], "seen": q["seen"], "liked": q["liked"]}
                   for q in d.questions}
        fields = {"movieMentions": {str(i): title for i, title in d.movie_mentions},
                  "respondentQuestions": answers, "conversationId": d.dialogue_id,
                  "respondentWorkerId": d.recommender_id, "initiatorWorkerId": d.seeker_id,
                  "initiatorQuestions": answers}
    fields["messages"] = messages
    ordered = {k: fields[k] for k in KEY_ORDER if k in fields}
    ordered.update({k: v for k, v in fields.items() if k not in ordered})
    return ordered


def write_redial(dialogues: Iterable[Dialogue], path: str | Path) -> Path:
    """One JSON object a line, formatted as the ReDial files are (json.dumps defaults)."""
    from simworld.recorder import atomic_write_bytes

    path = Path(path)
    text = "".join(json.dumps(dialogue_to_redial(d)) + "\n" for d in dialogues)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path
