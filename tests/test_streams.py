"""Named random streams: distinct by construction, stable across processes."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from simworld.streams import STREAM_NAMES, Streams, register_stream


def test_no_two_named_streams_are_equal():
    streams = Streams(7)
    keys = [(), (0,), (1,), (2,), (0, 1), (1, 0), (1, 1), (2, 3), (3, 2)]
    draws = {}
    for name, key in itertools.product(sorted(STREAM_NAMES), keys):
        first = tuple(streams.generator(name, *key).integers(0, 2**63, size=4))
        assert first not in draws, f"{name}{key} repeats {draws.get(first)}"
        draws[first] = (name, key)
    assert len(draws) == len(STREAM_NAMES) * len(keys)


def test_the_old_collision_is_gone():
    """Agent r's stream in round r used to equal the recommender's jitter for user r at epoch r."""
    streams = Streams(5)
    for r in range(1, 6):
        agent = streams.generator("agent", r, r).random(8)
        jitter = streams.generator("recommender_jitter", r, r).random(8)
        assert not np.array_equal(agent, jitter)


def test_streams_are_rooted_in_the_seed_and_repeat():
    assert np.array_equal(Streams(1).generator("agent", 2, 3).random(5), Streams(1).generator("agent", 2, 3).random(5))
    assert not np.array_equal(Streams(1).generator("agent", 2, 3).random(5),
                              Streams(2).generator("agent", 2, 3).random(5))
    assert 0 <= Streams(1).int_seed("social_graph") < 2**31


def test_unknown_names_fail_and_plugins_register():
    with pytest.raises(KeyError, match="unknown random stream"):
        Streams(0).generator("agnet", 1)
    register_stream("test_plugin_stream", "a test's own draws")
    Streams(0).generator("test_plugin_stream")
    with pytest.raises(ValueError, match="already registered"):
        register_stream("agent", "something else")


def test_stream_values_do_not_depend_on_pythonhashseed():
    code = "from simworld.streams import Streams; print(Streams(11).generator('activation', 4).integers(0, 10**9, 3))"
    outs = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(h)},
                           capture_output=True, text=True, check=True).stdout for h in (0, 1, 12345)}
    assert len(outs) == 1
