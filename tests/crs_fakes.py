"""Stand-ins for tests of the CRS module: a deterministic LanguageModel for the LLM CRS and for
LLM-voiced seekers, and tiny CRSs that only ask or only propose one kind of film."""

from __future__ import annotations

import json
import re

from simworld.crs.protocol import CRSReply, CRSRequest
from simworld.llm import LLMResponse, LLMUsage, validate_output


class ScriptedLLM:
    """Answers like a small but sensible model: the LLM CRS recommends the first candidate once the
    user has said anything with a genre word in it, else asks; a seeker's message is a fixed
    sentence (after `plant`, to plant a leak); a judgement is 1. Counts calls by purpose."""

    def __init__(self, plant: str = ""):
        self.plant = plant
        self.calls: dict[str, int] = {}

    async def complete(self, request):
        self.calls[request.purpose] = self.calls.get(request.purpose, 0) + 1
        prompt = request.messages[-1]["content"]
        if request.purpose == "crs_recommender":
            ids = [int(x) for x in re.findall(r"^\[(\d+)\]", prompt, flags=re.M)]
            said = prompt.split("Conversation:", 1)[-1].lower()
            if ids and re.search(r"comedy|drama|thriller|funny|scary|film|movie|anything", said):
                text = json.dumps({"act": "recommend", "message": f"Try [{ids[0]}], it fits.", "item_ids": ids[:1]})
            else:
                text = json.dumps({"act": "ask", "message": "What kind of movie do you like?", "item_ids": []})
        elif request.purpose == "crs_judge":
            text = json.dumps({"score": 1})
        else:
            text = f"{self.plant} I would like something good tonight.".strip()
        parsed = validate_output(request, text) if request.response_model is not None else None
        return LLMResponse(text=text, parsed=parsed, usage=LLMUsage(model="scripted"))


class AskingCRS:
    """Never proposes a film: only asks (for the seeker's cooperativeness and patience)."""

    name = "asking"
    model = "none"
    questions = ("What kind of movie do you want?", "Any particular decade or era?",
                 "Is there a movie you loved recently?", "How do you want to feel after it?")

    async def respond(self, request: CRSRequest) -> CRSReply:
        n = sum(1 for m in request.messages if m.role == "recommender")
        return CRSReply(text=self.questions[n % len(self.questions)], act="ask")


class ProposingCRS:
    """Proposes, in turn, films chosen by `pick(request) -> item id` (never the same twice)."""

    name = "proposing"
    model = "none"

    def __init__(self, pick):
        self.pick = pick

    async def respond(self, request: CRSRequest) -> CRSReply:
        item = self.pick(request)
        return CRSReply(text=f"How about @{item}?", recommended=(item,), ranking=(item,), act="recommend")
