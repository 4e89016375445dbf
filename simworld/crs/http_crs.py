"""The HTTP CRS: any server that takes the dialogue so far and returns an utterance and ranked
items, so researchers plug in their own model. One POST per CRS turn, JSON both ways
(README, "CRS: the HTTP protocol"):

    request  {"dialogue_id": "12", "seeker_id": 7, "k": 50,
              "messages": [{"role": "seeker", "text": "I want a comedy like @42",
                            "mentions": [42], "recommended": []}, ...]}
    response {"text": "How about @77?", "items": [77, 13, ...],
              "recommended": [77], "act": "recommend"}

`items` is the ranked list (best first, up to k); `recommended` the films proposed in this
turn (default: the films the text mentions as `@<id>`); `act` is optional. A connection
failure or a 5xx answer is retried `retries` times; then, or on a 4xx or a body that is not
such JSON, the generation stops with one message naming the URL (what was committed stays).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import asdict
from typing import Any

from simworld.crs.protocol import CRSError, CRSReply, CRSRequest
from simworld.crs.text import mentions


def request_body(request: CRSRequest) -> dict[str, Any]:
    return {"dialogue_id": request.dialogue_id, "seeker_id": request.seeker_id, "k": request.k,
            "messages": [{**asdict(m), "mentions": list(m.mentions), "recommended": list(m.recommended)}
                         for m in request.messages]}


def parse_reply(payload: Any, source: str) -> CRSReply:
    """A server's JSON answer as a `CRSReply`; CRSError saying what is wrong with it."""
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
        raise CRSError(f"{source} answered without a \"text\" string")
    def ids(key: str) -> tuple[int, ...] | None:
        value = payload.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
            raise CRSError(f"{source} answered with {key!r} that is not a list of integer item ids")
        return tuple(value)

    items = ids("items") or ()
    recommended = ids("recommended")
    if recommended is None:
        recommended = tuple(mentions(payload["text"]))
    act = payload.get("act")
    if act not in (None, "ask", "recommend", "chat"):
        raise CRSError(f"{source} answered with act {act!r}; use ask, recommend or chat")
    return CRSReply(text=payload["text"], recommended=recommended, ranking=items,
                    act=act or ("recommend" if recommended else "ask"))


class HTTPCRS:
    def __init__(self, url: str, *, timeout_s: float = 30.0, retries: int = 2, concurrency: int = 8,
                 name: str = "http"):
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.concurrency = concurrency
        self.name = name
        self.model = name
        self._gates: dict[int, asyncio.Semaphore] = {}  # one per event loop

    def _post(self, body: bytes) -> Any:
        """One POST, in a worker thread; returns the decoded JSON or raises CRSError."""
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - the user's URL
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace").strip()
            if exc.code >= 500:
                raise _Retry(f"the HTTP CRS at {self.url} answered {exc.code}: {detail}") from None
            raise CRSError(f"the HTTP CRS at {self.url} refused the request ({exc.code}): {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retry(f"the HTTP CRS at {self.url} cannot be reached ({reason})") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise CRSError(f"the HTTP CRS at {self.url} answered with something that is not JSON: "
                           f"{raw[:120]!r}") from None

    async def respond(self, request: CRSRequest) -> CRSReply:
        gate = self._gates.setdefault(id(asyncio.get_running_loop()), asyncio.Semaphore(self.concurrency))
        body = json.dumps(request_body(request)).encode("utf-8")
        async with gate:
            for attempt in range(self.retries + 1):
                try:
                    payload = await asyncio.to_thread(self._post, body)
                    break
                except _Retry as exc:
                    if attempt == self.retries:
                        raise CRSError(str(exc)) from None
                    await asyncio.sleep(0.2 * 2 ** attempt)
        return parse_reply(payload, f"the HTTP CRS at {self.url}")


class _Retry(Exception):
    """A failure worth another try (no connection, 5xx)."""
