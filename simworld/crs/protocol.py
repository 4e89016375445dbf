"""The CRS protocol: every conversational recommender answers the dialogue so far.

    class MyCRS:
        name = "my-crs"
        model = "my-model-v2"          # what the data set records as the CRS's model
        async def respond(self, request: CRSRequest) -> CRSReply: ...

A CRS is stateless between calls: everything it needs is in the request (the whole dialogue
so far), so dialogues can run concurrently, in any order, and a resumed generation asks it
exactly what an uninterrupted one would. `simworld.crs.testing.CRSContract` is the test
suite every CRS passes; the HTTP CRS sends the same request as JSON (README, "CRS").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from simworld.errors import SimworldError

Act = Literal["ask", "recommend", "chat"]


@dataclass(frozen=True)
class Message:
    """One turn as a CRS sees it: who spoke, the text (films as `@<item id>`), the films
    mentioned, and for the CRS's own earlier turns the films it proposed."""

    role: Literal["seeker", "recommender"]
    text: str
    mentions: tuple[int, ...] = ()
    recommended: tuple[int, ...] = ()


@dataclass(frozen=True)
class CRSRequest:
    dialogue_id: str
    seeker_id: int  # the seeker's user id (a recommender may know its history)
    messages: tuple[Message, ...]
    k: int = 50  # length of the ranked list wanted

    @property
    def seeker_texts(self) -> list[str]:
        return [m.text for m in self.messages if m.role == "seeker"]

    @property
    def proposed(self) -> list[int]:
        """Every film the CRS has proposed so far, in order."""
        return [i for m in self.messages if m.role == "recommender" for i in m.recommended]


@dataclass(frozen=True)
class CRSReply:
    """The CRS's turn: its text, the films it proposes now (`recommended`, empty for a question),
    and the ranked list behind them (`ranking`, up to k ids, best first)."""

    text: str
    recommended: tuple[int, ...] = ()
    ranking: tuple[int, ...] = ()
    act: Act = "chat"
    notes: dict[str, int] = field(default_factory=dict)  # counters (e.g. invalid ids dropped)


class CRSError(SimworldError):
    """A CRS could not answer (a server down, a malformed reply): the generation stops with this
    message, and what was committed stays."""


@runtime_checkable
class CRS(Protocol):
    name: str
    model: str

    async def respond(self, request: CRSRequest) -> CRSReply: ...
