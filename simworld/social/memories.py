"""The social side's memory records: what an agent heard, told and posted.

They are ordinary observations of `simworld.memory` (written in the round's one batch by
the remember stage). A record about a film carries `item_id` but no `rating`, so a rule
agent's reflection, which moves taste toward films it rated, leaves them out.
"""

from __future__ import annotations

from simworld.catalog import Item
from simworld.memory import MemoryRecord

HEARD_IMPORTANCE = {"friend": 0.55, "feed": 0.35}


def verdict_words(verdict: float) -> str:
    if verdict >= 0.5:
        return "who loved it"
    if verdict > 0:
        return "who liked it"
    if verdict <= -0.5:
        return "who disliked it"
    if verdict < 0:
        return "who was not keen"
    return "who mentioned it"


def heard_text(item: Item, teller: str, source: str, verdict: float, round_no: int, said: str) -> str:
    how = "heard about" if source == "friend" else "saw a post about"
    quote = f': "{said}"' if said else ""
    return f"Round {round_no}: {how} {item.label} from {teller}, {verdict_words(verdict)}{quote}"


def heard_memory(agent_id: int, item: Item, teller: str, source: str, verdict: float, round_no: int,
                 said: str = "") -> MemoryRecord:
    """A film heard about from a friend in a chat ("friend") or read in a post ("feed")."""
    return MemoryRecord(agent_id=agent_id, text=heard_text(item, teller, source, verdict, round_no, said[:160]),
                        importance=HEARD_IMPORTANCE[source] + 0.2 * abs(verdict), created_round=round_no,
                        extra={"item_id": item.item_id, "source": source})


def told_memory(agent_id: int, item: Item, listener: str, round_no: int) -> MemoryRecord:
    return MemoryRecord(agent_id=agent_id, text=f"Round {round_no}: told {listener} about {item.label}.",
                        importance=0.3, created_round=round_no, extra={"item_id": item.item_id})


def chat_memory(agent_id: int, other: str, round_no: int, last_line: str) -> MemoryRecord:
    """A chat in which no film was named."""
    return MemoryRecord(agent_id=agent_id, text=f'Round {round_no}: chatted with {other}: "{last_line[:160]}"',
                        importance=0.25, created_round=round_no)


def post_memory(agent_id: int, item: Item, text: str, round_no: int, repost_of: str | None = None) -> MemoryRecord:
    what = f"reposted {repost_of}'s post about" if repost_of else "posted about"
    return MemoryRecord(agent_id=agent_id, text=f'Round {round_no}: {what} {item.label}: "{text[:160]}"',
                        importance=0.35, created_round=round_no, extra={"item_id": item.item_id})
