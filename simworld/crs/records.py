"""What a dialogue leaves behind: its turns, the seeker, its need and its outcome.

One `Dialogue` is one row of the data set (`export.DIALOGUE_SCHEMA`); its turns are a nested
list. Turn texts hold films as ReDial mentions (`@<item id>`). Dialogues imported from
ReDial keep the file's own top-level fields in `source` (verbatim), so a ReDial file read
and written again is the same file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Role = Literal["seeker", "recommender"]
EndReason = Literal["accepted", "gave_up", "max_turns", "imported"]
END_REASONS: tuple[str, ...] = ("accepted", "gave_up", "max_turns", "imported")

SEEKER_ACTS = ("request", "answer", "deflect", "reject", "pushback", "accept", "give_up")
RECOMMENDER_ACTS = ("ask", "recommend", "chat")


@dataclass(frozen=True)
class Turn:
    """One utterance. Recommender turns carry the films proposed (`recommended`) and the ranked
    list behind them (`ranking`, for Recall@k); seeker turns carry the seeker's state after it
    (`satisfaction` 0..1, `patience_left`, `constraints_disclosed`) and what it revealed."""

    index: int
    role: Role
    text: str
    act: str = "message"
    mentions: tuple[int, ...] = ()
    recommended: tuple[int, ...] = ()
    ranking: tuple[int, ...] = ()
    disclosed: tuple[str, ...] = ()
    accepted: int | None = None
    rejected: tuple[int, ...] = ()
    satisfaction: float | None = None
    patience_left: int | None = None
    constraints_disclosed: int | None = None
    leaks: int = 0
    voice: str = ""  # how the text was written: template, llm, template-fallback (seekers); the CRS's name
    sender_id: int | None = None  # ReDial senderWorkerId
    message_id: int | None = None  # ReDial messageId
    time_offset: int | None = None  # ReDial timeOffset (seconds)

    def as_record(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Turn":
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in rec.items() if k in known})


@dataclass(frozen=True)
class Dialogue:
    dialogue_id: str
    index: int
    seeker_id: int
    turns: tuple[Turn, ...]
    end_reason: str
    persona: dict[str, Any] = field(default_factory=dict)
    knobs: dict[str, float] = field(default_factory=dict)
    targets: tuple[int, ...] = ()
    constraints: tuple[dict[str, str], ...] = ()  # {"kind": ..., "value": ...} in reveal order
    accepted_item: int | None = None
    persuasiveness: float | None = None  # mean 0..2 over the recommending turns the seeker judged
    persuasiveness_source: str = ""  # "rule" or "llm"
    seeker_model: str = ""  # "template" or the LLM that worded the seeker
    crs_name: str = ""
    crs_model: str = ""  # the CRS's recommender or LLM
    recommender_id: int = 0  # ReDial respondentWorkerId
    seed: int = 0
    run_id: str = ""
    movie_mentions: tuple[tuple[int, str], ...] = ()  # (item id, "Title (Year)") in order of first mention
    questions: tuple[dict[str, int], ...] = ()  # per film: item_id, suggested, seen, liked (ReDial's 0/1/2)
    source: dict[str, Any] | None = None  # a ReDial import: the file's top-level fields, verbatim

    @property
    def success(self) -> bool:
        return self.end_reason == "accepted"

    @property
    def seeker_turns(self) -> list[Turn]:
        return [t for t in self.turns if t.role == "seeker"]

    @property
    def recommender_turns(self) -> list[Turn]:
        return [t for t in self.turns if t.role == "recommender"]

    @property
    def leaks(self) -> int:
        return sum(t.leaks for t in self.turns)

    def as_record(self) -> dict[str, Any]:
        rec = asdict(self)
        rec["turns"] = [t.as_record() for t in self.turns]
        rec["targets"] = list(self.targets)
        rec["constraints"] = [dict(c) for c in self.constraints]
        rec["persona"] = persona_record(self.persona)
        rec["knobs"] = [{"name": k, "value": float(v)} for k, v in self.knobs.items()]
        rec["movie_mentions"] = [{"item_id": i, "title": t} for i, t in self.movie_mentions]
        rec["questions"] = [dict(q) for q in self.questions]
        rec["source"] = json.dumps(self.source, ensure_ascii=False) if self.source is not None else None
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Dialogue":
        persona = dict(rec.get("persona") or {})
        if "genre_taste" in persona and isinstance(persona["genre_taste"], list):
            persona["genre_taste"] = {g["genre"]: g["weight"] for g in persona["genre_taste"]}
        if isinstance(persona.get("traits"), list):
            persona["traits"] = tuple(persona["traits"])
        return cls(
            dialogue_id=rec["dialogue_id"], index=int(rec["index"]), seeker_id=int(rec["seeker_id"]),
            turns=tuple(Turn.from_record(t) for t in rec["turns"]), end_reason=rec["end_reason"],
            persona=persona, knobs={k["name"]: k["value"] for k in rec.get("knobs") or []},
            targets=tuple(rec.get("targets") or ()),
            constraints=tuple({"kind": c["kind"], "value": c["value"]} for c in rec.get("constraints") or []),
            accepted_item=rec.get("accepted_item"), persuasiveness=rec.get("persuasiveness"),
            persuasiveness_source=rec.get("persuasiveness_source") or "",
            seeker_model=rec.get("seeker_model") or "", crs_name=rec.get("crs_name") or "",
            crs_model=rec.get("crs_model") or "", recommender_id=int(rec.get("recommender_id") or 0),
            seed=int(rec.get("seed") or 0), run_id=rec.get("run_id") or "",
            movie_mentions=tuple((m["item_id"], m["title"]) for m in rec.get("movie_mentions") or []),
            questions=tuple(dict(q) for q in rec.get("questions") or []),
            source=json.loads(rec["source"]) if rec.get("source") else None,
        )


def persona_record(persona: dict[str, Any]) -> dict[str, Any]:
    """A persona as a flat record: traits a list, the genre taste a list of {genre, weight}."""
    if not persona:
        return None  # type: ignore[return-value]
    rec = dict(persona)
    rec["traits"] = list(rec.get("traits") or ())
    taste = rec.get("genre_taste") or {}
    rec["genre_taste"] = [{"genre": g, "weight": float(w)} for g, w in taste.items()]
    return rec
