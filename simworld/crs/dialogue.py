"""The dialogue loop: the seeker opens, then the CRS and the seeker take turns until the seeker
accepts a film ('accepted'), gives up ('gave_up') or the CRS has had `max_turns` turns
('max_turns'). Every turn is recorded with the films proposed, the ranked list behind them and
the seeker's state after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simworld.catalog import Catalog
from simworld.crs.protocol import CRS, CRSError, CRSReply, CRSRequest, Message
from simworld.crs.records import Dialogue, Turn
from simworld.crs.seeker import Move, Seeker
from simworld.crs.text import mentions

RECOMMENDER_ID = 0  # the CRS's ReDial worker id in generated dialogues


@dataclass(frozen=True)
class DialogueInfo:
    """What the data set records about a dialogue besides its turns."""

    index: int
    persona: dict[str, Any]
    knobs: dict[str, float]
    seeker_model: str
    seed: int
    run_id: str = ""

    @property
    def dialogue_id(self) -> str:
        return str(self.index)


def checked_reply(reply: CRSReply, catalog: Catalog, k: int) -> CRSReply:
    """A reply with unknown and repeated ids dropped, the ranking cut to k, and every proposed
    film mentioned in the text (appended as `@<id>` where the CRS did not write it)."""
    def known(ids) -> tuple[int, ...]:
        return tuple(dict.fromkeys(int(i) for i in ids if int(i) in catalog))

    ranking = known(reply.ranking)[:k]
    recommended = known(reply.recommended)
    said = set(mentions(reply.text))
    missing = [i for i in recommended if i not in said]
    text = reply.text.strip()
    if missing:
        text = f"{text} {' '.join(f'@{i}' for i in missing)}".strip()
    act = reply.act if reply.act in ("ask", "recommend", "chat") else "chat"
    if recommended:
        act = "recommend"
    return CRSReply(text=text or "...", recommended=recommended, ranking=ranking or recommended, act=act,
                    notes=dict(reply.notes))


async def run_dialogue(seeker: Seeker, crs: CRS, info: DialogueInfo, max_turns: int, ranking_k: int,
                       judge_llm=None) -> Dialogue:
    catalog = seeker.catalog
    turns: list[Turn] = []
    judged: list[int] = []
    clock = 0

    def record(role: str, text: str, **extra: Any) -> Turn:
        nonlocal clock
        clock += 5 + len(text.split()) // 2  # a plausible timeOffset: reading and typing
        turn = Turn(index=len(turns), role=role, text=text, mentions=tuple(mentions(text)),
                    sender_id=seeker.persona.agent_id if role == "seeker" else RECOMMENDER_ID,
                    message_id=info.index * 1000 + len(turns), time_offset=clock, **extra)
        turns.append(turn)
        return turn

    def seeker_turn(move: Move) -> Turn:
        if move.judged is not None:
            judged.append(move.judged)
        return record("seeker", move.text, act=move.act, disclosed=tuple(c.label() for c in move.disclosed),
                      accepted=move.accepted, rejected=move.rejected, satisfaction=move.satisfaction,
                      patience_left=move.patience_left, constraints_disclosed=move.constraints_disclosed,
                      leaks=move.leaks, voice=move.voice)

    seeker_turn(await seeker.open())
    end = "max_turns"
    for _ in range(max_turns):
        request = CRSRequest(dialogue_id=info.dialogue_id, seeker_id=seeker.persona.agent_id, k=ranking_k,
                             messages=tuple(Message(t.role, t.text, t.mentions, t.recommended) for t in turns))
        try:
            raw = await crs.respond(request)
        except CRSError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plug-in's bug: say which CRS and dialogue
            raise CRSError(f"CRS {crs.name!r} failed in dialogue {info.dialogue_id}: "
                           f"{type(exc).__name__}: {exc}") from exc
        reply = checked_reply(raw, catalog, ranking_k)
        crs_turn = record("recommender", reply.text, act=reply.act, recommended=reply.recommended,
                          ranking=reply.ranking, voice=crs.name)
        move = await seeker.react(crs_turn, turns)
        seeker_turn(move)
        if move.act == "accept":
            end = "accepted"
            break
        if move.act == "give_up":
            end = "gave_up"
            break
    score, source = await seeker.judge(judged, turns, judge_llm)
    return Dialogue(
        dialogue_id=info.dialogue_id, index=info.index, seeker_id=seeker.persona.agent_id, turns=tuple(turns),
        end_reason=end, persona=info.persona, knobs=info.knobs, targets=seeker.need.targets,
        constraints=tuple({"kind": c.kind, "value": c.value} for c in seeker.need.constraints),
        accepted_item=seeker.state.accepted, persuasiveness=score, persuasiveness_source=source,
        seeker_model=info.seeker_model, crs_name=crs.name, crs_model=crs.model, recommender_id=RECOMMENDER_ID,
        seed=info.seed, run_id=info.run_id, movie_mentions=movie_mentions(turns, catalog),
        questions=questions(turns, seeker.need.constraints),
    )


def movie_mentions(turns: list[Turn], catalog: Catalog) -> tuple[tuple[int, str], ...]:
    seen: dict[int, str] = {}
    for t in turns:
        for i in t.mentions:
            if i not in seen and i in catalog:
                seen[i] = catalog.get(i).label
    return tuple(seen.items())


def questions(turns: list[Turn], constraints) -> tuple[dict[str, int], ...]:
    """ReDial's per-film answers from what the simulation knows: suggested (by the recommender),
    seen and liked (0 no, 1 yes, 2 did not say)."""
    similar = {int(c.value) for c in constraints if c.kind == "similar_to"}
    first_by: dict[int, str] = {}
    for t in turns:
        for i in t.mentions:
            first_by.setdefault(i, t.role)
    accepted = {t.accepted for t in turns if t.accepted is not None}
    rejected = {i for t in turns for i in t.rejected}
    out = []
    for item, role in first_by.items():
        if item in similar and role == "seeker":
            seen, liked = 1, 1
        elif item in accepted:
            seen, liked = 0, 1
        elif item in rejected:
            seen, liked = 2, 0
        else:
            seen, liked = 2, 2
        out.append({"item_id": item, "suggested": int(role == "recommender"), "seen": seen, "liked": liked})
    return tuple(out)
