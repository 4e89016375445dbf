"""`simworld calibrate SCENARIO`: fit the choice model's and the activity model's constants to
the training part of a MovieLens-grounded population's data, by maximum likelihood.

Nothing here reads the held-out part. The training part is cut once more in time (each
user's last `holdout` share of it is the validation part); agents keep the rest as history,
and each validation film the user liked becomes a page with `negatives` films they never
rated. On such a page the rule model watches film i with probability

    sigmoid(watch_slope * (u_i - watch_threshold) - page_contrast * (max_j u_j - u_i))

(agents/rule_policy.py, first page: no fatigue, no repeats), where u is the model's utility,
which these constants do not change. The liked film was watched and the never-rated ones were
not; `fit_choice` maximises, over (threshold, log slope, log contrast) with Nelder-Mead,
either that Bernoulli likelihood (`--objective likelihood`: calibrated probabilities, which on
ml-latest-small come out soft and make sampled choices less accurate) or the expected balanced
accuracy of the model's own sampled choices (`--objective accuracy`, the default). The activity
model's Pareto tail index is the one that makes the activity model, over the scenario's rounds,
spread activity over the users as unequally (Gini) as their training rating counts
(`fit_activity_alpha`).
The discovery channel (`policy.rule.discovery_rate`: how often a user also weighs films found
outside the platform, `discovery_films`: how many) is the setting of a grid, in expected films
found per active round (the rate at 3 films up to 1, then more films), at which a run of the
calibrated scenario puts as large a share of its watches on the most-watched 20% of films as the same users' training
ratings do (`fit_discovery_rate`). That share depends on the number of watches (fewer
draws over the same films leave more of them unwatched), so the training ratings are
subsampled to the run's number of watches before it is taken.
The result is written as a scenario the user can run, with the fidelity figures (1:m
alignment and rating error on the held-out part) before and after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from scipy.optimize import minimize

from simworld.config import Scenario, load_scenario, read_scenario_file
from simworld.errors import SimworldError


@dataclass(frozen=True)
class ChoiceFit:
    watch_threshold: float
    watch_slope: float
    page_contrast: float
    log_likelihood: float
    pages: int
    objective: str = "likelihood"


def page_probabilities(utilities: np.ndarray, threshold: float, slope: float, contrast: float) -> np.ndarray:
    """The rule model's first-page watch probabilities for one page's utilities."""
    x = slope * (utilities - threshold) - contrast * (utilities.max() - utilities)
    return 1.0 / (1.0 + np.exp(-np.clip(x, -500, 500)))


def log_likelihood(pages: list[np.ndarray], chosen: list[np.ndarray], threshold: float, slope: float,
                   contrast: float) -> float:
    total = 0.0
    for u, y in zip(pages, chosen):
        p = np.clip(page_probabilities(u, threshold, slope, contrast), 1e-12, 1 - 1e-12)
        total += float(np.sum(np.where(y, np.log(p), np.log1p(-p))))
    return total


Objective = Literal["likelihood", "accuracy"]
MAX_SLOPE, MAX_CONTRAST = 200.0, 1000.0  # log-odds per unit of utility: beyond these every choice is certain


def fit_choice(pages: list[np.ndarray], chosen: list[np.ndarray], start: tuple[float, float, float] = (0.45, 9.0, 1.0),
               objective: Objective = "likelihood") -> ChoiceFit:
    """(threshold, slope, contrast) fitted to observed page choices (utilities, watched flags).

    likelihood: the Bernoulli likelihood of every film's watched flag; accuracy: the expected
    balanced accuracy of the model's own sampled decisions (mean chance of watching a watched
    film and of skipping a skipped one, the two weighted equally), which rewards sharp choices."""
    if not pages:
        raise SimworldError("no validation pages to calibrate on: raise population.size or holdout")
    flat_u = np.concatenate(pages)
    flat_y = np.concatenate(chosen).astype(bool)
    bounds = np.cumsum([0] + [len(u) for u in pages])
    tops = np.repeat([u.max() for u in pages], np.diff(bounds))

    def unpack(theta: np.ndarray) -> tuple[float, float, float]:  # within bounds past which nothing changes
        return (float(np.clip(theta[0], -1.0, 2.0)), math.exp(min(theta[1], math.log(MAX_SLOPE))),
                math.exp(min(theta[2], math.log(MAX_CONTRAST))))

    def nll(theta: np.ndarray) -> float:
        thr, slope, contrast = unpack(theta)
        x = slope * (flat_u - thr) - contrast * (tops - flat_u)
        if objective == "accuracy":
            p = 1.0 / (1.0 + np.exp(-np.clip(x, -500, 500)))
            return -0.5 * float(p[flat_y].mean() + (1.0 - p[~flat_y]).mean())
        # log sigmoid(x) and log(1 - sigmoid(x)), stably
        return float(np.sum(np.where(flat_y, np.logaddexp(0, -x), np.logaddexp(0, x))))

    best = None
    for s0 in (start, (start[0], start[1] * 2, start[2] * 10), (start[0] - 0.2, start[1], 20.0)):
        theta0 = np.array([s0[0], math.log(s0[1]), math.log(max(s0[2], 1e-3))])
        res = minimize(nll, theta0, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 4000})
        if best is None or res.fun < best.fun:
            best = res
    thr, slope, contrast = unpack(best.x)
    slope, contrast = round(slope, 4), round(contrast, 4)
    return ChoiceFit(round(thr, 4), slope, contrast, log_likelihood(pages, chosen, thr, slope, contrast), len(pages),
                     objective)


def fit_pareto_alpha(counts: np.ndarray) -> float:
    """Hill's maximum-likelihood tail index of counts >= their minimum (Pareto type I)."""
    x = np.asarray(counts, dtype=np.float64)
    x = x[x > 0]
    if len(x) < 2:
        raise SimworldError("too few users to fit the activity model")
    logs = np.log(x / x.min())
    return float(len(x) / logs.sum()) if logs.sum() > 0 else 10.0


ALPHA_GRID = np.round(np.exp(np.linspace(np.log(0.5), np.log(20.0), 241)), 4)  # the config's floor 0.5 upward


def activity_counts(quantiles: np.ndarray, alpha: float, probability: float, rounds: int, draws: int = 20,
                    seed: int = 0) -> np.ndarray:
    """Rounds acted per user over `rounds`, `draws` times (draws x users): the Pareto activity
    model (simworld/activity.py) of users at these activity quantiles, each round a coin flip."""
    from types import SimpleNamespace

    from simworld.activity import ActivityModel
    from simworld.config import ActivitySpec

    people = [SimpleNamespace(activity=float(q)) for q in quantiles]  # the model reads only this trait
    rates = ActivityModel(ActivitySpec(model="pareto", pareto_alpha=alpha, probability=probability), people).base
    return np.random.default_rng(seed).binomial(rounds, rates, size=(draws, len(rates)))


def fit_activity_alpha(quantiles: np.ndarray, counts: np.ndarray, probability: float, rounds: int) -> float:
    """The Pareto tail index at which the activity model, run for `rounds`, spreads activity over
    users as unequally (Gini) as their real rating `counts`.

    Hill's estimator (`fit_pareto_alpha`) reads the counts as a Pareto law from their minimum;
    MovieLens counts are not one (every user has at least 20 ratings, and the body is
    log-normal), so on ml-latest-small it fell below the floor 0.5, where the model hands nearly
    all activity to a handful of users. This fits what the model does with the alpha instead:
    its rates are clipped at one action a round and a short run adds its own unevenness."""
    from simworld.fidelity.metrics import gini

    target = gini(np.asarray(counts, dtype=np.float64))
    if len(quantiles) < 2:
        raise SimworldError("too few users to fit the activity model")
    spread = [np.mean([gini(row) for row in activity_counts(quantiles, a, probability, rounds)]) for a in ALPHA_GRID]
    return float(ALPHA_GRID[int(np.argmin(np.abs(np.asarray(spread) - target)))])


# (discovery_rate, discovery_films): 0 to 8 films found per active round
DISCOVERY_GRID = ((0.0, 3), (0.2, 3), (0.4, 3), (0.6, 3), (0.8, 3), (1.0, 3), (1.0, 4), (1.0, 5), (1.0, 6), (1.0, 8))


@dataclass(frozen=True)
class DiscoveryFit:
    discovery_rate: float
    discovery_films: int
    target: float  # top-20% share of the users' training ratings, at the chosen run's number of watches
    # (rate, films) -> (simulated share, training share at that many watches)
    shares: dict[tuple[float, int], tuple[float, float]]


def subsampled_top_share(rows: np.ndarray, size: int, n_items: int, seed: int = 0, draws: int = 10) -> float:
    """Mean top-20% share of `size` ratings drawn without replacement from `rows` (catalogue rows)."""
    from simworld.fidelity.metrics import top_share

    rng = np.random.default_rng(seed)
    size = min(int(size), len(rows))
    if size <= 0:
        return math.nan
    return float(np.mean([top_share(np.bincount(rng.choice(rows, size, replace=False), minlength=n_items))
                          for _ in range(draws)]))


def fit_discovery_rate(scenario: Scenario, grid: tuple[tuple[float, int], ...] = DISCOVERY_GRID,
                       rounds: int | None = None) -> DiscoveryFit:
    """The grid's (discovery rate, films) whose run of `scenario` spreads watches over films most like the
    same users' training ratings do (top-20% share at equal numbers of watches). Reads only the
    training part: the run's users are built from it, and the target is taken from it."""
    import tempfile

    import polars as pl

    from simworld import runner
    from simworld.fidelity import metrics as fm
    from simworld.fidelity.evaluate import Trials
    from simworld.recorder import read_events

    trials = Trials(scenario, trials_per_user=1, ratings_per_user=1)
    users = sorted(set(trials.source.values()))
    train = trials.ground.train.filter(pl.col("user_id").is_in(users) &
                                       pl.col("item_id").is_in(trials.catalog.ids.tolist()))
    real_rows = trials.catalog.rows(train["item_id"].to_list())
    n_items = len(trials.catalog)
    shares: dict[tuple[float, int], tuple[float, float]] = {}
    rounds = scenario.rounds if rounds is None else rounds
    with tempfile.TemporaryDirectory() as tmp:
        for rate, films in grid:
            run = scenario.with_settings({"policy.rule.discovery_rate": float(rate),
                                          "policy.rule.discovery_films": int(films), "rounds": rounds})
            sim = runner.start(run, out_dir=Path(tmp), run_id=f"discovery-{rate:g}-{films}")
            try:
                sim.run()
            finally:
                sim.close()
            items = read_events(sim.run_dir).filter(pl.col("action") == "watch")["item_id"].to_list()
            sim_share = fm.top_share(np.bincount(trials.catalog.rows(items), minlength=n_items)) if items else math.nan
            shares[(float(rate), int(films))] = (sim_share, subsampled_top_share(real_rows, len(items), n_items,
                                                                                 scenario.seed))
    gaps = {key: abs(sim - real) for key, (sim, real) in shares.items() if not math.isnan(sim - real)}
    if not gaps:
        raise SimworldError("the calibration runs watched nothing: raise population.size or rounds")
    best = min(gaps, key=lambda key: (gaps[key], key[0] * key[1]))  # ties: the fewer films found
    return DiscoveryFit(best[0], best[1], shares[best][1], shares)


@dataclass
class Calibration:
    choice: ChoiceFit
    pareto_alpha: float
    scenario_path: Path
    discovery: DiscoveryFit | None = None
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)


def validation_pages(scenario: Scenario, negatives: int = 3, per_user: int = 3) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Utilities and watched flags of validation pages cut from the training part only."""
    import polars as pl

    from simworld.agents.rule_policy import RulePolicy
    from simworld.evaluation import split_ratings
    from simworld.fidelity.evaluate import Trials
    from simworld.taste import TasteModel

    trials = Trials(scenario, trials_per_user=1, ratings_per_user=1)  # the grounded population, as a run builds it
    train = trials.ground.train
    inner, valid = split_ratings(train, scenario.population.holdout, "temporal")
    taste = TasteModel(inner, trials.catalog)
    crowd = inner.group_by("item_id").agg(pl.col("rating").mean())
    crowd_mean = dict(crowd.iter_rows())
    rule = RulePolicy(scenario.policy.rule)
    rng = np.random.default_rng(scenario.seed)
    ids = trials.catalog.ids
    rated = dict(trials.ground.ratings.group_by("user_id").agg("item_id").iter_rows())
    history = {u: dict(zip(i, r)) for u, i, r in inner.sort("user_id", "timestamp")
               .group_by("user_id", maintain_order=True).agg("item_id", "rating").iter_rows()}
    pages, chosen = [], []
    from simworld.agents.observation import Observation

    for agent, user in sorted(trials.source.items()):
        if user not in history:
            continue
        liked = valid.filter((pl.col("user_id") == user) & (pl.col("rating") >= 4))["item_id"].to_list()
        never = ids[~np.isin(ids, rated.get(user, []))]
        persona = trials.personas[agent]
        view = taste.view(history[user])
        for pos in liked[:per_user]:
            page_ids = [pos, *rng.choice(never, size=negatives, replace=False).tolist()]
            page = tuple(trials.catalog.get(int(i)) for i in page_ids)
            obs = Observation(agent_id=agent, round=0, persona=persona, taste=persona.taste_vector(trials.catalog.genres),
                              pages=(page,), watched=frozenset(history[user]), catalog=trials.catalog,
                              item_mean_rating=crowd_mean.get, search=trials.catalog.search, rng=rng, user_taste=view)
            pages.append(np.array([rule.utility(obs, item) for item in page]))
            chosen.append(np.array([True] + [False] * negatives))
    return pages, chosen


def _fidelity_figures(scenario: Scenario, users: int | None) -> dict[str, Any]:
    from simworld.fidelity import run_fidelity

    result = run_fidelity(scenario, ["rule"], users=users, rounds=0)
    rule = {r["m"]: r for r in result.alignment if r["policy"] == "rule"}
    rmse = {r["predictor"]: r["rmse"] for r in result.ratings}
    return {f"accuracy@1:{m}": rule[m]["accuracy"] for m in sorted(rule)} | \
        {f"f1@1:{m}": rule[m]["f1"] for m in sorted(rule)} | {"rmse": rmse["rule"]}


def calibrate(path: Path, out: Path | None = None, users: int | None = None, compare: bool = True,
              objective: Objective = "accuracy", discovery: bool = True) -> Calibration:
    """Fit, write the calibrated scenario (beside the input unless `out`), and score both.
    `discovery`: also fit the discovery channel's rate (a run of the scenario per grid value)."""
    path = Path(path)
    scenario = load_scenario(path)
    if scenario.population.source != "movielens" or scenario.population.holdout <= 0:
        raise SimworldError("calibrate needs a MovieLens-grounded population with held-out ratings "
                            "(population.source: movielens, population.holdout > 0)")
    if users is not None:
        scenario = scenario.with_settings({"population.size": users})
    pages, chosen = validation_pages(scenario)
    rule = scenario.policy.rule
    choice = fit_choice(pages, chosen, (rule.watch_threshold, rule.watch_slope, max(rule.page_contrast, 1.0)), objective)
    from simworld.build import grounding
    from simworld.fidelity.evaluate import Trials

    trials = Trials(scenario, trials_per_user=1, ratings_per_user=1)  # the population a run of it builds
    per_user = dict(grounding(scenario).train.group_by("user_id").len().iter_rows())
    agents = sorted(trials.personas)
    counts = np.array([per_user.get(trials.source[a], 0) for a in agents], dtype=np.float64)
    quantiles = np.array([trials.personas[a].activity for a in agents])
    alpha = fit_activity_alpha(quantiles, counts, scenario.activity.probability, scenario.rounds)
    found = None
    if discovery:  # with the fitted choice and activity constants
        found = fit_discovery_rate(scenario.with_settings({
            "policy.rule.watch_threshold": choice.watch_threshold, "policy.rule.watch_slope": choice.watch_slope,
            "policy.rule.page_contrast": choice.page_contrast, "activity.pareto_alpha": alpha}))
    data = read_scenario_file(path)
    data.pop("base_dir", None)
    data["name"] = f"{scenario.name}-calibrated"
    policy = data.setdefault("policy", {})
    if isinstance(policy, str):
        policy = data["policy"] = {"kind": policy}
    policy.setdefault("rule", {}).update(watch_threshold=choice.watch_threshold, watch_slope=choice.watch_slope,
                                         page_contrast=choice.page_contrast)
    if found is not None:
        policy["rule"].update(discovery_rate=found.discovery_rate, discovery_films=found.discovery_films)
    data.setdefault("activity", {}).update(pareto_alpha=alpha)
    out = Path(out) if out is not None else path.with_name(f"{path.stem}-calibrated.yaml")
    if out.resolve().parent != path.resolve().parent:  # relative data paths start at the scenario's folder
        resolved = scenario.resolved()
        for section in ("catalog", "population"):
            if isinstance(data.get(section), dict) and data[section].get("path"):
                data[section]["path"] = getattr(resolved, section).path
    fitted_by = "maximum\n# likelihood" if objective == "likelihood" else "the expected\n# balanced accuracy of their choices"
    header = (f"# Written by `simworld calibrate {path.name}`: the choice model's constants fitted by {fitted_by} "
              f"on {choice.pages} validation pages cut from the training part (log-likelihood "
              f"{choice.log_likelihood:.1f}),\n# the activity model's Pareto tail so that {scenario.rounds} rounds spread "
              f"activity as unequally as {len(counts)} users' training rating counts.\n")
    if found is not None:
        sim_share = found.shares[(found.discovery_rate, found.discovery_films)][0]
        header += (f"# discovery_rate, discovery_films: of {len(found.shares)} settings (0 to "
                   f"{max(r * f for r, f in found.shares):g} films found a round), the one whose run puts the share of "
                   f"watches on the top 20% of films ({sim_share:.3f}) nearest\n# the training ratings' at as many "
                   f"ratings ({found.target:.3f}).\n")
    out.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    result = Calibration(choice, alpha, out, found)
    if compare:
        result.before = _fidelity_figures(scenario, users)
        result.after = _fidelity_figures(load_scenario(out) if users is None else
                                         load_scenario(out).with_settings({"population.size": users}), users)
    return result
