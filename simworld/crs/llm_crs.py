"""The LLM CRS: candidates retrieved with the embedder, the LLM asks or recommends among them.

Each turn the seeker's words so far (titles written out) are embedded and the films closest to
them are the candidates; films proposed before are left out. The LLM sees the dialogue and the
candidates (`[id] Title (Year) [genres]`) and answers as JSON (`CRSAnswer`): ask a question,
or recommend up to `show` candidates by id with a reason. Ids that are not candidates are
dropped and counted. An answer that does not parse is sent back once with the error (house
rule 6); a second failure recommends the best candidate with a plain sentence, counted as a
fallback. The ranked list behind the turn is the LLM's picks, then the other films by
closeness.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from simworld.catalog import Catalog
from simworld.crs.protocol import CRSError, CRSReply, CRSRequest
from simworld.crs.text import mark_mentions, render
from simworld.embedding import Embedder

SYSTEM = ("You are a friendly movie recommender chatting with a user. Each turn, either ask ONE short question "
          "to learn what they want, or recommend one or two films from the candidate list, by their id, with a "
          "one-sentence reason. Never recommend a film that is not in the list. Answer as JSON.")


class CRSAnswer(BaseModel):
    act: Literal["ask", "recommend"]
    message: str = Field(max_length=400)
    item_ids: list[int] = Field(default_factory=list, max_length=3)


class LLMCRS:
    def __init__(self, llm, catalog: Catalog, embedder: Embedder, *, model_name: str, candidates: int = 15,
                 show: int = 2):
        self.llm = llm
        self.catalog = catalog
        self.embedder = embedder
        self.candidates = candidates
        self.show = show
        self.name = "llm"
        self.model = model_name
        vectors = np.asarray(embedder.embed([item.text for item in catalog.items]), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = vectors / np.where(norms == 0, 1.0, norms)

    def closest(self, request: CRSRequest) -> list[int]:
        """Every film not proposed or named yet, closest to the seeker's words first."""
        said = " ".join(render(t, self.catalog) for t in request.seeker_texts)
        skip = set(request.proposed) | {i for m in request.messages if m.role == "seeker" for i in m.mentions}
        query = np.asarray(self.embedder.embed([said or "a good movie"]), dtype=np.float32)[0]
        scores = self.vectors @ query
        order = np.argsort(-scores, kind="stable")
        return [int(self.catalog.ids[j]) for j in order if int(self.catalog.ids[j]) not in skip]

    def prompt(self, request: CRSRequest, candidates: list[int]) -> list[dict[str, str]]:
        listing = "\n".join(f"[{i}] {self.catalog.get(i).label} [{', '.join(self.catalog.get(i).genres)}]"
                            for i in candidates)
        said = "\n".join(f"{'User' if m.role == 'seeker' else 'You'}: {render(m.text, self.catalog)}"
                         for m in request.messages[-8:])
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Candidates:\n{listing}\n\nConversation:\n{said}\n\nYour turn."}]

    async def respond(self, request: CRSRequest) -> CRSReply:
        from simworld.llm import LLMError, LLMOutputError, LLMRequest

        ranked = self.closest(request)
        candidates = ranked[:self.candidates]
        messages = self.prompt(request, candidates)
        notes = {"invalid_ids": 0, "fallback": 0, "retried": 0}
        answer = None
        for _ in range(2):  # the answer, and once more with the validation error (house rule 6)
            try:
                reply = await self.llm.complete(LLMRequest(messages=messages, response_model=CRSAnswer,
                                                           purpose="crs_recommender", agent_id=request.seeker_id))
                answer = reply.parsed
                break
            except LLMOutputError as exc:
                notes["retried"] += 1
                messages = [*messages, {"role": "assistant", "content": exc.raw_text[:500]},
                            {"role": "user", "content": f"That is not valid: {exc.validation_error}. Answer "
                                                        "again as JSON with act, message and item_ids."}]
            except LLMError as exc:
                raise CRSError(f"the LLM CRS's model failed in dialogue {request.dialogue_id}: {exc}") from exc
        if answer is None:
            notes["fallback"] = 1
            best = candidates[0] if candidates else None
            if best is None:
                return CRSReply(text="I'm out of ideas, sorry.", ranking=tuple(ranked[:request.k]), notes=notes)
            return CRSReply(text=f"You might like @{best}.", recommended=(best,),
                            ranking=tuple(ranked[:request.k]), act="recommend", notes=notes)
        picks = [i for i in dict.fromkeys(answer.item_ids) if i in candidates][:self.show]
        notes["invalid_ids"] = len(answer.item_ids) - len(picks)
        text = re.sub(r"\[(\d+)\]", lambda m: f"@{m.group(1)}" if int(m.group(1)) in candidates else m.group(0),
                      answer.message)
        text = mark_mentions(text, self.catalog)
        if answer.act == "recommend" and not picks and candidates:
            picks = [candidates[0]]
            notes["fallback"] = 1
        recommended = tuple(picks) if answer.act == "recommend" else ()
        ranking = tuple([*picks, *[i for i in ranked if i not in picks]][:request.k])
        return CRSReply(text=text, recommended=recommended, ranking=ranking,
                        act="recommend" if recommended else "ask", notes=notes)
