"""The CRS contract as a reusable pytest base class, for the built-ins and your own CRS alike.

    from simworld.crs.testing import CRSContract

    class TestMyCRS(CRSContract):
        def make(self, context):
            return MyCRS(context.catalog)

`make(context)` gets a `CRSContext`: a 24-film catalog, the viewing histories of six users
(ids 1..6) and the run's random streams. Every test method then runs against the CRS:
replies are well formed (text, known and distinct ids, at most k ranked), the same request
gets the same reply (a resumed generation must ask exactly what it asked before), requests
answered concurrently get the replies they get one by one, odd input does no harm, a
cooperative seeker is offered a film within a few turns, a film the seeker turned down is not
offered again, and a whole dialogue with a simulated seeker ends properly. Nothing here needs
data files, a network or a model.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import polars as pl

from simworld.catalog import Catalog
from simworld.crs.config import Knobs
from simworld.crs.dialogue import DialogueInfo, run_dialogue
from simworld.crs.leak import LeakGuard
from simworld.crs.need import Constraint, InformationNeed
from simworld.crs.protocol import CRS, CRSReply, CRSRequest, Message
from simworld.crs.records import END_REASONS
from simworld.crs.seeker import Seeker, TemplateVoice
from simworld.population import Persona
from simworld.recommenders.testing import contract_catalog, contract_interactions
from simworld.streams import Streams


@dataclass(frozen=True)
class CRSContext:
    catalog: Catalog
    history: pl.DataFrame  # user_id, item_id, rating, round
    streams: Streams
    seed: int = 7


def contract_persona(agent_id: int = 1, catalog: Catalog | None = None) -> Persona:
    catalog = catalog or contract_catalog()
    taste = {g: (1.0 if g in ("Comedy", "Drama") else 0.1) for g in catalog.genres}
    total = sum(taste.values())
    return Persona(agent_id=agent_id, name="Contract Seeker", age=30, occupation="teacher",
                   traits=("curious", "playful"), genre_taste={g: v / total for g, v in taste.items()},
                   activity=0.5, diversity=0.5, conformity=0.5, curiosity=0.5)


class CRSContract:
    """Tests every CRS must pass. Subclasses implement `make(context)`."""

    seed: int = 7
    turns_to_propose: int = 5  # a cooperative seeker is offered a film within this many CRS turns

    # -- hooks ----------------------------------------------------------------------------------
    def make(self, context: CRSContext) -> CRS:  # pragma: no cover - abstract
        raise NotImplementedError("subclasses of CRSContract implement make(context)")

    def make_context(self) -> CRSContext:
        return CRSContext(catalog=contract_catalog(), history=contract_interactions(), streams=Streams(self.seed),
                          seed=self.seed)

    # -- helpers --------------------------------------------------------------------------------
    def crs(self) -> tuple[CRS, CRSContext]:
        context = self.make_context()
        return self.make(context), context

    @staticmethod
    def ask(crs: CRS, request: CRSRequest) -> CRSReply:
        return asyncio.run(crs.respond(request))

    @staticmethod
    def request(*texts: str, recommended: dict[int, tuple[int, ...]] | None = None, k: int = 10,
                dialogue_id: str = "c1", seeker_id: int = 1) -> CRSRequest:
        """Alternating seeker / recommender texts, starting with the seeker's."""
        from simworld.crs.text import mentions

        messages = []
        for n, text in enumerate(texts):
            role = "seeker" if n % 2 == 0 else "recommender"
            proposed = (recommended or {}).get(n, ())
            messages.append(Message(role, text, tuple(mentions(text)), proposed))
        return CRSRequest(dialogue_id=dialogue_id, seeker_id=seeker_id, messages=tuple(messages), k=k)

    @staticmethod
    def check_reply(reply: CRSReply, catalog: Catalog, k: int) -> None:
        assert isinstance(reply, CRSReply)
        assert isinstance(reply.text, str) and reply.text.strip(), "the reply needs a text"
        for ids in (reply.ranking, reply.recommended):
            assert all(isinstance(i, int) and i in catalog for i in ids), ids
            assert len(set(ids)) == len(ids), f"repeated ids in {ids}"
        assert len(reply.ranking) <= k
        assert reply.act in ("ask", "recommend", "chat")

    # -- the contract ---------------------------------------------------------------------------
    def test_satisfies_protocol(self):
        crs, _ = self.crs()
        assert isinstance(crs, CRS)
        assert isinstance(crs.name, str) and crs.name and isinstance(crs.model, str)

    def test_first_reply_is_well_formed(self):
        crs, ctx = self.crs()
        reply = self.ask(crs, self.request("Hi! I'm looking for a comedy from the 80s."))
        self.check_reply(reply, ctx.catalog, 10)

    def test_ranking_has_at_most_k_films(self):
        crs, ctx = self.crs()
        for k in (1, 3, 50):
            text = ("I want a drama.", "What kind?", "Something funny, like @101.")
            self.check_reply(self.ask(crs, self.request(*text, k=k)), ctx.catalog, k)

    def test_same_request_same_reply(self):
        crs, _ = self.crs()
        request = self.request("I'd like a thriller.", "Any era?", "From the 90s please.")
        assert self.ask(crs, request) == self.ask(crs, request)
        again, _ = self.crs()
        assert self.ask(again, request) == self.ask(crs, request)

    def test_concurrent_replies_equal_one_by_one(self):
        crs, _ = self.crs()
        requests = [self.request(t, dialogue_id=f"c{n}", seeker_id=1 + n % 6)
                    for n, t in enumerate(["A comedy?", "Something scary.", "I loved @103.", "Any film.",
                                           "A drama from the 2000s", "No idea."])]
        one_by_one = [self.ask(crs, r) for r in requests]

        async def together():
            return list(await asyncio.gather(*(crs.respond(r) for r in requests)))

        assert asyncio.run(together()) == one_by_one

    def test_odd_input_does_no_harm(self):
        crs, ctx = self.crs()
        for text in ("", "   ", "😀 ¿qué? ünïcode", "a " * 2000, "I loved @999999 and @-1", "@@@ @"):
            self.check_reply(self.ask(crs, self.request(text, seeker_id=900)), ctx.catalog, 10)

    def test_a_cooperative_seeker_is_offered_a_film(self):
        crs, ctx = self.crs()
        answers = ["I want a comedy.", "A comedy from the 1990s.", "Something funny like @103.",
                   "Really anything funny.", "Just recommend one please.", "Anything at all."]
        texts: list[str] = []
        proposed: dict[int, tuple[int, ...]] = {}
        for turn in range(self.turns_to_propose):
            texts.append(answers[min(turn, len(answers) - 1)])
            reply = self.ask(crs, self.request(*texts, recommended=proposed))
            self.check_reply(reply, ctx.catalog, 10)
            if reply.recommended:
                return
            proposed[len(texts)] = reply.recommended
            texts.append(reply.text)
        raise AssertionError(f"no film was proposed within {self.turns_to_propose} turns")

    def test_a_film_turned_down_is_not_offered_again(self):
        crs, ctx = self.crs()
        texts = ["I want a comedy, just recommend one."]
        proposed: dict[int, tuple[int, ...]] = {}
        turned_down: set[int] = set()
        for _ in range(2 * self.turns_to_propose):
            reply = self.ask(crs, self.request(*texts, recommended=proposed))
            assert not set(reply.recommended) & turned_down, "a film the seeker turned down came back"
            proposed[len(texts)] = reply.recommended
            texts.append(reply.text)
            turned_down |= set(reply.recommended)
            texts.append("Not that one, something else please." if reply.recommended else "A comedy please.")
            if len(turned_down) >= 2:
                return

    def test_a_whole_dialogue_with_a_simulated_seeker(self):
        crs, ctx = self.crs()
        catalog = ctx.catalog
        persona = contract_persona(1, catalog)
        target = next(i.item_id for i in catalog.items if "Comedy" in i.genres)
        need = InformationNeed((target,), (Constraint("genre", "Comedy"),
                                           Constraint("era", str(catalog.get(target).year // 10 * 10))))
        seeker = Seeker(persona, need, Knobs(patience=4), catalog, ctx.streams, 0, TemplateVoice(),
                        LeakGuard({target: catalog.get(target).title}))
        info = DialogueInfo(index=0, persona={}, knobs={}, seeker_model="template", seed=self.seed)
        d = asyncio.run(run_dialogue(seeker, crs, info, max_turns=6, ranking_k=10))
        assert d.end_reason in END_REASONS
        roles = [t.role for t in d.turns]
        assert roles[0] == "seeker" and all(a != b for a, b in zip(roles, roles[1:]))
        assert d.crs_name == crs.name
