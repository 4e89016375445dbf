"""The HTTP CRS against a real local server speaking the documented protocol."""

from __future__ import annotations

import asyncio

import pytest

from simworld.crs.config import parse_crs_scenario
from simworld.crs.generation import Generation, build_parts, read_crs_summary, read_dialogues
from simworld.crs.http_crs import HTTPCRS, parse_reply
from simworld.crs.protocol import CRSError, CRSRequest, Message
from tests.crs_server import CRSServer
from tests.openai_server import free_closed_port

BASE = {"name": "http", "seed": 9, "dialogues": 12, "population": {"size": 12},
        "generation": {"batch_size": 4}, "crs": {"kind": "retrieval"}}


def http_scenario(url: str, **extra):
    return parse_crs_scenario({**BASE, "crs": {"kind": "http", "url": url, "retries": 1, "timeout_s": 5,
                                               "name": "my-server"}, **extra})


@pytest.fixture
def served():
    """The retrieval CRS of BASE (fitted on the same seekers' histories) behind a real HTTP server."""
    crs = build_parts(parse_crs_scenario(BASE), None, "ref").crs
    with CRSServer(crs) as server:
        yield server


def texts(dialogues):
    return [[(t.role, t.text, t.recommended, t.ranking) for t in d.turns] + [d.end_reason] for d in dialogues]


def test_dialogues_over_http_equal_those_with_the_crs_in_process(served, tmp_path):
    reference = Generation.start(parse_crs_scenario(BASE), out_dir=tmp_path, run_id="direct")
    reference.run()
    reference.close()
    gen = Generation.start(http_scenario(served.url), out_dir=tmp_path, run_id="http")
    gen.run()
    gen.close()
    over_http = read_dialogues(gen.run_dir)
    assert texts(over_http) == texts(read_dialogues(reference.run_dir))
    assert {d.crs_name for d in over_http} == {"my-server"}
    body = served.requests[0]
    assert set(body) == {"dialogue_id", "seeker_id", "k", "messages"} and body["k"] == 50
    assert set(body["messages"][0]) == {"role", "text", "mentions", "recommended"}
    assert body["messages"][0]["role"] == "seeker"


def test_a_server_error_is_retried(served):
    served.script = ["500", None]
    crs = HTTPCRS(served.url, retries=1, timeout_s=5)
    reply = asyncio.run(crs.respond(CRSRequest("1", 1, (Message("seeker", "A comedy please"),))))
    assert reply.text and len(served.requests) == 2


@pytest.mark.parametrize("fault, message", [("400", r"refused the request \(400\)"), ("garbage", "not JSON")])
def test_a_bad_answer_is_one_clear_error(served, fault, message):
    served.script = [fault]
    crs = HTTPCRS(served.url, retries=0, timeout_s=5)
    with pytest.raises(CRSError, match=message):
        asyncio.run(crs.respond(CRSRequest("1", 1, (Message("seeker", "hi"),))))


def test_malformed_replies_are_refused():
    with pytest.raises(CRSError, match="without a \"text\""):
        parse_reply({"items": [1]}, "server")
    with pytest.raises(CRSError, match="'items' that is not a list of integer"):
        parse_reply({"text": "hi", "items": ["a"]}, "server")
    reply = parse_reply({"text": "Try @5 or @7", "items": [5, 7, 9]}, "server")
    assert reply.recommended == (5, 7) and reply.act == "recommend"  # the mentions, by default


def test_a_server_that_goes_away_stops_the_generation_and_resume_finishes_it(served, tmp_path):
    served.script = [None] * 30 + ["400"]
    gen = Generation.start(http_scenario(served.url), out_dir=tmp_path, run_id="r")
    with pytest.raises(CRSError, match="refused the request"):
        gen.run()
    gen.close()
    summary = read_crs_summary(gen.run_dir)
    assert summary["status"] == "failed" and "my-server" not in summary["message"] and "400" in summary["message"]
    kept = read_dialogues(gen.run_dir)
    assert 0 < len(kept) < 12 and len(kept) % 4 == 0  # whole batches only
    again = Generation.resume(gen.run_dir)
    again.run()
    again.close()
    assert [d.index for d in read_dialogues(gen.run_dir)] == list(range(12))


def test_an_unreachable_server_is_one_message_and_exit_2(tmp_path):
    from typer.testing import CliRunner

    from simworld.cli import app
    from tests.helpers import write_scenario

    url = f"http://127.0.0.1:{free_closed_port()}/crs"
    path = write_scenario(tmp_path, f"dialogues: 4\npopulation: {{size: 4}}\ncrs: {{kind: http, url: '{url}', "
                                    "retries: 1}\n")
    result = CliRunner().invoke(app, ["crs", "generate", str(path), "--out", str(tmp_path / "runs"), "--run-id", "u"])
    assert result.exit_code == 2
    assert f"the HTTP CRS at {url} cannot be reached" in result.stderr and "Traceback" not in result.stderr
    assert read_crs_summary(tmp_path / "runs" / "u")["status"] == "failed"
