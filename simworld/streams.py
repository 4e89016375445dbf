"""Named random streams: every random draw of a run comes from one of these.

Each stream is numpy's `SeedSequence` rooted in the run's seed and spawned by the stream's
name (a stable hash, independent of PYTHONHASHSEED) plus integer keys such as a round and an
agent id. Two different names, or the same name with different keys, never give the same
sequence, so no part of the run can draw the numbers another part draws (the old
`[seed, round, agent]` and `[seed, user, epoch]` lists collided).

    streams = Streams(seed)
    rng = streams.generator("agent", round_no, agent_id)

A stream name must be registered (`register_stream`) so that a typo fails loudly instead of
silently opening a fresh stream; the built-in names are in `STREAM_NAMES`.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

STREAM_NAMES: dict[str, str] = {
    "population": "synthetic personas and the MovieLens user sample",
    "policy_mix": "which agents decide by LLM in a hybrid population",
    "voice_mix": "which rule-deciding agents the LLM voices",
    "activation": "which agents act in a round (keys: round)",
    "agent": "an agent's own draws in a round (keys: round, agent id)",
    "recommender": "a recommender's training (keys: epoch)",
    "recommender_jitter": "a recommender's tie-breaking jitter (keys: user id, epoch)",
    "llm_retry": "the LLM layer's retry jitter",
    "social_graph": "the friend graph's generator",
    "social": "the social stages' draws (keys: round, agent id)",
    "social_style": "each persona's mix of watching, talking and posting (keys: agent id)",
    "social_chat": "a chat's own draws, both speakers' (keys: round, thread id)",
}


def register_stream(name: str, purpose: str) -> None:
    """Add a stream name for a plug-in (a stage, a policy); names are global and unique."""
    if name in STREAM_NAMES and STREAM_NAMES[name] != purpose:
        raise ValueError(f"random stream {name!r} is already registered for {STREAM_NAMES[name]!r}")
    STREAM_NAMES[name] = purpose


@functools.lru_cache(maxsize=None)  # hashed once per name: 10,000 agents open a stream each round
def _name_words(name: str) -> tuple[int, ...]:
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))


class Streams:
    """The registry of a run's named streams, rooted in one seed."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def sequence(self, name: str, *keys: int) -> np.random.SeedSequence:
        if name not in STREAM_NAMES:
            raise KeyError(f"unknown random stream {name!r}; register it with simworld.streams.register_stream")
        if any(int(k) < 0 for k in keys):
            raise ValueError(f"stream keys must be >= 0, got {keys}")
        return np.random.SeedSequence(self.seed, spawn_key=(*_name_words(name), len(keys), *map(int, keys)))

    def generator(self, name: str, *keys: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(self.sequence(name, *keys)))

    def int_seed(self, name: str, *keys: int) -> int:
        """A 31-bit seed for libraries that take an int (networkx, implicit, random.Random)."""
        return int(self.sequence(name, *keys).generate_state(1, np.uint32)[0] & 0x7FFFFFFF)
