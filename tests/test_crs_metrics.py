"""The CRS metrics against values computed by hand on tiny fixtures."""

from __future__ import annotations

import math

import pytest

from simworld.crs.metrics import (
    Figure, HumanReference, dialogue_metrics, hdd, lexical_profile, mattr, recall, summarise, ttr, yules_k,
)
from simworld.crs.records import Dialogue, Turn
from simworld.crs.text import tokens


def test_tokens_lower_case_words_and_one_token_per_film():
    assert tokens("I loved @123, it's GREAT! @7@8") == ["i", "loved", "@movie", "it's", "great", "@movie", "@movie"]


def test_yules_k_by_hand():
    # N = 4, frequencies 2, 1, 1: sum f^2 = 6; K = 10^4 (6 - 4) / 16 = 1250
    assert yules_k(["a", "b", "a", "c"]) == pytest.approx(1250.0)
    assert yules_k(["x", "y", "z"]) == 0.0  # all distinct: sum f^2 = N
    assert yules_k(["w"] * 5) == pytest.approx(1e4 * (25 - 5) / 25)
    assert math.isnan(yules_k([]))


def test_mattr_by_hand():
    # window 2 over a b a a: TTRs 1, 1, 1/2 -> 5/6
    assert mattr(["a", "b", "a", "a"], window=2) == pytest.approx(5 / 6)
    # window 3 over a b a c c: 2/3, 1, 2/3 -> 7/9
    assert mattr(["a", "b", "a", "c", "c"], window=3) == pytest.approx(7 / 9)
    # shorter than the window: the plain TTR
    assert mattr(["a", "b", "a"], window=50) == pytest.approx(ttr(["a", "b", "a"])) == pytest.approx(2 / 3)
    long = [f"w{i % 7}" for i in range(120)]  # a cycle of 7 types: every window of 50 holds all 7
    assert mattr(long) == pytest.approx(7 / 50)


def test_hdd_by_hand():
    # N = 4, sample 2. a (f=2): 1 - C(2,2)/C(4,2) = 5/6; b, c (f=1): 1 - C(3,2)/C(4,2) = 1/2.
    # HD-D = (5/6 + 1/2 + 1/2) / 2 = 11/12
    assert hdd(["a", "a", "b", "c"], sample=2) == pytest.approx(11 / 12)
    # every token a new type, sample = N: each type is surely drawn -> N / N = 1
    assert hdd(list("abcdef"), sample=6) == pytest.approx(1.0)
    assert math.isnan(hdd(["a"] * 41))  # below the sample size of 42: undefined
    assert 0 < hdd([f"w{i % 10}" for i in range(100)]) < 1


def test_lexical_profile_of_one_speaker():
    p = lexical_profile(["Hi there", "I want a comedy like @5", "thanks"])
    assert p["seeker_turns"] == 3.0
    assert p["utterance_length"] == pytest.approx((2 + 6 + 1) / 3)
    assert p["mattr"] == pytest.approx(1.0)  # 9 distinct tokens, fewer than the window: TTR
    assert math.isnan(p["hdd"])


def dialogue(rankings, targets=(5, 9), end="accepted", accepted=5) -> Dialogue:
    turns = [Turn(0, "seeker", "hi")]
    for ranking in rankings:
        turns.append(Turn(len(turns), "recommender", f"@{ranking[0]}", recommended=ranking[:1], ranking=ranking))
        turns.append(Turn(len(turns), "seeker", "ok"))
    return Dialogue("1", 0, 1, tuple(turns), end, targets=targets,
                    accepted_item=accepted if end == "accepted" else None, persuasiveness=1.5, knobs={"patience": 4.0})


def test_recall_over_the_rankings_of_a_dialogue():
    d = dialogue([(1, 2, 9) + tuple(range(100, 160)), (5, 3)])
    assert recall(d, 1) == 0.5  # 5 led the second list; 9 was never first
    assert recall(d, 3) == 1.0
    d = dialogue([tuple(range(100, 111)) + (5,)])
    assert (recall(d, 10), recall(d, 50)) == (0.0, 0.5)


def test_dialogue_metrics_and_the_summary_with_z_scores():
    won = dialogue([(7, 5)], accepted=5)
    lost = dialogue([(1,), (2,), (3,)], end="gave_up")
    row = dialogue_metrics(won)
    assert (row["success"], row["target_accepted"], row["turns"], row["turns_to_success"]) == (1, 1, 1, 1)
    assert row["knob_patience"] == 4.0 and row["recall@1"] == 0.0 and row["recall@10"] == 0.5
    ref = HumanReference("fixture", {m: Figure(2.0, 0.5, 10) for m in
                                     ("mattr", "hdd", "yules_k", "utterance_length", "seeker_turns")})
    s = summarise([won, lost], ref)
    assert s["success_rate"] == 0.5 and s["turns_to_success"] == 1.0 and s["turns"] == 2.0
    assert s["recall@10"] == pytest.approx(0.25) and s["end_reasons"] == {"accepted": 1, "gave_up": 1}
    turns = s["human_likeness"]["seeker_turns"]
    assert turns["simulated"] == 3.0 and turns["z"] == pytest.approx((3.0 - 2.0) / 0.5)
    assert s["human_likeness"]["hdd"]["z"] is None  # undefined for such short dialogues
