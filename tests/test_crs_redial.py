"""ReDial import and export round-trip byte for byte; the real ReDial seekers' lexical figures."""

from __future__ import annotations

import json
import re

import pytest

from simworld.crs.export import read_parquet, write_parquet
from simworld.crs.generation import generate, read_dialogues
from simworld.crs.metrics import LEXICAL, REDIAL_TEST_SEEKERS, reference_from_redial
from simworld.crs.redial import KEY_ORDER, dialogue_to_redial, import_redial, write_redial
from simworld.errors import DataError
from tests.helpers import write_scenario

# The quirks of the real file: string ids, `[]` for question maps, double spaces and a missing
# year in titles, non-ASCII text written as \u escapes, a seeker sending two messages in a row.
QUIRKY = [
    {"movieMentions": {"111776": "Super Troopers (2001)", "151656": "Police Academy  (1984)",
                       "192131": "American Pie "},
     "respondentQuestions": [], "messages": [
         {"timeOffset": 0, "text": "Hi I am looking for a movie like @111776", "senderWorkerId": 956,
          "messageId": 204171},
         {"timeOffset": 48, "text": "You should watch @151656", "senderWorkerId": 957, "messageId": 204172},
         {"timeOffset": 90, "text": "Is that a great one? I have seen @192131", "senderWorkerId": 956,
          "messageId": 204173},
         {"timeOffset": 91, "text": "caf\u00e9 na\u00efve \u2014 thanks!", "senderWorkerId": 956, "messageId": 204174}],
     "conversationId": "20001", "respondentWorkerId": 957, "initiatorWorkerId": 956,
     "initiatorQuestions": {"111776": {"suggested": 0, "seen": 1, "liked": 1},
                            "151656": {"suggested": 1, "seen": 0, "liked": 2}}},
    {"movieMentions": [], "respondentQuestions": {}, "messages": [], "conversationId": "20002",
     "respondentWorkerId": 3, "initiatorWorkerId": 4, "initiatorQuestions": []},
]


def quirky_file(tmp_path):
    path = tmp_path / "redial.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in QUIRKY), encoding="utf-8")
    return path


def test_a_quirky_redial_file_round_trips_byte_for_byte(tmp_path):
    path = quirky_file(tmp_path)
    dialogues = import_redial(path)
    first = dialogues[0]
    assert first.dialogue_id == "20001" and first.seeker_id == 956 and first.recommender_id == 957
    assert [t.role for t in first.turns] == ["seeker", "recommender", "seeker", "seeker"]
    assert first.turns[1].recommended == (151656,) and first.turns[2].mentions == (192131,)
    assert first.movie_mentions[1] == (151656, "Police Academy  (1984)")
    out = write_redial(dialogues, tmp_path / "again.jsonl")
    assert out.read_bytes() == path.read_bytes()
    # and through the Parquet data set too
    write_parquet(dialogues, tmp_path / "d.parquet")
    third = write_redial(read_parquet(tmp_path / "d.parquet"), tmp_path / "third.jsonl")
    assert third.read_bytes() == path.read_bytes()


def test_the_real_redial_test_split_round_trips(redial_dir, tmp_path):
    path = redial_dir / "test_data.jsonl"
    dialogues = import_redial(path)
    assert len(dialogues) == 1342
    assert write_redial(dialogues, tmp_path / "out.jsonl").read_bytes() == path.read_bytes()


def test_the_real_redial_seekers_lexical_figures(redial_dir):
    ref = reference_from_redial(redial_dir / "test_data.jsonl")
    for m in LEXICAL:
        got, pinned = ref.figures[m], REDIAL_TEST_SEEKERS.figures[m]
        assert (got.mean, got.sd, got.n) == (pytest.approx(pinned.mean, rel=1e-9), pytest.approx(pinned.sd, rel=1e-9),
                                             pinned.n), m
    # what human seekers look like, in plain numbers
    f = ref.figures
    assert 0.7 < f["mattr"].mean < 0.8 and 0.7 < f["hdd"].mean < 0.85
    assert 5 < f["utterance_length"].mean < 9 and 8 < f["seeker_turns"].mean < 11
    assert f["hdd"].n < 1342  # dialogues with fewer than 42 seeker tokens have no HD-D


def test_a_malformed_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(QUIRKY[0]) + "\n{not json\n")
    with pytest.raises(DataError, match="line 2"):
        import_redial(path)
    path.write_text('{"conversationId": "1"}\n')
    with pytest.raises(DataError, match="line 1: missing initiatorWorkerId, messages, respondentWorkerId"):
        import_redial(path)


SMALL = """
name: tiny
seed: 5
dialogues: 12
population: {size: 12}
crs: {kind: retrieval}
generation: {batch_size: 5}
"""


def test_generated_dialogues_export_as_redial_and_round_trip(tmp_path):
    run_dir = generate(write_scenario(tmp_path, SMALL), out_dir=tmp_path / "runs", run_id="g")
    dialogues = read_dialogues(run_dir)
    path = write_redial(dialogues, tmp_path / "gen.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 12 and all(tuple(o) == KEY_ORDER for o in lines)
    for d, obj in zip(dialogues, lines):
        assert obj["conversationId"] == d.dialogue_id and obj["initiatorWorkerId"] == d.seeker_id
        assert [m["text"] for m in obj["messages"]] == [t.text for t in d.turns]
        mentioned = {int(i) for m in obj["messages"] for i in re.findall(r"@(\d+)", m["text"])}
        assert mentioned == {int(i) for i in obj["movieMentions"]} == {int(i) for i in obj["initiatorQuestions"]}
        if d.accepted_item is not None:
            assert obj["initiatorQuestions"][str(d.accepted_item)] == {"suggested": 1, "seen": 0, "liked": 1}
    again = import_redial(path)
    assert write_redial(again, tmp_path / "again.jsonl").read_bytes() == path.read_bytes()
    assert dialogue_to_redial(again[0]) == lines[0]
