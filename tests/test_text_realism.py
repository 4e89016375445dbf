"""Text realism scores separate a planted bad line from a good one (issue 13 §4)."""

from __future__ import annotations

from simworld.text_realism import line_flags, score_run, score_texts, sentiment
from tests.openai_server import openai_server  # noqa: F401  (fixture)


def test_a_planted_bad_line_is_flagged_and_a_good_one_is_not():
    assert line_flags("Loved it: sci-fi at its best.", 4.5) == set()
    assert line_flags("2.5 star", 3.0) == {"short", "numeric"}
    assert line_flags("stoic", 3.0) == {"short"}
    assert "contradicts" in line_flags("Boring and far too slow, a waste.", 5.0)
    assert "contradicts" in line_flags("One of the best I have seen.", 1.0)
    assert sentiment("not boring at all") > 0 > sentiment("not good, really dull")


def test_scores_over_many_lines_separate_good_from_bad_writers():
    good = [(1, "Loved it, gripping from start to finish.", 5.0), (2, "Too slow and dull for me.", 2.0),
            (3, "A lovely, moving story.", 4.0)]
    bad = [(1, "2.5 star", 5.0), (2, "2.5 star", 1.0), (3, "Boring, a waste of time.", 5.0)]
    g, b = score_texts(good), score_texts(bad)
    assert g["consistency"] == 1.0 and b["consistency"] == 0.0
    assert g["shared_across_agents"] == 0.0 and b["shared_across_agents"] == 2 / 3
    assert g["distinct_1"] > b["distinct_1"] and b["numeric"] == 2 / 3 and g["numeric"] == 0.0


def test_eval_text_on_a_run_folder(tmp_path):
    from simworld import runner
    from simworld.config import parse_scenario
    from tests.test_cli import cli

    scenario = parse_scenario({"name": "t", "seed": 2, "rounds": 2, "population": {"size": 15}, "policy": "rule"})
    sim = runner.start(scenario, out_dir=tmp_path, run_id="t")
    sim.run()
    sim.close()
    result = cli("eval", "text", str(sim.run_dir))
    assert result.returncode == 0, result.stderr
    assert "distinct_1" in result.stdout and "consistency" in result.stdout


def test_voice_flags_catch_the_embedded_models_old_lines():
    from simworld.text_realism import voice_flags

    assert voice_flags("Tense and stylish, I was hooked the whole way.", 4.5, "Heat", "Maya Ito") == set()
    assert voice_flags("The Sting", 2.0, "The Sting (1973)") == {"title", "short"}
    assert "speaker" in voice_flags("I am Kemi Ito, and this was fun.", 4.0, "Up", "Kemi Ito")
    assert "speaker" in voice_flags("Likes Action, Thriller, Mystery", 1.0, "Heat")
    assert voice_flags("2.5 star", 3.0, "Heat") == {"short", "numeric"}
    assert "contradicts" in voice_flags("Gross and cheap, a real mess.", 4.5, "Up")


def test_the_voice_gate_gives_bad_lines_to_the_template_and_says_so():
    from simworld.agents.llm_policy import first_sentence, gate_feelings, voice_gate_reason, voice_gated_items
    from simworld.catalog import load_bundled_catalog

    catalog = load_bundled_catalog()
    a, b, c = (catalog.get(i) for i in catalog.ids[:3])
    films = [(a, 4.5), (b, 3.0), (c, 1.0)]
    templates = ["Loved it.", "Decent enough.", "Not for me."]
    good = "Charming and funny, the ending made me smile."
    lines, replaced = gate_feelings([good, "2.5 star", "Wonderful, the best film ever made."], films, templates,
                                    "Maya Ito")
    assert lines == [good, "Decent enough.", "Not for me."]
    assert replaced == {b.item_id: {"short", "numeric"}, c.item_id: {"contradicts"}}
    reason = voice_gate_reason(replaced)
    assert voice_gated_items(reason) == {b.item_id: ["numeric", "short"], c.item_id: ["contradicts"]}
    assert voice_gated_items("LLMOutputError: bad json") == {}
    assert first_sentence('"Loved it. Then I slept.\nMore"') == "Loved it."
    assert first_sentence("Rambling on and on without an end") == "Rambling on and on without an end"


def test_a_voiced_run_marks_which_lines_the_templates_wrote(openai_server, tmp_path):
    """A whole run against the OpenAI-protocol server: the model speaks in numbers about some
    films and in feelings about the others; the numeric lines never reach the event log."""
    import polars as pl

    from simworld.agents.llm_policy import voice_gated_items
    from simworld.agents.rule_policy import FEELINGS
    from simworld.recorder import read_events
    from tests.openai_server import prompt_text
    from tests.test_llm_world import run, scenario_text

    good = "Charming and funny, the ending made me smile."

    def answer(body):  # the film is the last line of the prompt: odd ids get a number
        title = prompt_text(body).strip().splitlines()[-1]
        return "2.5 stars" if len(title) % 2 else good

    server = openai_server(answer=answer)
    run_dir = run(tmp_path, scenario_text(server.url, policy="kind: hybrid, llm_fraction: 0.0, voice: true"))
    events = read_events(run_dir)
    texts = events.filter(pl.col("action") == "watch")["text"].to_list()
    assert good in texts and not any("stars" in t for t in texts)
    gated = events.filter((pl.col("action") == "fallback") & pl.col("text").str.starts_with("voice gate"))
    assert gated.height > 0
    templates = {line.split("{")[0] for lines in FEELINGS.values() for line in lines}
    for rnd, agent, text in gated.select("round", "agent_id", "text").rows():
        items = voice_gated_items(text)
        assert items and all("numeric" in flags for flags in items.values())
        rows = events.filter((pl.col("round") == rnd) & (pl.col("agent_id") == agent) & (pl.col("action") == "watch")
                             & pl.col("item_id").is_in(list(items)))
        assert rows.height == len(items) and all(t.startswith(tuple(templates)) for t in rows["text"])
    scores = score_run(run_dir)  # what `simworld eval text` prints
    assert 0 < scores["voiced"]["template_share"] < 1 and scores["voiced"]["numeric"] == 0
    assert scores["voiced_by_model"]["lines"] == texts.count(good)


def test_voiced_lines_reach_films_found_outside_the_platform():
    """The voice writes the first films of `watches_of` (pages, then films found outside the
    platform); each line lands on its own film, a discovered one included."""
    from simworld.agents.actions import BrowseAction, PageDecision, Watch, watches_of
    from simworld.agents.llm_policy import _with_feelings

    page = PageDecision(watches=[Watch(item_id=1, rating=4.0, feeling="template one")], then="leave")
    found = PageDecision(watches=[Watch(item_id=9, rating=2.0, feeling="template two")])
    action = BrowseAction(pages=(((1, 2, 3), page),), discovered=((9, 8), found))
    voiced = _with_feelings(action, ["Warm and funny, I smiled all evening.", "Dull, I nearly left."])
    assert [(w.item_id, w.feeling) for w in watches_of(voiced)] == [
        (1, "Warm and funny, I smiled all evening."), (9, "Dull, I nearly left.")]
    assert _with_feelings(action, ["Only the first."]).discovered[1].watches[0].feeling == "template two"
