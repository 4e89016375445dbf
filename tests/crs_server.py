"""A real HTTP server speaking simworld's CRS protocol (README, "CRS: the HTTP protocol"), for tests.

Standard library only: a ThreadingHTTPServer on 127.0.0.1 (a free port) that answers
`POST /crs` by asking a wrapped CRS object (the retrieval CRS in the tests), so the HTTP CRS
is tested against a server that really parses the JSON it sends. `script` (consumed one per
request) injects faults: "500" (a server error), "400" (a refused request), "garbage" (a 200
whose body is not JSON), or None for a normal answer. `requests` logs every request body.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from simworld.crs.protocol import CRSRequest, Message


def request_from_json(body: dict[str, Any]) -> CRSRequest:
    messages = tuple(Message(m["role"], m["text"], tuple(m.get("mentions") or ()), tuple(m.get("recommended") or ()))
                     for m in body["messages"])
    return CRSRequest(dialogue_id=str(body["dialogue_id"]), seeker_id=int(body["seeker_id"]), messages=messages,
                      k=int(body.get("k", 50)))


class CRSServer:
    def __init__(self, crs, script: list[str | None] | None = None):
        self.crs = crs
        self.script = list(script or [])
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/crs"

    def _fault(self) -> str | None:
        with self._lock:
            return self.script.pop(0) if self.script else None

    def start(self) -> "CRSServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # quiet
                pass

            def _send(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with owner._lock:
                    owner.requests.append(body)
                fault = owner._fault()
                if fault == "500":
                    return self._send(500, b'{"error": "boom"}')
                if fault == "400":
                    return self._send(400, b'{"error": "bad request"}')
                if fault == "garbage":
                    return self._send(200, b"<html>oops</html>")
                reply = asyncio.run(owner.crs.respond(request_from_json(body)))
                payload = {"text": reply.text, "items": list(reply.ranking), "recommended": list(reply.recommended),
                           "act": reply.act}
                self._send(200, json.dumps(payload).encode())

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "CRSServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
