"""A real HTTP server speaking the OpenAI chat-completions protocol, for tests and benchmarks.

Standard library only. It listens on 127.0.0.1 (a free port), answers
`POST /v1/chat/completions` (and `/chat/completions`), and lets a test script its
behaviour per request:

- latency: `latency_s` seconds before every answer;
- faults: `script` (a list consumed one per request: None for a normal answer, or one of
  `FAULTS`) and/or `fault_rate` with `fault_kinds`, drawn from a seeded RNG, or with
  `faults_by_request` drawn from a hash of the request's messages, whatever the order requests
  arrive in (a transport fault hits a request's first attempt only, so its retry gets through;
  an "invalid" answer is that prompt's answer every time), so two runs with concurrent calls
  meet the same faults;
- the answer: `answer(body) -> str`, by default a deterministic valid instance of the
  requested JSON schema (`response_format`), choosing item ids that appear in the prompt
  when the schema asks for ids, or a short sentence for free text;
- a log: `requests` (every request body, in arrival order), `count`, and `max_in_flight`
  (the most requests being served at the same time).

Faults: "429" (rate limited, with `Retry-After: retry_after_s`), "500", "503", "400",
"401", "hang" (sleep `hang_s` before answering, to trip a client timeout), "truncated"
(a Content-Length longer than the body, then the connection closes), "non_json" (a 200
whose body is HTML), "invalid" (a valid completion whose content fails the schema).

Use from pytest with the `openai_server` fixture (a factory):

    from openai_server import openai_server  # noqa: F401  (or register it in conftest)

    def test_x(openai_server):
        server = openai_server(latency_s=0.05, script=["429", None])
        ...  # model "openai/test", api_base=server.url

Or run it as a program (for benchmarks, in its own process):
`python tests/openai_server.py --latency 0.2` prints `PORT <n>` and serves until killed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("429", "500", "503", "400", "401", "hang", "truncated", "non_json", "invalid")

AnswerFn = Callable[[dict[str, Any]], str]


# ---------------------------------------------------------------------------------------
# answers


def prompt_text(body: dict[str, Any]) -> str:
    parts = []
    for m in body.get("messages", []):
        content = m.get("content")
        if isinstance(content, list):  # content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(str(content or ""))
    return "\n".join(parts)


_ID_PATTERNS = (
    re.compile(r"\[(?:id[:= ]*)?(\d+)\]", re.I),
    re.compile(r"\bid[:= #]+(\d+)", re.I),
    re.compile(r"^\s*(\d+)[.):]\s", re.M),
)


def ids_in_prompt(text: str) -> list[int]:
    """Item ids listed in a prompt ("[12] Title", "id=12", "12. Title"), in order."""
    for pattern in _ID_PATTERNS:
        found = [int(x) for x in pattern.findall(text)]
        if found:
            seen: list[int] = []
            for x in found:
                if x not in seen:
                    seen.append(x)
            return seen
    return []


def requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    rf = body.get("response_format")
    if not isinstance(rf, dict):
        return None
    if rf.get("type") == "json_schema":
        js = rf.get("json_schema") or {}
        return js.get("schema") or {}
    if rf.get("type") == "json_object":
        return rf.get("schema") or {"type": "object"}
    return None


class SchemaInstance:
    """Builds a deterministic instance of a JSON schema ($ref/$defs, anyOf, enums, ...)."""

    def __init__(self, root: dict[str, Any], ids: list[int]):
        self.root = root
        self.ids = ids

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 32:
            ref = schema["$ref"]
            node: Any = self.root
            for part in ref.lstrip("#/").split("/"):
                if part:
                    node = node[part]
            schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
        return schema

    def build(self, schema: dict[str, Any], name: str = "", depth: int = 0) -> Any:
        schema = self._resolve(schema)
        if depth > 12:
            return None
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self._resolve(o) for o in schema[key]]
                non_null = [o for o in options if o.get("type") != "null"]
                return self.build((non_null or options)[0], name, depth + 1)
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._resolve(part))
            return self.build(merged, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or (kind is None and "properties" in schema):
            out = {}
            for prop, sub in (schema.get("properties") or {}).items():
                out[prop] = self.build(sub, prop, depth + 1)
            return out
        if kind == "array":
            item_schema = self._resolve(schema.get("items") or {})
            lo = int(schema.get("minItems", 0))
            hi = schema.get("maxItems")
            if item_schema.get("type") == "integer" and self._is_id_name(name) and self.ids:
                n = max(lo, 1)
                if hi is not None:
                    n = min(n, int(hi))
                picks = [self._fit_int(x, item_schema) for x in self.ids[:n]]
                while len(picks) < lo:
                    picks.append(picks[-1])
                return picks
            n = max(lo, 1) if hi is None else min(max(lo, 1), int(hi))  # one element where allowed
            return [self.build(item_schema, name, depth + 1) for _ in range(n)]
        if kind == "integer":
            if self.ids and self._is_id_name(name):
                return self._fit_int(self.ids[0], schema)
            return self._fit_int(self._mid(schema, 3), schema)
        if kind == "number":
            return float(self._fit_num(self._mid(schema, 0.5), schema))
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        if kind == "string":
            return self._string(schema, name)
        return schema.get("default")

    @staticmethod
    def _is_id_name(name: str) -> bool:
        n = name.lower()
        return "id" in n or "item" in n or n in ("watch", "watches", "choice", "choices", "pick", "picks")

    @staticmethod
    def _mid(schema: dict[str, Any], fallback: float) -> float:
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        if lo is not None and hi is not None:
            return (lo + hi) / 2
        if lo is not None:
            return lo + 1 if "exclusiveMinimum" in schema else lo
        if hi is not None:
            return hi - 1 if "exclusiveMaximum" in schema else hi
        return fallback

    def _fit_int(self, value: float, schema: dict[str, Any]) -> int:
        return int(round(self._fit_num(value, schema)))

    @staticmethod
    def _fit_num(value: float, schema: dict[str, Any]) -> float:
        if "minimum" in schema:
            value = max(value, schema["minimum"])
        if "maximum" in schema:
            value = min(value, schema["maximum"])
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            value = schema["exclusiveMinimum"] + 1
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            value = schema["exclusiveMaximum"] - 1
        return value

    @staticmethod
    def _string(schema: dict[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2026-01-01T00:00:00Z"
        if fmt == "date":
            return "2026-01-01"
        text = f"a short {name or 'answer'}"
        lo = int(schema.get("minLength", 0))
        hi = schema.get("maxLength")
        if len(text) < lo:
            text = text + "x" * (lo - len(text))
        if hi is not None:
            text = text[: int(hi)]
        return text


def default_answer(body: dict[str, Any]) -> str:
    """A deterministic answer: a valid instance of the requested schema, or a sentence."""
    schema = requested_schema(body)
    ids = ids_in_prompt(prompt_text(body))
    if schema is None:
        return "An answer from the test server."
    return json.dumps(SchemaInstance(schema, ids).build(schema))


def invalid_answer(body: dict[str, Any]) -> str:
    """Valid JSON that fails any schema with a required property or an object type."""
    return json.dumps({"unexpected": "this does not match the schema"})


# ---------------------------------------------------------------------------------------
# server


class FakeOpenAIServer:
    """The server object tests talk to. `url` is the api_base (ends in /v1)."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        script: list[str | None] | None = None,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] = ("429", "500"),
        seed: int = 0,
        retry_after_s: float = 1.0,
        hang_s: float = 5.0,
        answer: AnswerFn | None = None,
        model_name: str = "test-model",
        count_tokens: Callable[[str], int] | None = None,
        faults_by_request: bool = False,
    ):
        for k in list(script or []) + list(fault_kinds):
            if k is not None and k not in FAULTS:
                raise ValueError(f"unknown fault {k!r}; choose from {FAULTS}")
        self.latency_s = latency_s
        self.script: list[str | None] = list(script or [])
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        self.faults_by_request = faults_by_request
        self._attempts: dict[str, int] = {}  # request hash -> requests seen (faults_by_request)
        self.retry_after_s = retry_after_s
        self.hang_s = hang_s
        self.answer: AnswerFn = answer or default_answer
        self.model_name = model_name
        # usage counts: words by default; benchmarks pass a real tokenizer
        self.count_tokens: Callable[[str], int] = count_tokens or (lambda text: len(text.split()))
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.faults: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self.stopped = False
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self, port: int = 0) -> FakeOpenAIServer:
        server = self

        class Handler(_Handler):
            owner = server

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 1024

        self.stopped = False
        self._httpd = Server(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; connections a client keeps alive are dropped at their next request,
        so the server is really gone (as a crashed model server is)."""
        self.stopped = True
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self.faults.clear()
            self.max_in_flight = self.in_flight

    # -- per request
    def _next_fault(self, body: dict[str, Any]) -> str | None:
        with self._lock:
            if self.script:
                return self.script.pop(0)
            if self.faults_by_request and self.fault_rate:
                key = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()
                attempt = self._attempts[key] = self._attempts.get(key, -1) + 1
                if int(key[:8], 16) / 2**32 >= self.fault_rate:
                    return None
                kind = self.fault_kinds[int(key[8:16], 16) % len(self.fault_kinds)]
                # an answer that fails the schema is the model's answer to that prompt, every time;
                # a transport fault is met by the first attempt only, so a retry gets through
                return kind if kind == "invalid" or not attempt else None
            if self.fault_rate and self._rng.random() < self.fault_rate:
                return self._rng.choice(self.fault_kinds)
            return None

    def _admit(self, body: dict[str, Any], headers: dict[str, str]) -> str | None:
        fault = self._next_fault(body)
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            self.faults.append(fault)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return fault

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def completion(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        prompt_tokens = max(1, self.count_tokens(prompt_text(body)))
        completion_tokens = max(1, self.count_tokens(content))
        with self._lock:
            n = len(self.requests)
        return {
            "id": f"chatcmpl-test-{n}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body.get("model") or self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


class _Handler(BaseHTTPRequestHandler):
    owner: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: bytes, ctype: str = "application/json", extra=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, message: str, kind: str, extra=None) -> None:
        body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
        self._send(status, body, extra=extra)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            body = {"object": "list", "data": [{"id": self.owner.model_name, "object": "model"}]}
            self._send(200, json.dumps(body).encode())
        else:
            self._error(404, "not found", "not_found")

    def do_POST(self) -> None:
        if self.owner.stopped:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._error(404, f"no route {self.path}", "not_found")
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._error(400, "request body is not JSON", "invalid_request_error")
            return
        owner = self.owner
        headers = {k.lower(): v for k, v in self.headers.items()}
        fault = owner._admit(body, headers)
        try:
            if owner.latency_s:
                time.sleep(owner.latency_s)
            self._respond(owner, body, fault)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            owner._leave()

    def _respond(self, owner: FakeOpenAIServer, body: dict[str, Any], fault: str | None) -> None:
        if fault == "429":
            self._error(
                429,
                "Rate limit reached, retry later",
                "rate_limit_error",
                extra={"Retry-After": f"{owner.retry_after_s:g}"},
            )
        elif fault in ("500", "503"):
            self._error(int(fault), "The server had an error while processing your request", "server_error")
        elif fault == "400":
            self._error(400, "Invalid request: bad parameter", "invalid_request_error")
        elif fault == "401":
            # like some providers, echo the key it got: the client must never write it down
            got = self.headers.get("Authorization", "").removeprefix("Bearer ")
            self._error(401, f"Incorrect API key provided: {got}", "invalid_request_error")
        elif fault == "hang":
            time.sleep(owner.hang_s)
            self._send(200, json.dumps(owner.completion(body, owner.answer(body))).encode())
        elif fault == "truncated":
            payload = json.dumps(owner.completion(body, owner.answer(body))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif fault == "non_json":
            self._send(200, b"<html><body>502 Bad Gateway</body></html>", ctype="text/html")
        elif fault == "invalid":
            self._send(200, json.dumps(owner.completion(body, invalid_answer(body))).encode())
        else:
            self._send(200, json.dumps(owner.completion(body, owner.answer(body))).encode())


def free_closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (for connection-refused tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# pytest


try:
    import pytest
except ImportError:  # used as a program without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def openai_server():
        """Factory fixture: `openai_server(**options) -> FakeOpenAIServer`, started; all
        servers made are stopped at the end of the test."""
        servers: list[FakeOpenAIServer] = []

        def make(**options: Any) -> FakeOpenAIServer:
            server = FakeOpenAIServer(**options).start()
            servers.append(server)
            return server

        yield make
        for server in servers:
            server.stop()


# ---------------------------------------------------------------------------------------
# program


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(latency_s=args.latency, fault_rate=args.fault_rate, seed=args.seed).start(args.port)
    print(f"PORT {server.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
