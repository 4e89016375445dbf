"""The rule policy is a calibrated choice model, not a coin flip."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simworld.agents.actions import BrowseAction, SearchAction, watches_of
from simworld.agents.observation import Observation
from simworld.agents.rule_policy import RulePolicy
from simworld.catalog import load_bundled_catalog
from simworld.config import RulePolicySpec
from simworld.population import Persona, synthetic_personas


@pytest.fixture(scope="module")
def catalog():
    return load_bundled_catalog()


def persona_liking(catalog, genre: str, **kw) -> Persona:
    taste = {g: (1.0 if g == genre else 0.0) for g in catalog.genres}
    base = dict(agent_id=1, name="T", age=30, occupation="tester", traits=("calm",), genre_taste=taste,
                activity=0.5, diversity=0.0, conformity=0.0, curiosity=0.0, rating_bias=0.0, rating_noise=0.3)
    base.update(kw)
    return Persona(**base)


def observe(catalog, persona, pages, seed=0, watched=frozenset(), mean=lambda i: None) -> Observation:
    return Observation(agent_id=persona.agent_id, round=1, persona=persona,
                       taste=persona.taste_vector(catalog.genres), pages=pages, watched=watched,
                       catalog=catalog, item_mean_rating=mean, search=catalog.search,
                       rng=np.random.default_rng(seed))


def items_with(catalog, genre: str, n: int, exclude: str | None = None):
    out = [i for i in catalog.items if genre in i.genres and (exclude is None or exclude not in i.genres)]
    assert len(out) >= n
    return tuple(out[:n])


def test_watch_probability_rises_with_taste_match_and_falls_with_fatigue_and_repeats(catalog):
    policy = RulePolicy()
    fan = persona_liking(catalog, "Horror")
    horror = items_with(catalog, "Horror", 1)[0]
    musical = items_with(catalog, "Musical", 1, exclude="Horror")[0]
    obs = observe(catalog, fan, ())
    p_match = policy.watch_probability(obs, horror, pages_seen=0)
    p_other = policy.watch_probability(obs, musical, pages_seen=0)
    assert p_match > 0.5 > p_other
    assert policy.watch_probability(obs, horror, pages_seen=2) < p_match
    obs_seen = observe(catalog, fan, (), watched=frozenset({horror.item_id}))
    assert policy.watch_probability(obs_seen, horror, pages_seen=0) < p_match / 5


def test_fans_pick_their_genre_from_a_mixed_page(catalog):
    policy = RulePolicy()
    picked = {"Horror": 0, "other": 0}
    page = items_with(catalog, "Horror", 5) + items_with(catalog, "Musical", 5, exclude="Horror")
    fan = persona_liking(catalog, "Horror", curiosity=0.0)
    for seed in range(200):
        action = policy.decide_now(observe(catalog, fan, (page,), seed=seed))
        for w in watches_of(action):
            picked["Horror" if "Horror" in catalog.get(w.item_id).genres else "other"] += 1
    assert picked["Horror"] > 5 * max(picked["other"], 1)


def test_social_proof_sways_conformists_only(catalog):
    policy = RulePolicy()
    item = items_with(catalog, "Drama", 1)[0]
    for conformity, expect_change in ((1.0, True), (0.0, False)):
        p = persona_liking(catalog, "Drama", conformity=conformity)
        loved = policy.utility(observe(catalog, p, (), mean=lambda i: 5.0), item)
        hated = policy.utility(observe(catalog, p, (), mean=lambda i: 1.0), item)
        assert (loved > hated) is expect_change


def test_ratings_follow_utility_and_are_half_stars(catalog):
    policy = RulePolicy()
    fan = persona_liking(catalog, "Western", rating_noise=0.01)
    western = items_with(catalog, "Western", 1)[0]
    other = items_with(catalog, "Romance", 1, exclude="Western")[0]
    obs = observe(catalog, fan, ())
    good, bad = policy.rating(obs, western), policy.rating(obs, other)
    assert good > bad
    assert (good * 2).is_integer() and 0.5 <= bad <= 5.0


def test_population_ratings_are_calibrated_like_movielens(catalog):
    """Over a synthetic population the rating distribution sits near MovieLens' (3.5, 1.04)."""
    policy = RulePolicy()
    people = synthetic_personas(300, catalog, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    ratings = []
    for person in people:
        page = tuple(catalog.items[i] for i in rng.choice(len(catalog), 10, replace=False))
        for w in watches_of(policy.decide_now(observe(catalog, person, (page,), seed=person.agent_id))):
            ratings.append(w.rating)
    ratings = np.array(ratings)
    assert len(ratings) > 150
    assert 3.0 <= ratings.mean() <= 4.0
    assert 0.7 <= ratings.std() <= 1.3


def test_same_stream_same_decision_and_actions_are_typed(catalog):
    policy = RulePolicy(RulePolicySpec(search_rate=0.5))
    person = synthetic_personas(1, catalog, np.random.default_rng(3))[0]
    pages = (catalog.items[:10], catalog.items[10:20])
    kinds = set()
    for seed in range(40):
        a = policy.decide_now(observe(catalog, person, pages, seed=seed))
        b = asyncio.run(policy.decide(observe(catalog, person, pages, seed=seed)))
        assert a == b
        kinds.add(type(a))
        if isinstance(a, SearchAction):
            assert a.query and set(w.item_id for w in a.decision.watches) <= set(a.results)
    assert {BrowseAction, SearchAction} <= kinds


# -- numerically safe for any valid constant (issue 10, section 3) ----------------------------

def test_extreme_constants_decide_without_overflow(catalog):
    """`repeat_penalty: 1000` (never rewatch), `page_fatigue: 1000`, `continue_bias: -1000` once
    overflowed math.exp; now they are certainties."""
    spec = RulePolicySpec(repeat_penalty=1000, page_fatigue=1000, continue_bias=-1000, search_rate=0)
    policy = RulePolicy(spec)
    fan = persona_liking(catalog, "Horror")
    page = items_with(catalog, "Horror", 5)
    watched = frozenset(i.item_id for i in page)
    for seed in range(20):
        action = policy.decide_now(observe(catalog, fan, (page, page), seed=seed, watched=watched))
        assert watches_of(action) == []  # never rewatch
        assert not isinstance(action, BrowseAction) or len(action.pages) == 1  # never a second page
    assert policy.watch_probability(observe(catalog, fan, ()), page[0], pages_seen=3) == 0.0


def test_sigmoid_is_safe_and_exact_across_the_float_range():
    from simworld.agents.rule_policy import sigmoid

    assert sigmoid(-1e6) == 0.0 and sigmoid(1e6) == 1.0 and sigmoid(-1000) == 0.0
    assert sigmoid(0.0) == 0.5 and 0.0 < sigmoid(-710) < 1e-300
    for x in (-30.0, -5.0, 0.3, 7.0):
        assert sigmoid(x) == 1.0 / (1.0 + math.exp(-x))  # unchanged where exp cannot overflow


def bounded(name: str) -> st.SearchStrategy:
    """Any valid value of a RulePolicySpec float field, its bounds likely."""
    lo, hi = -1e6, 1e6
    for bound in RulePolicySpec.model_fields[name].metadata:  # annotated_types Ge, Gt, Le
        if getattr(bound, "ge", None) is not None:
            lo = bound.ge
        if getattr(bound, "gt", None) is not None:
            lo = math.nextafter(bound.gt, math.inf)
        if getattr(bound, "le", None) is not None:
            hi = bound.le
    return st.one_of(st.sampled_from([lo, hi]), st.floats(lo, hi))


FLOAT_FIELDS = [n for n, f in RulePolicySpec.model_fields.items() if f.annotation is float]


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.fixed_dictionaries({n: bounded(n) for n in FLOAT_FIELDS}), seed=st.integers(0, 2**32 - 1))
def test_any_valid_constants_give_a_valid_decision(catalog, values, seed):
    policy = RulePolicy(RulePolicySpec(**values))
    person = synthetic_personas(1, catalog, np.random.default_rng(seed % 1000))[0]
    pages = (catalog.items[:8], catalog.items[8:16], catalog.items[16:24])
    obs = observe(catalog, person, pages, seed=seed, watched=frozenset(i.item_id for i in catalog.items[:4]),
                  mean=lambda i: 4.5)
    for item in pages[0]:
        assert 0.0 <= policy.watch_probability(obs, item, pages_seen=2) <= 1.0
        rating = policy.rating(obs, item)
        assert 0.5 <= rating <= 5.0 and (rating * 2).is_integer()
    action = policy.decide_now(obs)
    for watch in watches_of(action):
        assert 0.5 <= watch.rating <= 5.0 and (watch.rating * 2).is_integer()


# -- decide_batch: the whole round's agents at once, the same actions as one at a time ------------

def round_observations(sim) -> list[Observation]:
    """The observations the next round of a live run hands to decide (its stages up to observe)."""
    from simworld.events import EventBuilder
    from simworld.stages import Round

    world = sim.world
    rnd = Round(number=world.round + 1, events=EventBuilder(world.run_id, world.round + 1))
    for name in ("activate", "recommend", "recall", "observe"):
        world.schedule[name].run(world, rnd)
    return rnd.observations


def with_fresh_rngs(observations: list[Observation], seed: int = 5) -> list[Observation]:
    """Copies that draw the same numbers from the start (deciding consumes an observation's rng)."""
    return [replace(o, rng=np.random.default_rng([seed, o.agent_id])) for o in observations]


def with_word_of_mouth(observations: list[Observation], catalog) -> list[Observation]:
    """Every third agent heard of films from friends (some on its pages, some not), with a chance
    of looking the best one up; the social layer's extras."""
    out = []
    for k, o in enumerate(observations):
        if k % 3:
            out.append(o)
            continue
        on_page = [item.item_id for page in o.pages for item in page][:2]
        heard = {i: 1.5 - 0.5 * j for j, i in enumerate([*on_page, int(catalog.ids[k % len(catalog)])])}
        out.append(replace(o, extra={**o.extra, "heard": heard, "lookup": 0.6 if k % 2 else 0.0}))
    return out


def assert_batch_equals_one_at_a_time(policy: RulePolicy, observations: list[Observation]) -> list:
    # the one-item utility (calibration, expected ratings) is the batch's number exactly
    for o in observations[:40]:
        items = [item for page in o.pages for item in page]
        u, _ = policy._score([(o, tuple(items), 0)])
        assert [policy.utility(o, item) for item in items] == u.tolist()
    one_by_one = [policy.decide_now(o) for o in with_fresh_rngs(observations)]
    batch = policy.decide_batch(with_fresh_rngs(observations))
    assert len(batch) == len(one_by_one)
    for single, batched in zip(one_by_one, batch):
        assert batched == single
    # and through the decide stage's entry point, with the coroutine path as the reference
    from simworld.decide import decide_actions

    class OneAtATime:  # the policy without decide_batch: decide_actions awaits `decide` per agent
        async def decide(self, obs):
            return await policy.decide(obs)

    def gather(coroutines):
        async def run():
            return await asyncio.gather(*coroutines)
        return asyncio.run(run())

    staged = decide_actions(lambda _: policy, with_fresh_rngs(observations), gather)
    awaited = decide_actions(lambda _: OneAtATime(), with_fresh_rngs(observations), gather)
    assert staged == awaited == one_by_one
    return one_by_one


def kinds_and_watches(actions) -> tuple[set[str], int]:
    return {type(a).__name__ for a in actions}, sum(len(watches_of(a)) for a in actions)


@pytest.mark.parametrize("contrast", [0.0, 2.5])
def test_decide_batch_equals_deciding_one_at_a_time_for_synthetic_users(tmp_path, contrast):
    from simworld import runner
    from simworld.config import parse_scenario

    scenario = parse_scenario({
        "name": "batch", "seed": 3, "rounds": 6, "population": {"size": 300},
        "activity": {"model": "pareto", "probability": 0.6},
        "recommender": {"name": "popularity", "page_size": 8, "max_pages": 3},
        "policy": {"kind": "rule", "rule": {"page_contrast": contrast, "search_rate": 0.2}},
    })
    sim = runner.start(scenario, out_dir=tmp_path, run_id="batch")
    try:
        for _ in range(3):  # the crowd has rated films, agents have watched some (repeats are penalised)
            sim.step()
        observations = with_word_of_mouth(round_observations(sim), sim.world.catalog)
        policy = RulePolicy(scenario.policy.rule)
        actions = assert_batch_equals_one_at_a_time(policy, observations)
        # films found outside the platform: the same on both paths too, after browsing and searching
        discovering = RulePolicy(scenario.policy.rule.model_copy(update={"discovery_rate": 0.6}))
        found = assert_batch_equals_one_at_a_time(discovering, observations)
    finally:
        sim.close()
    kinds, watches = kinds_and_watches(actions)
    assert kinds == {"BrowseAction", "SearchAction", "IdleAction"} and watches > 50
    assert all(getattr(a, "discovered", None) is None for a in actions)
    assert {type(a).__name__ for a in found if getattr(a, "discovered", None) is not None} == \
        {"BrowseAction", "SearchAction"}
    assert sum(len(a.discovered[1].watches) for a in found if getattr(a, "discovered", None) is not None) > 20
    assert any(o.extra.get("heard") for o in observations) and any(o.watched for o in observations)
    # hand-built observations without the round's shared item means fall back to item_mean_rating
    bare = [replace(o, item_means=None) for o in observations[:40]]
    assert policy.decide_batch(with_fresh_rngs(bare)) == policy.decide_batch(with_fresh_rngs(observations[:40]))


def test_decide_batch_equals_deciding_one_at_a_time_for_movielens_users(movielens_small, tmp_path):
    from simworld import runner
    from simworld.config import load_scenario

    scenario = load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "movielens.yaml")
    scenario = scenario.with_overrides(rounds=4, population={**scenario.population.model_dump(), "size": 60},
                                       catalog={**scenario.catalog.model_dump(), "path": str(movielens_small)},
                                       recommender={**scenario.recommender.model_dump(), "name": "popularity"})
    sim = runner.start(scenario, out_dir=tmp_path, run_id="grounded")
    try:
        sim.step()
        observations = with_word_of_mouth(round_observations(sim), sim.world.catalog)
        assert observations and all(o.user_taste is not None for o in observations)
        policy = RulePolicy(scenario.policy.rule)
        actions = assert_batch_equals_one_at_a_time(policy, observations)
        discovering = RulePolicy(scenario.policy.rule.model_copy(update={"discovery_rate": 0.7}))
        found = assert_batch_equals_one_at_a_time(discovering, observations)
        # a grounded user's discovery weights are the taste model's affinity of every film
        o = observations[0]
        weights = discovering.taste_weights(o)
        for item in o.catalog.items[:50]:
            assert weights[o.catalog.row(item.item_id)] == pytest.approx(o.user_taste.affinity(item.item_id), abs=1e-9)
    finally:
        sim.close()
    assert kinds_and_watches(actions)[1] > 0
    discovered = [a.discovered for a in found if getattr(a, "discovered", None) is not None]
    assert discovered and sum(len(d.watches) for _, d in discovered) > 0


# -- discovery: films found outside the platform (issue 13, the long tail) ------------------------

def test_discovery_is_off_by_default_and_validated():
    from simworld.config import parse_scenario
    from simworld.errors import ScenarioError

    assert RulePolicySpec().discovery_rate == 0.0
    assert parse_scenario({"name": "d", "policy": {"rule": {"discovery_rate": 0.4}}}).policy.rule.discovery_rate == 0.4
    for bad in (-0.1, 1.5):
        with pytest.raises(ScenarioError, match="discovery_rate"):
            parse_scenario({"name": "d", "policy": {"rule": {"discovery_rate": bad}}})
    for bad in (0, 21):
        with pytest.raises(ScenarioError, match="discovery_films"):
            parse_scenario({"name": "d", "policy": {"rule": {"discovery_films": bad}}})


def test_discovery_films_sets_how_many_films_are_found(catalog):
    fan = persona_liking(catalog, "Drama")
    for films in (1, 5):
        policy = RulePolicy(RulePolicySpec(discovery_rate=1.0, discovery_films=films, idle_rate=0.0))
        action = policy.decide_now(observe(catalog, fan, (catalog.items[:5],), seed=films))
        assert len(action.discovered[0]) == films


def run_events(tmp_path, name: str, rule: dict, rounds: int = 4):
    from simworld import runner
    from simworld.config import parse_scenario
    from simworld.recorder import read_events

    scenario = parse_scenario({"name": "disc", "seed": 11, "rounds": rounds, "population": {"size": 80},
                               "activity": {"probability": 0.7}, "recommender": {"name": "popularity"},
                               "policy": {"kind": "rule", "rule": rule}})
    sim = runner.start(scenario, out_dir=tmp_path / name, run_id=name)
    try:
        sim.run()
    finally:
        sim.close()
    return read_events(sim.run_dir).drop("run_id", "latency_ms")


def test_discovery_at_zero_draws_exactly_what_a_run_without_it_drew(tmp_path):
    without = run_events(tmp_path, "without", {"search_rate": 0.2})
    at_zero = run_events(tmp_path, "at_zero", {"search_rate": 0.2, "discovery_rate": 0.0})
    assert without.equals(at_zero)
    assert without.filter(pl.col("action") == "discover").height == 0
    assert without.filter(pl.col("source") == "outside").height == 0
    on = run_events(tmp_path, "on", {"search_rate": 0.2, "discovery_rate": 0.5})
    assert not on.equals(without)


def test_a_run_with_discovery_logs_the_films_found_outside_and_their_watches(tmp_path):
    events = run_events(tmp_path, "on", {"discovery_rate": 0.5})
    found = events.filter(pl.col("action") == "discover")
    assert found.height > 20 and (found["text"] == "outside the platform").all()
    outside = events.filter((pl.col("action") == "watch") & (pl.col("source") == "outside"))
    assert outside.height > 10
    considered = {(r, a): set(items) for r, a, items in found.select("round", "agent_id", "items").iter_rows()}
    shown: dict[tuple[int, int], set[int]] = {}
    for r, a, items in events.filter(pl.col("action").is_in(["page", "search"])).select(
            "round", "agent_id", "items").iter_rows():
        shown.setdefault((r, a), set()).update(items or [])
    for r, a, item in outside.select("round", "agent_id", "item_id").iter_rows():
        assert item in considered[(r, a)] and item not in shown.get((r, a), set())  # found outside, not on a page
    # never a film the agent had watched in an earlier round
    watches = events.filter(pl.col("action") == "watch")
    first = {(a, i): r for a, i, r in watches.group_by("agent_id", "item_id").agg(pl.col("round").min()).iter_rows()}
    for r, a, items in found.select("round", "agent_id", "items").iter_rows():
        for item in items:
            assert first.get((a, item), r) >= r


def test_discovered_films_follow_the_taste_skip_watched_films_and_are_deterministic(catalog):
    policy = RulePolicy(RulePolicySpec(discovery_rate=1.0, search_rate=0.0, idle_rate=0.0))
    fan = persona_liking(catalog, "Horror")
    page = items_with(catalog, "Musical", 8, exclude="Horror")
    watched = frozenset(i.item_id for i in items_with(catalog, "Horror", 10))
    found, outside_watches = [], 0
    for seed in range(150):
        action = policy.decide_now(observe(catalog, fan, (page,), seed=seed, watched=watched))
        assert action == policy.decide_now(observe(catalog, fan, (page,), seed=seed, watched=watched))
        assert isinstance(action, BrowseAction) and action.discovered is not None
        ids, decision = action.discovered
        assert len(ids) == 3 and len(set(ids)) == len(ids)
        assert all(i in catalog for i in ids) and not set(ids) & watched
        assert not set(ids) & {item.item_id for item in page}
        assert {w.item_id for w in decision.watches} <= set(ids)
        assert watches_of(action)[-len(decision.watches):] == decision.watches if decision.watches else True
        found += ids
        outside_watches += len(decision.watches)
    horror = sum("Horror" in catalog.get(i).genres for i in found)
    assert horror / len(found) > 0.9  # a one-genre taste finds that genre
    assert outside_watches > 50
    assert len(set(found)) > 20  # drawn over the catalogue, not one favourite
    # the same seed with discovery off: no draw of it, the platform's part unchanged
    off = RulePolicy(RulePolicySpec(search_rate=0.0, idle_rate=0.0)).decide_now(observe(catalog, fan, (page,), seed=3))
    on = policy.decide_now(observe(catalog, fan, (page,), seed=3, watched=watched))
    assert off.discovered is None and on.discovered is not None


def test_discovery_weights_follow_the_genre_match_and_an_exhausted_taste_finds_nothing(catalog):
    policy = RulePolicy(RulePolicySpec(discovery_rate=1.0))
    fan = persona_liking(catalog, "Horror")
    obs = observe(catalog, fan, ())
    weights = policy.taste_weights(obs)
    is_horror = np.array(["Horror" in item.genres for item in catalog.items])
    assert (weights[~is_horror] == 0).all() and (weights[is_horror] > 0).all()
    every_horror = frozenset(item.item_id for item in catalog.items if "Horror" in item.genres)
    assert policy.discover(observe(catalog, fan, (), watched=every_horror)) == ()


def test_discovered_watches_are_logged_after_the_pages_with_their_source():
    from simworld.agents.actions import PageDecision, Watch
    from simworld.events import EventBuilder

    seen = PageDecision(watches=[Watch(item_id=1, rating=4.0, feeling="good")], then="leave")
    found = PageDecision(watches=[Watch(item_id=9, rating=3.5, feeling="fine")])
    events = EventBuilder("r", 1)
    events.add_action(4, BrowseAction(pages=(((1, 2), seen),), discovered=((9, 8, 7), found)))
    events.add_action(5, SearchAction(query="q", results=(3,), decision=PageDecision(), discovered=((6,), PageDecision())))
    frame = events.frame()
    assert frame.select("agent_id", "action", "item_id", "source").rows() == [
        (4, "page", None, None), (4, "watch", 1, "page"), (4, "leave", None, None), (4, "discover", None, None),
        (4, "watch", 9, "outside"), (5, "search", None, None), (5, "discover", None, None)]
    assert frame.filter(pl.col("action") == "discover")["items"].to_list() == [[9, 8, 7], [6]]


def grounded_discovery_scenario(movielens_small, **changes):
    from simworld.config import load_scenario

    scenario = load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "movielens.yaml")
    settings = {"population.size": 40, "rounds": 4, "catalog.path": str(movielens_small),
                "recommender.name": "popularity", "policy.rule.discovery_rate": 0.8, **changes}
    return scenario.with_settings(settings)


def test_a_stopped_run_with_discovery_resumes_to_the_uninterrupted_run(movielens_small, tmp_path):
    from simworld import runner
    from simworld.recorder import read_events
    from tests.helpers import comparable

    scenario = grounded_discovery_scenario(movielens_small)
    whole = runner.start(scenario, out_dir=tmp_path / "whole", run_id="whole")
    try:
        whole.run()
    finally:
        whole.close()
    part = runner.start(scenario, out_dir=tmp_path / "part", run_id="part")
    try:
        part.step()
        part.step()
    finally:
        part.close()
    resumed = runner.resume(part.run_dir)
    try:
        resumed.run()
    finally:
        resumed.close()
    want, got = (comparable(read_events(run.run_dir)).drop("run_id") for run in (whole, resumed))
    assert want.filter(pl.col("source") == "outside").height > 10
    assert got.equals(want)


def test_discovery_decides_the_same_in_worker_processes(movielens_small, tmp_path):
    from simworld import runner
    from simworld.recorder import read_events
    from tests.helpers import comparable

    frames = []
    for backend in ("local", "processes"):
        scenario = grounded_discovery_scenario(movielens_small, **{"execution.backend": backend, "rounds": 3})
        sim = runner.start(scenario, out_dir=tmp_path / backend, run_id=backend)
        try:
            sim.run()
        finally:
            sim.close()
        frames.append(comparable(read_events(sim.run_dir)).drop("run_id"))
    assert frames[0].filter(pl.col("action") == "discover").height > 10
    assert frames[1].equals(frames[0])
