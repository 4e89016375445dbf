"""`simworld eval fidelity SCENARIO`: simulated users against the held-out part of the real ones.

The scenario must ground its population in MovieLens (`population.source: movielens`, with a
`holdout` share): its agents, their personas and warm-start histories are built exactly as a
run builds them, from the training part only. Then, for every policy asked for and for the
random and popularity baselines, on the same trials:

* **Preference alignment** (Agent4Rec's 1:m protocol). A trial is one held-out film the user
  liked (rated >= `liked_rating`) and m films they never rated (in the whole data set),
  shuffled onto one page. The policy judges the page as it judges any page in a run (the
  rule model draws its watches; an LLM answers the page's JSON schema) and the films it
  watches are its "liked" labels; random picks one film at random and popularity the film
  with the most training ratings. Accuracy, precision, recall and F1 are over every film of
  every trial, for m = 1, 3 and 9 (the m negatives of a trial are nested, so m = 1 is the
  first film of m = 3's).
* **Rating prediction** on held-out rated films: the policy's expected rating (the rule
  model's before its noise; an LLM's own rating of the film shown alone, where it watches it)
  by RMSE and MAE, next to the training data's global mean, each user's mean and each film's
  mean.
* **Distributional realism** of a run of the scenario against the same users' held-out
  period: activity per user (Gini, KS distance of the mean-normalised counts), genre shares,
  the item-popularity long tail (share of the top 20% of films, Gini) and the rating
  histogram (total-variation distance).
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from simworld.agents.observation import Observation
from simworld.agents.rule_policy import RulePolicy
from simworld.catalog import Item
from simworld.config import Scenario
from simworld.errors import SimworldError
from simworld.fidelity import metrics as fm
from simworld.recorder import stamped_run_id
from simworld.streams import Streams, register_stream

register_stream("fidelity", "the fidelity trials' films and policies' draws (keys: trial, m)")

M_VALUES = (1, 3, 9)
BASELINES = ("random", "popularity")
POLICIES = ("rule", "hybrid", "llm")


@dataclass(frozen=True)
class Trial:
    agent_id: int
    positive: int
    negatives: tuple[int, ...]  # max(m) never-rated films, nested: the first m are the m-trial's


@dataclass
class FidelityResult:
    scenario: str
    users: int
    alignment: list[dict[str, Any]]  # policy, m, accuracy, precision, recall, f1, trials, fallback
    ratings: list[dict[str, Any]]  # predictor, rmse, mae, n
    realism: dict[str, Any] = field(default_factory=dict)

    def alignment_table(self) -> pl.DataFrame:
        """One row per policy: accuracy and F1 (and precision, recall) per m."""
        frame = pl.DataFrame(self.alignment)
        rows = []
        for policy in frame["policy"].unique(maintain_order=True).to_list():
            row: dict[str, Any] = {"policy": policy}
            for rec in frame.filter(pl.col("policy") == policy).iter_rows(named=True):
                for key in ("accuracy", "precision", "recall", "f1"):
                    row[f"{key[:4] if key != 'f1' else 'f1'}@1:{rec['m']}"] = rec[key]
            rows.append(row)
        return pl.DataFrame(rows)

    def ratings_table(self) -> pl.DataFrame:
        return pl.DataFrame(self.ratings)

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "users": self.users, "alignment": self.alignment,
                "ratings": self.ratings, "realism": self.realism}


def _history_by_agent(history: pl.DataFrame) -> dict[int, dict[int, float]]:
    out: dict[int, dict[int, float]] = {}
    for user, item, rating in history.select("user_id", "item_id", "rating").iter_rows():
        out.setdefault(user, {})[item] = rating
    return out


class Trials:
    """A grounded population and the trials drawn from its held-out part (shared by all policies)."""

    def __init__(self, scenario: Scenario, trials_per_user: int = 3, ratings_per_user: int = 10,
                 liked_rating: float = 4.0):
        from simworld.build import build_catalog, build_population, grounding

        if scenario.population.source != "movielens":
            raise SimworldError("eval fidelity needs a MovieLens-grounded population: set population.source "
                                "to 'movielens' (and catalog.source to 'movielens' on the same folder)")
        if scenario.population.holdout <= 0:
            raise SimworldError("eval fidelity needs held-out ratings: set population.holdout above 0 (e.g. 0.2)")
        self.scenario = scenario.with_settings({"population.seed_history": True})
        self.ground = grounding(self.scenario)
        self.catalog = build_catalog(self.scenario)
        if self.ground.catalog is not self.catalog:
            raise SimworldError("eval fidelity needs catalog.source 'movielens' on the population's folder")
        self.streams = Streams(scenario.seed)
        personas, history = build_population(self.scenario, self.catalog, self.streams)
        self.personas = {p.agent_id: p for p in personas}
        self.history = _history_by_agent(history)
        self.source = {p.agent_id: int(p.source.split(":", 1)[1]) for p in personas}
        self.taste = self.ground.taste
        crowd = self.ground.crowd
        self._crowd = dict(zip(crowd["item_id"].to_list(), (crowd["total"] / crowd["n"]).to_list()))
        self.popularity = dict(zip(crowd["item_id"].to_list(), crowd["n"].to_list()))
        rng = self.streams.generator("fidelity", 0, 0)
        users = set(self.source.values())
        rated = (self.ground.ratings.filter(pl.col("user_id").is_in(list(users)))
                 .group_by("user_id").agg(pl.col("item_id")))
        rated_by = {u: set(items) for u, items in rated.iter_rows()}
        test = self.ground.test.filter(pl.col("user_id").is_in(list(users))).sort(["user_id", "timestamp", "item_id"])
        self.test = test
        ids = self.catalog.ids
        agent_of = {u: a for a, u in self.source.items()}
        self.trials: list[Trial] = []
        self.rated: list[tuple[int, int, float]] = []  # agent, item, held-out rating
        for (user,), part in test.partition_by("user_id", as_dict=True, maintain_order=True).items():
            agent = agent_of[user]
            liked = part.filter(pl.col("rating") >= liked_rating)["item_id"].to_list()
            never = ids[~np.isin(ids, list(rated_by.get(user, ())))]
            if liked and len(never) >= max(M_VALUES):
                for pos in rng.choice(liked, size=min(trials_per_user, len(liked)), replace=False).tolist():
                    negs = rng.choice(never, size=max(M_VALUES), replace=False).tolist()
                    self.trials.append(Trial(agent, int(pos), tuple(int(n) for n in negs)))
            rows = part.select("item_id", "rating").rows()
            for k in sorted(rng.choice(len(rows), size=min(ratings_per_user, len(rows)), replace=False).tolist()):
                self.rated.append((agent, int(rows[k][0]), float(rows[k][1])))
        if not self.trials:
            raise SimworldError("no sampled user has a held-out film they liked: raise population.size or holdout")

    def crowd_mean(self, item_id: int) -> float | None:
        return self._crowd.get(item_id)

    def observation(self, agent_id: int, page: tuple[Item, ...], rng: np.random.Generator) -> Observation:
        persona = self.personas[agent_id]
        history = self.history.get(agent_id, {})
        return Observation(
            agent_id=agent_id, round=0, persona=persona, taste=persona.taste_vector(self.catalog.genres),
            pages=(page,), watched=frozenset(history), catalog=self.catalog, item_mean_rating=self.crowd_mean,
            search=self.catalog.search, rng=rng, user_taste=self.taste.view(history))

    def page(self, trial_no: int, trial: Trial, m: int) -> tuple[tuple[Item, ...], tuple[bool, ...], np.random.Generator]:
        rng = self.streams.generator("fidelity", trial_no + 1, m)
        ids = [trial.positive, *trial.negatives[:m]]
        order = rng.permutation(len(ids))
        page = tuple(self.catalog.get(ids[k]) for k in order)
        return page, tuple(ids[k] == trial.positive for k in order), rng


# -- the judges: a policy's picks on a page -----------------------------------------------------

def _baseline_picks(name: str, trials: Trials, page: tuple[Item, ...], rng: np.random.Generator) -> list[bool]:
    if name == "random":
        pick = int(rng.integers(len(page)))
    else:
        pick = min(range(len(page)), key=lambda k: (-trials.popularity.get(page[k].item_id, 0), page[k].item_id))
    return [k == pick for k in range(len(page))]


async def _judge(policy, obs: Observation, page: tuple[Item, ...]) -> tuple[set[int], str]:
    """The films a policy watches on a page judged alone, and who decided (rule, llm, fallback)."""
    if hasattr(policy, "judge"):  # LLMPolicy
        decision, who = await policy.judge(obs, page)
    else:
        rule = policy if isinstance(policy, RulePolicy) else getattr(policy, "rule", None)
        if rule is None:
            raise SimworldError(f"policy {type(policy).__name__} cannot judge a page on its own")
        decision, who = rule.judge_page(obs, page, pages_seen=0, allow_next=False), "rule"
    return {w.item_id for w in decision.watches}, who


def _policy_for(trials: Trials, kind: str):
    """(policy for a persona, the LLM stack or None) as a run of the scenario with `kind` builds them."""
    from simworld.build import build_llm, llm_agent_ids, policy_factory, voiced_agent_ids

    scenario = trials.scenario.with_settings({"policy.kind": kind})
    rule = RulePolicy(scenario.policy.rule)
    if kind == "rule":
        return (lambda persona: rule), None
    llm = build_llm(scenario, None, "fidelity", trials.streams)
    ids = sorted(trials.personas)
    llm_ids = llm_agent_ids(scenario, ids, trials.streams)
    factory = policy_factory(scenario, llm, llm_ids, voiced_agent_ids(scenario, ids, llm_ids, trials.streams))
    return factory, llm


def _align(trials: Trials, name: str) -> list[dict[str, Any]]:
    rows = []
    policy_for, llm = (None, None) if name in BASELINES else _policy_for(trials, name)
    try:
        for m in M_VALUES:
            decisions, fallbacks = [], 0

            async def one(no: int, trial: Trial, m: int = m):  # bound: runs within this iteration
                page, truth, rng = trials.page(no, trial, m)
                if policy_for is None:
                    return truth, _baseline_picks(name, trials, page, rng), "baseline"
                picked, who = await _judge(policy_for(trials.personas[trial.agent_id]),
                                           trials.observation(trial.agent_id, page, rng), page)
                return truth, [item.item_id in picked for item in page], who

            async def everything():
                return await asyncio.gather(*(one(no, t) for no, t in enumerate(trials.trials)))

            for truth, chosen, who in asyncio.run(everything()):
                decisions.append((truth, chosen))
                fallbacks += who == "fallback"
            rows.append({"policy": name, "m": m, **fm.alignment(decisions), "trials": len(decisions),
                         "fallback": fallbacks})
    finally:
        if llm is not None:
            asyncio.run(_close(llm))
    return rows


async def _close(llm) -> None:
    close = getattr(llm, "aclose", None) or getattr(llm, "close", None)
    if close is not None:
        result = close()
        if asyncio.iscoroutine(result):
            await result


def _rating_rows(trials: Trials, names: list[str]) -> list[dict[str, Any]]:
    train = trials.ground.train
    mu = float(train["rating"].mean())
    user_mean = dict(train.group_by("user_id").agg(pl.col("rating").mean()).iter_rows())
    item_mean = dict(train.group_by("item_id").agg(pl.col("rating").mean()).iter_rows())
    actual = [r for _, _, r in trials.rated]
    rows = []
    for label, predict in (("global mean", lambda a, i: mu),
                           ("user mean", lambda a, i: user_mean.get(trials.source[a], mu)),
                           ("item mean", lambda a, i: item_mean.get(i, mu))):
        rmse, mae = fm.rmse_mae([predict(a, i) for a, i, _ in trials.rated], actual)
        rows.append({"predictor": label, "rmse": rmse, "mae": mae, "n": len(actual)})
    for name in names:
        policy_for, llm = _policy_for(trials, name)
        try:
            predicted, truth = [], []

            async def rate(no: int, agent: int, item_id: int, policy_for=policy_for):
                policy = policy_for(trials.personas[agent])
                item = trials.catalog.get(item_id)
                rng = trials.streams.generator("fidelity", no + 1, 0)
                obs = trials.observation(agent, (item,), rng)
                if hasattr(policy, "judge"):  # an LLM rates what it chooses to watch
                    decision, _who = await policy.judge(obs, (item,))
                    return next((w.rating for w in decision.watches), None)
                rule = policy if isinstance(policy, RulePolicy) else policy.rule
                return rule.expected_rating(obs, item)

            async def everything():
                return await asyncio.gather(*(rate(no, a, i) for no, (a, i, _) in enumerate(trials.rated)))

            for value, (_, _, r) in zip(asyncio.run(everything()), trials.rated):
                if value is not None:
                    predicted.append(value)
                    truth.append(r)
            rmse, mae = fm.rmse_mae(predicted, truth)
            rows.append({"predictor": name, "rmse": rmse, "mae": mae, "n": len(predicted)})
        finally:
            if llm is not None:
                asyncio.run(_close(llm))
    return rows


# -- distributional realism ---------------------------------------------------------------------

def realism(trials: Trials, events: pl.DataFrame) -> dict[str, Any]:
    """A run's watches against the same users' held-out period."""
    watches = events.filter(pl.col("action") == "watch")
    agents = sorted(trials.personas)
    sim_counts = dict(watches.group_by("agent_id").len().iter_rows())
    real_counts = dict(trials.test.group_by("user_id").len().iter_rows())
    sim_act = np.array([sim_counts.get(a, 0) for a in agents], dtype=np.float64)
    real_act = np.array([real_counts.get(trials.source[a], 0) for a in agents], dtype=np.float64)
    norm = lambda x: x / x.mean() if x.mean() > 0 else x

    def genre_shares(item_ids: list[int]) -> dict[str, float]:
        shares: dict[str, float] = {}
        for i in item_ids:
            genres = trials.catalog.get(i).genres or ("(none)",)
            for g in genres:
                shares[g] = shares.get(g, 0.0) + 1.0 / len(genres)
        total = sum(shares.values()) or 1.0
        return {g: v / total for g, v in sorted(shares.items())}

    sim_items = watches["item_id"].to_list()
    real_items = trials.test["item_id"].to_list()
    sim_pop = np.bincount(trials.catalog.rows(sim_items), minlength=len(trials.catalog)) if sim_items else np.zeros(1)
    real_pop = np.bincount(trials.catalog.rows(real_items), minlength=len(trials.catalog))
    sim_g, real_g = genre_shares(sim_items), genre_shares(real_items)
    sim_r, real_r = watches["rating"].drop_nulls().to_list(), trials.test["rating"].to_list()
    sim_h, real_h = fm.histogram(sim_r), fm.histogram(real_r)
    return {
        "activity": {"gini_sim": fm.gini(sim_act), "gini_real": fm.gini(real_act),
                     "ks": fm.ks_distance(norm(sim_act), norm(real_act))},
        "genres": {"sim": sim_g, "real": real_g, "tvd": fm.total_variation(sim_g, real_g)},
        "long_tail": {"top20_share_sim": fm.top_share(sim_pop), "top20_share_real": fm.top_share(real_pop),
                      "gini_sim": fm.gini(sim_pop), "gini_real": fm.gini(real_pop)},
        "ratings": {"sim": sim_h, "real": real_h, "tvd": fm.total_variation(sim_h, real_h),
                    "mean_sim": float(np.mean(sim_r)) if sim_r else math.nan, "mean_real": float(np.mean(real_r)),
                    "sd_sim": float(np.std(sim_r)) if sim_r else math.nan, "sd_real": float(np.std(real_r))},
        "watches": len(sim_items),
    }


def run_fidelity(scenario: Scenario, policies: list[str] | None = None, *, users: int | None = None,
                 trials_per_user: int = 3, ratings_per_user: int = 10, rounds: int | None = None,
                 out_dir: Path | None = None) -> FidelityResult:
    """Score the scenario's simulated users (and the baselines) against the held-out data.

    `policies`: any of rule, hybrid, llm (default: rule, and the scenario's own kind);
    `users`: population size for the trials (default: the scenario's); `rounds`: the run
    for distributional realism (default: the scenario's; 0 skips it); `out_dir` receives the
    run folder, `fidelity.json` and `report.html` when given."""
    names = policies or list(dict.fromkeys(["rule", scenario.policy.kind]))
    for name in names:
        if name not in POLICIES:
            raise SimworldError(f"unknown policy {name!r}: use {', '.join(POLICIES)}")
    if users is not None:
        scenario = scenario.with_settings({"population.size": users})
    trials = Trials(scenario, trials_per_user, ratings_per_user)
    alignment = [row for name in (*BASELINES, *names) for row in _align(trials, name)]
    ratings = _rating_rows(trials, names)
    result = FidelityResult(scenario.name, len(trials.personas), alignment, ratings)
    rounds = scenario.rounds if rounds is None else rounds
    if rounds > 0:
        from simworld import runner
        from simworld.recorder import read_events

        where = Path(out_dir) if out_dir is not None else None
        if where is None:
            import tempfile

            tmp = tempfile.TemporaryDirectory()
            where = Path(tmp.name)
        run_scenario = scenario.with_overrides(rounds=rounds)
        sim = runner.start(run_scenario, out_dir=where, run_id=stamped_run_id(run_scenario.name, run_scenario.seed))
        try:
            sim.run()
        finally:
            sim.close()
        result.realism = realism(trials, read_events(sim.run_dir))
        result.realism["run_dir"] = str(sim.run_dir) if out_dir is not None else None
    if out_dir is not None:
        write_outputs(result, Path(out_dir))
    return result


def write_outputs(result: FidelityResult, out_dir: Path) -> tuple[Path, Path]:
    from simworld.fidelity.report import write_report

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "fidelity.json"
    path.write_text(json.dumps(result.to_json(), indent=2, default=float), encoding="utf-8")
    return path, write_report(result, out_dir / "report.html")
