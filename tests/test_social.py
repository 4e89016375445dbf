"""The social layer: graphs, chats, mentions, the feed, cascades, word of mouth, resume."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from simworld import runner
from simworld.agents.actions import DecisionMeta, PostAction
from simworld.catalog import load_bundled_catalog
from simworld.config import parse_scenario
from simworld.errors import DataError, ScenarioError
from simworld.events import EventBuilder
from simworld.llm import read_ledger
from simworld.population import synthetic_personas
from simworld.recorder import read_checkpoint, read_events
from simworld.social import files
from simworld.social.chat import Participant, Reply, run_chat
from simworld.social.config import GraphConfig
from simworld.social.diffusion import item_cascades, tree_stats
from simworld.social.graph import SocialGraph, build_graph, taste_communities
from simworld.social.mentions import TitleMatcher
from simworld.social.state import DiaryEntry
from simworld.social.templates import TemplateSpeaker
from simworld.social.transcripts import chat_transcripts
from simworld.stages import Round
from simworld.streams import Streams
from tests.helpers import comparable, write_scenario
from tests.openai_server import default_answer, openai_server  # noqa: F401  (fixture)

CATALOG = load_bundled_catalog()

SOCIAL = """
name: social
seed: {seed}
rounds: {rounds}
population: {{size: {size}}}
activity: {{model: constant, probability: {probability}}}
recommender: {{name: {recommender}, page_size: 8, max_pages: 2}}
policy: rule
social:
{social}
"""


def social_scenario(tmp_path, *, seed=4, rounds=5, size=60, probability=0.7, recommender="popularity",
                    social="  graph: {source: taste_sbm, degree: 6}", name="social.yaml"):
    text = SOCIAL.format(seed=seed, rounds=rounds, size=size, probability=probability, recommender=recommender,
                         social=social)
    return write_scenario(tmp_path, text, name)


def people(n: int, seed: int = 1):
    return synthetic_personas(n, CATALOG, np.random.default_rng(seed))


def graph_of(spec: GraphConfig, n: int = 80, seed: int = 3) -> SocialGraph:
    personas = people(n)
    tastes = np.array([p.taste_vector(CATALOG.genres) for p in personas])
    streams = Streams(seed)
    communities = taste_communities(tastes, spec.communities, streams.generator("social_graph", 0))
    return build_graph(spec, [p.agent_id for p in personas], tastes, communities, streams)


# -- the graph ------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["taste_sbm", "watts_strogatz", "barabasi_albert"])
def test_graph_generators_are_seeded(source):
    spec = GraphConfig(source=source, degree=6)
    a, b, c = graph_of(spec, seed=3), graph_of(spec, seed=3), graph_of(spec, seed=4)
    assert a.edges_frame().equals(b.edges_frame())
    assert not a.edges_frame().equals(c.edges_frame())
    pairs = a.friend_pairs()
    assert 80 * 6 / 2 * 0.6 < len(pairs) < 80 * 6 / 2 * 1.4  # about `degree` friends each
    assert a.edge_count() > 2 * len(pairs)  # plus the one-way follows
    friend = pairs[0]
    assert friend[1] in a.friends(friend[0]) and friend[0] in a.followers(friend[1])


def test_taste_sbm_puts_friends_in_the_same_taste_community():
    spec = GraphConfig(source="taste_sbm", degree=6, within_share=0.9, follows=0)
    personas = people(120)
    tastes = np.array([p.taste_vector(CATALOG.genres) for p in personas])
    streams = Streams(2)
    communities = taste_communities(tastes, 5, streams.generator("social_graph", 0))
    graph = build_graph(spec, [p.agent_id for p in personas], tastes, communities, streams)
    labels = dict(zip([p.agent_id for p in personas], communities.assign(tastes)))
    pairs = graph.friend_pairs()
    inside = sum(labels[a] == labels[b] for a, b in pairs) / len(pairs)
    assert inside > 0.75


def test_edge_list_with_relationship_labels(tmp_path):
    path = tmp_path / "friends.csv"
    path.write_text("source,target,relation,weight\n1,2,family,0.9\n2,3,colleague\n# a comment\n4,1,neighbour\n")
    graph = build_graph(GraphConfig(source="edge_list", path=str(path)), [1, 2, 3, 4], np.ones((4, 3)),
                        None, Streams(0))
    assert graph.friends(1) == [2, 4] and graph.friends(3) == [2]
    assert graph.relation(1, 2) == "family" and graph.relation(3, 2) == "colleague"
    assert graph.tie(2, 1) == pytest.approx(0.9)
    directed = build_graph(GraphConfig(source="edge_list", path=str(path), directed=True), [1, 2, 3, 4],
                           np.ones((4, 3)), None, Streams(0))
    assert directed.following(1) == [2] and directed.friends(1) == [] and directed.followers(1) == [4]
    path.write_text("1 9\n")
    with pytest.raises(DataError, match="agent 9 is not in the population"):
        build_graph(GraphConfig(source="edge_list", path=str(path)), [1, 2], np.ones((2, 3)), None, Streams(0))


def test_social_config_errors_name_the_field():
    with pytest.raises(ScenarioError, match="social.graph: .*needs a path"):
        parse_scenario({"social": {"graph": {"source": "edge_list"}}})
    with pytest.raises(ScenarioError, match="social.chat.speaker: must be one of"):
        parse_scenario({"social": {"chat": {"speaker": "robot"}}})
    with pytest.raises(ScenarioError, match="social.feed.colour: unknown field"):
        parse_scenario({"social": {"feed": {"colour": "red"}}})


def test_follow_and_unfollow_change_the_graph(tmp_path):
    graph = SocialGraph([1, 2, 3])
    assert graph.follow(1, 2) and not graph.follow(1, 2) and not graph.follow(1, 1)
    assert graph.following(1) == [2] and graph.followers(2) == [1] and graph.friends(1) == []
    graph.follow(2, 1)
    assert graph.friends(1) == [2]
    assert graph.unfollow(1, 2) and not graph.unfollow(1, 2)
    assert graph.friends(2) == [] and graph.following(2) == [1]
    # in a run: the starting graph plus the follow and unfollow events is the final graph
    path = social_scenario(tmp_path, rounds=6, social="  follow: {suggest_rate: 0.6, unfollow_rate: 1.0}")
    sim = runner.start(path, out_dir=tmp_path / "runs", run_id="f")
    sim.run()
    final = {tuple(e) for e in sim.world.schedule["social_apply"].layer.state.graph.edges_frame()
             .select("source", "target").iter_rows()}
    sim.close()
    edges = {tuple(e) for e in files.read(sim.run_dir, files.GRAPH).select("source", "target").iter_rows()}
    events = read_events(sim.run_dir).filter(pl.col("action").is_in(["follow", "unfollow"])).sort("round", "seq")
    assert set(events["action"]) == {"follow", "unfollow"}
    for action, a, b in events.select("action", "agent_id", "target_id").iter_rows():
        (edges.add if action == "follow" else edges.remove)((a, b))
    assert edges == final


# -- chats ------------------------------------------------------------------------------------------

def participant(persona, watched=(), diary=()) -> Participant:
    return Participant(agent_id=persona.agent_id, persona=persona, taste=persona.taste_vector(CATALOG.genres),
                       watched=dict(watched), diary=tuple(diary))


async def test_template_chat_alternates_and_stops_at_the_limit():
    a, b = people(2)
    alien = next(i for i in CATALOG.items if i.title == "Alien")
    pa = participant(a, {alien.item_id: 5.0}, [DiaryEntry(2, alien.item_id, 5.0, "Terrifying, loved it.")])
    pb = participant(b)
    speakers = {a.agent_id: TemplateSpeaker(CATALOG), b.agent_id: TemplateSpeaker(CATALOG)}
    for seed in range(20):
        turns = await run_chat(pa, pb, speakers, max_turns=3, round_no=3, rng=np.random.default_rng(seed),
                               matcher=TitleMatcher(CATALOG), end_chance=0.0)
        assert [t.speaker for t in turns] == [a.agent_id, b.agent_id, a.agent_id][:len(turns)]
        assert [t.listener for t in turns] == [b.agent_id, a.agent_id, b.agent_id][:len(turns)]
        assert 2 <= len(turns) <= 3
        assert alien.item_id in turns[0].mentions  # the opener is about the film it loved
        assert turns[-1].done or len(turns) == 3


class ScriptedSpeaker:
    """A speaker that says who it is and ends the chat at a given message."""

    name = "scripted"

    def __init__(self, end_at: int | None):
        self.end_at = end_at

    async def say(self, ctx) -> Reply:
        return Reply(f"I am {ctx.me.name}, message {ctx.number}", done=ctx.number == self.end_at,
                     meta=DecisionMeta(policy="rule"))


@pytest.mark.parametrize("end_at, expected", [(None, 6), (3, 4), (0, 6)])
async def test_a_chat_ends_when_a_side_ends_it_or_at_the_limit(end_at, expected):
    a, b = people(2)
    speakers = {a.agent_id: ScriptedSpeaker(end_at), b.agent_id: ScriptedSpeaker(end_at)}
    turns = await run_chat(participant(a), participant(b), speakers, max_turns=6, round_no=1,
                           rng=np.random.default_rng(0), matcher=TitleMatcher(CATALOG))
    # the opening message cannot end a chat: the friend always answers
    assert len(turns) == expected
    assert all(t.text.startswith(f"I am {(a if k % 2 == 0 else b).name}") for k, t in enumerate(turns))
    assert turns[-1].done == (end_at not in (None, 0))


def chat_answer(done_after: int):
    """The test server's answers: a chat message that says whose persona wrote it and names a
    film; `done` from the message number `done_after` on. Posts get a sentence."""

    def answer(body: dict) -> str:
        system = body["messages"][0]["content"]
        name = system.split("You are ", 1)[1].split(",", 1)[0]
        prompt = body["messages"][-1]["content"]
        schema = json.dumps(body.get("response_format", {}))
        if '"post"' in schema:
            return json.dumps({"post": f"{name} says: watch The Godfather (1972)."})
        if '"done"' not in schema:  # a decision: the server's own valid answer
            return default_answer(body)
        transcript = prompt.split("The chat so far:\n", 1)[1].split("\nWrite your next message", 1)[0]
        number = 0 if transcript.startswith("(you start") else len(transcript.splitlines())
        return json.dumps({"message": f"I am {name}. Have you seen Alien (1979)?", "done": number >= done_after})

    return answer


def test_llm_chats_one_call_per_message_each_speaker_in_its_own_persona(openai_server, tmp_path):
    server = openai_server(answer=chat_answer(done_after=2))
    social = ("  chat: {speaker: llm, max_turns: 5}\n  mix: {watch: 0.4, talk: 0.4, post: 0.2}\n"
              f"llm: {{model: openai/test-model, api_base: '{server.url}', retry_base_s: 0.01, timeout_s: 5}}")
    path = social_scenario(tmp_path, rounds=3, size=30, social=social)
    run_dir = runner.run_scenario(path, out_dir=tmp_path / "runs", run_id="llm")
    events = read_events(run_dir)
    chats = events.filter(pl.col("action") == "chat").sort("round", "seq")
    assert chats.height > 0 and set(chats["policy"]) == {"llm"}
    names = dict(pl.read_parquet(run_dir / "personas.parquet").select("agent_id", "name").iter_rows())
    alien = next(i.item_id for i in CATALOG.items if i.title == "Alien")
    for (thread,), turns in chats.group_by("thread_id", maintain_order=True):
        speakers = turns["agent_id"].to_list()
        assert len(speakers) == 3  # done from the third message on (the second may not end it: done_after=2)
        assert speakers[0] == speakers[2] != speakers[1]
        assert turns["target_id"].to_list() == [speakers[1], speakers[0], speakers[1]]
        for speaker, text in turns.select("agent_id", "text").iter_rows():
            assert text.startswith(f"I am {names[speaker]}.")  # written in the speaker's own persona
        assert all(items == [alien] for items in turns["items"].to_list())
    ledger = read_ledger(run_dir)
    assert ledger.filter(pl.col("purpose") == "chat").height == chats.height  # one call per message
    posts = events.filter(pl.col("action") == "post")
    assert posts.height and all(text.endswith("says: watch The Godfather (1972).") for text in posts["text"])
    assert all(text.startswith(names[a]) for a, text in posts.select("agent_id", "text").iter_rows())  # its voice
    transcripts = chat_transcripts(events)  # what a dialogue exporter reads
    assert transcripts.height == chats.height and set(transcripts["turn"]) == {0, 1, 2}
    assert transcripts.filter(pl.col("turn") == 0)["speaker"].to_list() == \
        chats.group_by("thread_id", maintain_order=True).first()["agent_id"].to_list()


# -- mentions -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, titles", [
    ("Have you seen The Thing? I loved Alien (1979).", ["The Thing", "Alien"]),
    ("the godfather is better than Godfather, The (1972) fans say", ["The Godfather"]),
    ("Watch 2001: a space odyssey and Nosferatu 1922 tonight", ["2001: A Space Odyssey", "Nosferatu"]),
    ("I watched Up last night and it cheered me up.", ["Up"]),
    ("Up is what I need. Things went up and down.", []),  # an everyday word at a sentence start
    ('I liked "Her" a lot, and M (1931).', ["Her", "M"]),
    ("Thanks Hugo, I owe you one.", []),  # a name in the chat, not the film
    ("The Godfater was amazing", ["The Godfather"]),  # a typo, fuzzy
])
def test_mentions_resolve_to_catalog_ids(text, titles):
    matcher = TitleMatcher(CATALOG)
    found = [CATALOG.get(i).title for i in matcher.ids(text, names={"Hugo"})]
    assert found == titles


def test_a_year_picks_between_films_of_the_same_title():
    matcher = TitleMatcher(CATALOG)
    remakes = [i for i in CATALOG.items if i.title == "True Grit"]
    assert len(remakes) == 2
    for film in remakes:
        assert matcher.ids(f"True Grit ({film.year}) is great") == [film.item_id]
    assert matcher.ids("True Grit is great", prefer={remakes[1].item_id}) == [remakes[1].item_id]


# -- the feed -------------------------------------------------------------------------------------

def test_the_feed_ranks_posts_per_reader():
    from simworld.social.config import FeedConfig
    from simworld.social.feed import posts_by_author, rank_feed
    from simworld.social.state import Post

    graph = SocialGraph([1, 2, 3, 4])
    graph.follow(1, 2, tie=0.9)
    graph.follow(1, 3, tie=0.2)
    posts = {
        10: Post(10, author=2, item_id=5, text="a", round=3, verdict=1.0, root_id=10, root_author=2),
        11: Post(11, author=3, item_id=6, text="b", round=3, verdict=1.0, root_id=11, root_author=3),
        12: Post(12, author=3, item_id=5, text="repost of a", round=3, verdict=1.0, parent_id=10, root_id=10,
                 root_author=2),
        13: Post(13, author=2, item_id=7, text="old", round=1, verdict=1.0, root_id=13, root_author=2),
        14: Post(14, author=3, item_id=8, text="own, reposted", round=3, verdict=1.0, parent_id=99, root_id=99,
                 root_author=1),
        15: Post(15, author=4, item_id=9, text="not followed", round=3, verdict=1.0, root_id=15, root_author=4),
    }
    by_author = posts_by_author(posts)
    spec = FeedConfig(size=5, max_age=5, w_likes=0.0)
    feed = rank_feed(1, graph, by_author, {}, set(), 4, spec)
    # fresh before old, a close friend before an acquaintance, one post per cascade, never the reader's own
    assert [p.post_id for p in feed] == [10, 11, 13]
    assert [p.post_id for p in rank_feed(1, graph, by_author, {}, {10}, 4, spec)] == [11, 12, 13]  # 10 was read
    assert [p.post_id for p in rank_feed(1, graph, by_author, {11: [2, 3, 4, 5]}, set(), 4,
                                         FeedConfig(w_likes=1.0))][:2] == [11, 10]  # liked widely
    scored = rank_feed(1, graph, by_author, {}, set(), 4, FeedConfig(w_recommender=2.0), {7: 1.0})
    assert scored[0].post_id == 13  # the recommender's top pick for this reader comes first
    assert rank_feed(1, graph, by_author, {}, set(), 4, FeedConfig(max_age=2))[-1].post_id == 11  # 13 too old


# -- cascades -----------------------------------------------------------------------------------------

def test_tree_stats():
    chain = tree_stats({1: None, 2: 1, 3: 2, 4: 3})
    assert chain == {"size": 4, "depth": 3, "max_breadth": 1, "structural_virality": pytest.approx(10 / 6)}
    star = tree_stats({1: None, 2: 1, 3: 1, 4: 1})
    assert star == {"size": 4, "depth": 1, "max_breadth": 3, "structural_virality": pytest.approx(9 / 6)}
    assert tree_stats({7: None})["structural_virality"] == 0.0
    posts = pl.DataFrame({"post_id": [1, 2, 3, 4, 5], "item_id": [9, 9, 9, 8, 9],
                          "parent_id": [None, 1, 1, None, None]})
    per_item = item_cascades(posts)
    assert per_item[9]["cascades"] == 2 and per_item[9]["reposts"] == 2 and per_item[9]["posts"] == 4
    assert per_item[9]["size"] == 3 and per_item[9]["depth"] == 1 and per_item[9]["max_breadth"] == 2
    assert per_item[8]["size"] == 1


def test_a_repost_chain_of_depth_3_in_the_metrics(tmp_path):
    """Agent 1 posts; 2, 3 and 4 each repost the previous repost, one round after another,
    through the stages' own apply and measure: cascades.parquet shows depth 3, breadth 1 and
    structural virality 10/6 for the film."""
    edges = tmp_path / "chain.csv"
    edges.write_text("2 1\n3 2\n4 3\n")  # 2 follows 1, 3 follows 2, 4 follows 3
    social = f"  graph: {{source: edge_list, path: {edges}, directed: true}}"
    sim = runner.start(social_scenario(tmp_path, size=6, social=social), out_dir=tmp_path / "runs", run_id="chain")
    world = sim.world
    layer = world.schedule["social_apply"].layer
    item = next(i.item_id for i in CATALOG.items if i.title == "Alien")
    parent = None
    for round_no, author in enumerate([1, 2, 3, 4], start=1):
        rnd = Round(number=round_no, events=EventBuilder("chain", round_no))
        post_id = layer.state.new_post_id()
        action = PostAction(post_id=post_id, item_id=item, text="Alien!",
                            audience=tuple(layer.state.graph.followers(author)), verdict=1.0, parent_id=parent)
        layer._count, layer._touched = dict.fromkeys(("posts", "reposts"), 0), set()
        layer._apply(world, rnd, author, action, {p: (x.author, x.item_id) for p, x in layer.state.posts.items()})
        layer.measure(world, rnd)
        parent = post_id
        rows = rnd.events.frame()
        assert rows["action"].to_list() == ["post" if round_no == 1 else "repost"]
        assert rows["parent_id"].to_list() == [None if round_no == 1 else post_id - 1]
        assert rows["audience"].to_list() == ([[author + 1]] if author < 4 else [[]])
    sim.close()
    cascades = files.read(sim.run_dir, files.CASCADES).filter(pl.col("item_id") == item).sort("round")
    last = cascades.row(-1, named=True)
    assert cascades["depth"].to_list() == [0, 1, 2, 3]
    assert (last["size"], last["depth"], last["max_breadth"], last["cascades"], last["reposts"]) == (4, 3, 1, 1, 3)
    assert last["structural_virality"] == pytest.approx(10 / 6)


# -- a whole run --------------------------------------------------------------------------------------

def test_a_social_run_writes_every_kind_of_row(tmp_path):
    run_dir = runner.run_scenario(social_scenario(tmp_path, rounds=6, size=80), out_dir=tmp_path / "runs", run_id="s")
    events = read_events(run_dir)
    actions = set(events["action"])
    assert {"chat", "post", "read_feed", "watch"} <= actions
    chats = events.filter(pl.col("action") == "chat")
    assert chats["target_id"].null_count() == 0 and chats["thread_id"].null_count() == 0
    assert (chats["text"].str.len_chars() > 5).all()
    posts = events.filter(pl.col("action") == "post")
    assert posts["post_id"].null_count() == 0 and posts["parent_id"].null_count() == posts.height
    assert events.filter(pl.col("action") == "watch")["source"].null_count() == 0
    metrics = pl.read_parquet(run_dir / "metrics.parquet")
    shares = metrics.select("recommended_share", "search_share", "friend_share", "feed_share").fill_nan(0) \
        .sum_horizontal()
    assert shares.filter(metrics["watches"] > 0).to_list() == pytest.approx([1.0] * int((metrics["watches"] > 0).sum()))
    rounds = files.read(run_dir, files.ROUNDS)
    assert rounds["round"].to_list() == list(range(1, 7))
    assert rounds["chat_messages"].sum() == chats.height and rounds["posts"].sum() == posts.height
    assert rounds["homophily"].drop_nans().min() > 0.3  # a taste SBM: friends share tastes
    communities = files.read(run_dir, files.COMMUNITIES)
    assert sorted(communities["round"].unique().to_list()) == list(range(0, 7))
    # activity mix: nobody both chats and browses in the same round
    firsts = events.filter(pl.col("action").is_in(["page", "search"])).select("round", "agent_id").unique()
    talkers = chats.select("round", pl.col("agent_id")).unique()
    starters = chats.group_by("thread_id").agg(pl.col("round").first(), pl.col("agent_id").first())
    assert firsts.join(starters.select("round", "agent_id"), on=["round", "agent_id"]).height == 0
    assert talkers.height > 0


def test_a_mix_knob_at_zero_turns_that_side_off(tmp_path):
    path = social_scenario(tmp_path, rounds=3, social="  mix: {watch: 1.0, talk: 0.0, post: 0.0}")
    events = read_events(runner.run_scenario(path, out_dir=tmp_path / "runs", run_id="w"))
    assert not set(events["action"]) & {"chat", "post", "read_feed", "repost", "like"}


def word_of_mouth_watches(tmp_path, uplift: float) -> tuple[int, int]:
    social = (f"  word_of_mouth: {{uplift: {uplift}, lookup: 0.3}}\n"
              "  mix: {watch: 0.6, talk: 0.3, post: 0.1}")
    path = social_scenario(tmp_path, seed=9, rounds=8, size=200, social=social, name=f"wom-{uplift}.yaml")
    events = read_events(runner.run_scenario(path, out_dir=tmp_path / "runs", run_id=f"u{uplift}"))
    watches = events.filter(pl.col("action") == "watch")
    return watches.filter(pl.col("source").is_in(["friend", "feed"])).height, watches.height


def test_word_of_mouth_uplift_brings_more_friend_sourced_watches(tmp_path):
    on, total_on = word_of_mouth_watches(tmp_path, 2.0)
    off, total_off = word_of_mouth_watches(tmp_path, 0.0)
    assert on > 2 * off + 10, (on, off)
    assert on / total_on > off / total_off


# -- resume ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("point", ["after:social_measure", "after:social_apply", "after:checkpoint"])
def test_resume_restores_the_graph_and_pending_posts_exactly(tmp_path, point):
    path = social_scenario(tmp_path, seed=12, rounds=6, size=80,
                           social="  follow: {suggest_rate: 0.5, unfollow_rate: 0.5}")
    reference = runner.start(path, out_dir=tmp_path / "ref", run_id="r")
    snapshots = {}
    for _ in range(6):
        reference.step()
        state = reference.world.schedule["social_apply"].layer.state
        snapshots[reference.world.round] = (state.graph.edges_frame(), dict(state.posts),
                                            {a: dict(h) for a, h in state.heard.items()})
    reference.finish()
    reference.close()

    out = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-m", "tests.killer", str(path), str(out), "r", point, "4"],
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    saved = read_checkpoint(out / "r", catalog=CATALOG, llm=None, embedder=None, streams=None, loop=None)
    committed = saved["round"]
    assert committed == (4 if point == "after:checkpoint" else 3)
    state = saved["stages"]["social_apply"]["state"]
    edges, posts, heard = snapshots[committed]
    assert state.graph.edges_frame().equals(edges)
    assert state.posts == posts and state.posts  # the posts still in feeds: pending for their readers
    assert {a: dict(h) for a, h in state.heard.items()} == heard
    assert files.read(out / "r", files.ROUNDS)["round"].max() >= committed

    done = subprocess.run([sys.executable, "-m", "simworld.cli", "resume", str(out / "r")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert comparable(read_events(out / "r")).equals(comparable(read_events(tmp_path / "ref" / "r")))
    for name in (files.ROUNDS, files.CASCADES, files.GRAPH, files.COMMUNITIES):
        assert_frame_equal(files.read(out / "r", name), files.read(tmp_path / "ref" / "r", name))


def test_an_llm_message_that_fails_twice_is_written_by_the_templates_and_counted(openai_server, tmp_path):
    server = openai_server(fault_rate=1.0, fault_kinds=("invalid",))
    social = ("  chat: {speaker: llm, max_turns: 3}\n  mix: {watch: 0.5, talk: 0.5, post: 0.0}\n"
              f"llm: {{model: openai/test-model, api_base: '{server.url}', retry_base_s: 0.01, timeout_s: 5}}")
    run_dir = runner.run_scenario(social_scenario(tmp_path, rounds=3, size=30, social=social),
                                  out_dir=tmp_path / "runs", run_id="bad")
    chats = read_events(run_dir).filter(pl.col("action") == "chat")
    assert chats.height > 0 and set(chats["policy"]) == {"fallback"}
    assert (chats["text"].str.len_chars() > 5).all()  # a template line, never an empty default
    calls = read_ledger(run_dir).filter(pl.col("purpose") == "chat")
    assert calls.height == 2 * chats.height and set(calls["outcome"]) == {"invalid_output"}  # asked once more


def test_mentions_become_memories_of_both_agents(tmp_path):
    social = "  graph: {degree: 6}\nmemory: {backend: inprocess, embedder: hashing}"
    sim = runner.start(social_scenario(tmp_path, rounds=5, size=40, social=social), out_dir=tmp_path / "runs",
                       run_id="mem")
    sim.run()
    events = read_events(sim.run_dir)
    names = dict(pl.read_parquet(sim.run_dir / "personas.parquet").select("agent_id", "name").iter_rows())
    watched = {(a, i, r) for a, i, r in events.filter(pl.col("action") == "watch")
               .select("agent_id", "item_id", "round").iter_rows()}
    checked = 0
    for row in events.filter((pl.col("action") == "chat") & (pl.col("items").list.len() > 0)).iter_rows(named=True):
        film = row["items"][0]
        if any((row["target_id"], film, r) in watched for r in range(1, row["round"] + 1)):
            continue  # the listener had seen it: nothing new to hear
        label = CATALOG.get(film).label
        heard = " ".join(sim.memories(row["target_id"]))
        said = " ".join(sim.memories(row["agent_id"]))
        assert f"heard about {label} from {names[row['agent_id']]}" in heard
        assert f"told {names[row['target_id']]} about {label}" in said
        checked += 1
        if checked == 5:
            break
    sim.close()
    assert checked > 0


def test_an_llm_agent_reads_what_it_heard_in_its_next_decision(openai_server, tmp_path):
    server = openai_server(answer=chat_answer(done_after=2))
    social = ("  mix: {watch: 0.5, talk: 0.5, post: 0.0}\n"
              f"policy: llm\nllm: {{model: openai/test-model, api_base: '{server.url}', retry_base_s: 0.01}}")
    text = SOCIAL.format(seed=4, rounds=4, size=20, probability=0.9, recommender="popularity", social=social)
    run_dir = runner.run_scenario(write_scenario(tmp_path, text.replace("policy: rule\n", ""), "llm.yaml"),
                                  out_dir=tmp_path / "runs", run_id="heard")
    events = read_events(run_dir)
    assert events.filter(pl.col("action") == "chat")["policy"].unique().to_list() == ["llm"]  # auto: LLM agents
    prompts = [" ".join(m["content"] for m in r["messages"]) for r in server.requests]
    decisions = [p for p in prompts if "heard about Alien (1979) from" in p and "The chat so far" not in p]
    assert decisions  # the mention, as a memory, in a later decision's prompt
