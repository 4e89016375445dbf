"""RulePolicy: a calibrated choice model, no LLM.

For each item on a page the user weighs a utility
    u = taste . genres(item)                      (cosine, 0..1)
      + conformity * 0.25 * (crowd mean - 3) / 2  (social proof, once others have rated it)
      + diversity-weighted novelty bonus for genres outside their top tastes
and watches with probability sigmoid(slope * (u - threshold) - fatigue * pages_seen
- repeat_penalty * already_watched). Ratings come from the same utility on a logistic curve
plus the persona's bias and noise, rounded to half stars like MovieLens. With the defaults a
synthetic population rates with mean about 3.5 and spread about 1 (MovieLens' 3.5 and 1.04;
see tests/test_rule_policy.py). Everything random is drawn from the observation's rng.

MovieLens-grounded users (`obs.user_taste`, simworld/taste.py): the taste match is the
collaborative affinity of the film to the user's own history (`affinity_weight` of it; the
rest stays genres), ratings come from the taste model's predicted rating plus the persona's
noise, and with `page_contrast` > 0 a film loses log-odds for every unit of utility below the
page's best, so a user mostly watches the film they like most on a page.

Word of mouth (the social layer, simworld/social): `obs.extra["heard"]` maps films the user
heard about from friends to log-odds added to watching them, and `obs.extra["lookup"]` is the
chance of looking the best of them up in the search box instead of browsing. Without them
the model draws exactly what it drew before.

Discovery (`discovery_rate` > 0): people also find films outside the platform (friends, TV,
cinemas). In an active round that is not idle, with that chance, the user weighs
`discovery_films` films drawn from the whole catalogue in proportion to their taste match
(the collaborative affinity for grounded users, the genre match for synthetic ones), never one
they watched or one on this round's pages, and judges each as a page of its own (same utility,
same watch rule, no fatigue; found on separate occasions, they are not compared side by side). Its draws come after the page plan's and its
judgement after the pages', all from the agent's rng; at 0 nothing is drawn, so runs without
it draw exactly what they drew before. The action carries them as `discovered`, and the event
log as a `discover` row (the films weighed) with watches of source `outside`. The platform's
recommenders alone put almost every watch on the most popular films (on ml-latest-small, 96%
of watches on the top 20% of films against 51% in the data): this is the long tail's way in.

Speed: `decide_batch` decides for many observations at once. The utilities and watch
log-odds of every film on every page are computed in one numpy pass (the taste match summed
genre by genre in a fixed order, so a film's numbers do not depend on what else is scored
with it); each agent then draws from its own rng exactly as `decide` does, so both give the
same actions (tests/test_rule_policy.py holds them together).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from simworld.agents.actions import (
    Action, BrowseAction, DecisionMeta, IdleAction, PageDecision, SearchAction, Watch,
)
from simworld.agents.observation import Observation
from simworld.catalog import Item
from simworld.config import RulePolicySpec

FEELINGS = {
    "high": ("Loved it: {genre} at its best.", "One of the best things I've watched in a while.",
             "Completely gripped from start to finish.", "Exactly my kind of {genre}.",
             "I'd happily watch it again."),
    "mid": ("Decent enough, a pleasant evening.", "Some good moments, some slow ones.",
            "Fine {genre}, nothing I'll remember long.", "Better than I expected, not great though.",
            "Watchable, if a bit predictable."),
    "low": ("Not for me, I drifted off.", "Disappointing; I expected more from a {genre}.",
            "Too slow and too long.", "I didn't connect with any of it.",
            "Regret spending the evening on this."),
}
QUERIES = ("{genre} movies", "best {genre} films", "{genre} {genre2}", "classic {genre}",
           "{genre} from the {decade}s")


def sigmoid(x: float) -> float:
    """The logistic function for any float. Below -700, exp(-x) would overflow (a `repeat_penalty`
    of 1000), and there sigmoid(x) equals exp(x) to double precision."""
    return 1.0 / (1.0 + math.exp(-x)) if x > -700.0 else math.exp(x)


@dataclass(frozen=True)
class _Plan:
    """What an agent that does not idle looks at: the recommended pages, or one page of search
    results (with its query)."""

    pages: tuple[tuple[Item, ...], ...]
    query: str | None = None
    results: tuple[int, ...] = ()
    found: tuple[Item, ...] = ()  # films found outside the platform (discovery), judged after the pages

    def jobs(self, obs: Observation) -> list[_PageJob]:
        """The pages to score, in judging order: the planned pages, then the films found outside."""
        found = [(obs, (item,), 0) for item in self.found]  # each alone: found on its own occasion
        return [(obs, page, index) for index, page in enumerate(self.pages)] + found


# (observation, page, pages seen before it): one page to score
_PageJob = tuple[Observation, tuple[Item, ...], int]


class RulePolicy:
    name = "rule"

    def __init__(self, spec: RulePolicySpec | None = None):
        self.spec = spec or RulePolicySpec()

    async def decide(self, obs: Observation) -> Action:
        return self.decide_now(obs)

    # The model is cheap and synchronous; `decide` wraps it for the concurrent decide stage.
    def decide_now(self, obs: Observation) -> Action:
        plan = self._plan(obs)
        if plan is None:
            return IdleAction(meta=DecisionMeta(policy="rule"))
        jobs = plan.jobs(obs)
        u, x = self._score(jobs)
        return self._act(obs, plan, _split(u, x, [len(page) for _, page, _ in jobs]))

    def decide_batch(self, observations: Sequence[Observation]) -> list[Action]:
        """The actions `decide_now` gives for each observation, in order, scored in one pass."""
        plans = [self._plan(obs) for obs in observations]
        per_plan = [plan.jobs(obs) if plan is not None else [] for obs, plan in zip(observations, plans)]
        jobs = [job for plan_jobs in per_plan for job in plan_jobs]
        u, x = self._score(jobs)
        scored = iter(_split(u, x, [len(page) for _, page, _ in jobs]))
        actions: list[Action] = []
        for obs, plan, plan_jobs in zip(observations, plans, per_plan):
            if plan is None:
                actions.append(IdleAction(meta=DecisionMeta(policy="rule")))
            else:
                actions.append(self._act(obs, plan, [next(scored) for _ in plan_jobs]))
        return actions

    def _plan(self, obs: Observation) -> _Plan | None:
        """Idle, search or browse, and any films found outside the platform (the draws before any
        page is judged); None: idle."""
        plan = self._plan_platform(obs)
        if plan is None or not self.spec.discovery_rate or obs.rng.random() >= self.spec.discovery_rate:
            return plan
        return replace(plan, found=self.discover(obs, {item.item_id for page in plan.pages for item in page}))

    def _plan_platform(self, obs: Observation) -> _Plan | None:
        spec, rng, persona = self.spec, obs.rng, obs.persona
        roll = rng.random()
        if roll < spec.idle_rate:
            return None
        lookup = self.heard_title(obs)
        if lookup is not None and rng.random() >= float(obs.extra.get("lookup", 0.0)):
            lookup = None
        if lookup is not None or roll < spec.idle_rate + spec.search_rate * 2 * persona.curiosity or not obs.pages:
            query = lookup or self.search_query(obs)
            results = tuple(obs.search(query, max(len(obs.pages[0]) if obs.pages else 10, 1)))
            return _Plan(pages=(tuple(obs.catalog.get(i) for i in results),), query=query, results=results)
        return _Plan(pages=obs.pages)

    def _act(self, obs: Observation, plan: _Plan, scored: list[tuple[np.ndarray, np.ndarray]]) -> Action:
        """Judge the planned pages in order with their scores (the page draws)."""
        discovered = None
        if plan.query is not None:
            decision = self._judge(obs, plan.pages[0], *scored[0], pages_seen=0, allow_next=False)
            if plan.found:
                discovered = self._judge_found(obs, plan.found, scored[1:])
            return SearchAction(query=plan.query, results=plan.results, decision=decision,
                                meta=DecisionMeta(policy="rule"), discovered=discovered)
        pages = []
        for index, page in enumerate(plan.pages):
            decision = self._judge(obs, page, *scored[index], pages_seen=index, allow_next=index + 1 < len(plan.pages))
            pages.append((tuple(item.item_id for item in page), decision))
            if decision.then == "leave":
                break
        if plan.found:
            discovered = self._judge_found(obs, plan.found, scored[len(plan.pages):])
        return BrowseAction(pages=tuple(pages), meta=DecisionMeta(policy="rule"), discovered=discovered)

    def _judge_found(self, obs: Observation, found: tuple[Item, ...],
                     scored: list[tuple[np.ndarray, np.ndarray]]) -> tuple[tuple[int, ...], PageDecision]:
        """The films found outside the platform, in the order found, each judged as a page of its
        own (a friend's tip, a TV showing, a cinema: not side by side, so no page contrast between
        them and no page's cap); their watches as one decision."""
        watches = [w for item, (u, x) in zip(found, scored)
                   for w in self._judge(obs, (item,), u, x, pages_seen=0, allow_next=False).watches]
        return tuple(item.item_id for item in found), PageDecision(watches=watches)

    # -- discovery: films found outside the platform ----------------------------------------
    def taste_weights(self, obs: Observation) -> np.ndarray:
        """The user's taste match for every film of the catalogue, in catalogue rows, at least 0:
        `_score`'s match (the collaborative affinity for a grounded user, blended with genres by
        `affinity_weight`; the genre match otherwise), computed for all films at once."""
        catalog = obs.catalog
        match = catalog.genre_matrix.astype(np.float64) @ np.asarray(obs.taste, dtype=np.float64)
        taste = obs.user_taste
        if taste is not None:
            raw = taste.raw_scores(np.arange(len(catalog)))
            if not taste.raw:  # UserTaste.affinity's mapping to 0..1, for every film
                z = (raw - taste.model.center) / taste.model.scale
                raw = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
            w = self.spec.affinity_weight
            match = w * raw + (1.0 - w) * match
        return np.clip(np.nan_to_num(match, nan=0.0), 0.0, None)

    def discover(self, obs: Observation, exclude: set[int] | frozenset[int] = frozenset()) -> tuple[Item, ...]:
        """Up to `discovery_films` films found outside the platform: drawn without replacement from
        the whole catalogue in proportion to the user's taste, never a film already watched or
        one in `exclude` (this round's pages); from the agent's rng."""
        catalog = obs.catalog
        weights = self.taste_weights(obs)
        skip = [i for i in (*obs.watched, *exclude) if i in catalog]
        if skip:
            weights[catalog.rows(skip)] = 0.0
        k = min(self.spec.discovery_films, int(np.count_nonzero(weights)))
        if k == 0:
            return ()
        rows = obs.rng.choice(len(catalog), size=k, replace=False, p=weights / weights.sum())
        return tuple(catalog.items[row] for row in rows.tolist())

    # -- the choice model -------------------------------------------------------------------
    def _score(self, jobs: Sequence[_PageJob]) -> tuple[np.ndarray, np.ndarray]:
        """Utility and watch log-odds (page contrast included) of every item of these pages,
        flat in page order. Only elementwise arithmetic, so each item's numbers are the same
        however many pages are scored together."""
        s = self.spec
        lengths = [len(page) for _, page, _ in jobs]
        n = sum(lengths)
        if n == 0:
            return np.zeros(0), np.zeros(0)
        catalog = jobs[0][0].catalog
        if any(obs.catalog is not catalog for obs, _, _ in jobs):
            raise ValueError("observations scored together must share one catalog")
        page_of = np.repeat(np.arange(len(jobs)), lengths)
        ids = [item.item_id for _, page, _ in jobs for item in page]
        rows = catalog.rows(ids)
        tastes = np.stack([np.asarray(obs.taste, dtype=np.float64) for obs, _, _ in jobs])[page_of]
        genres = catalog.genre_matrix[rows]
        match = np.zeros(n)
        for j in range(genres.shape[1]):  # taste . genres, one genre at a time (a fixed order)
            match += tastes[:, j] * genres[:, j]
        grounded = [obs.user_taste is not None for obs, _, _ in jobs]
        if any(grounded):  # MovieLens-grounded users: what people with their history liked
            w = s.affinity_weight
            affinity = np.array([obs.user_taste.affinity(item.item_id) if obs.user_taste is not None else 0.0
                                 for obs, page, _ in jobs for item in page])
            match = np.where(np.repeat(grounded, lengths), w * affinity + (1.0 - w) * match, match)
        means = jobs[0][0].item_means  # the crowd's means, one array for the round (else ask item by item)
        if means is not None and all(obs.item_means is means for obs, _, _ in jobs):
            crowd = means[rows]
        else:
            crowd = np.array([_crowd_mean(obs, item.item_id) for obs, page, _ in jobs for item in page])
        conformity = np.array([obs.persona.conformity for obs, _, _ in jobs])[page_of]
        diversity = np.array([obs.persona.diversity for obs, _, _ in jobs])[page_of]
        rated = ~np.isnan(crowd)
        social = np.where(rated, conformity * 0.25 * ((np.where(rated, crowd, 3.0) - 3.0) / 2.0), 0.0)
        novelty = diversity * 0.15 * (1.0 - match)
        u = match + social + novelty
        pages_seen = np.array([seen for _, _, seen in jobs], dtype=np.float64)[page_of]
        repeat = np.array([item.item_id in obs.watched for obs, page, _ in jobs for item in page], dtype=np.float64)
        x = s.watch_slope * (u - s.watch_threshold) - s.page_fatigue * pages_seen
        if any(obs.extra.get("heard") for obs, _, _ in jobs):  # a friend's word
            x = x + np.array([(obs.extra.get("heard") or {}).get(item.item_id, 0.0)
                              for obs, page, _ in jobs for item in page], dtype=np.float64)
        x = x - s.repeat_penalty * repeat
        if s.page_contrast:  # films are compared with the page's best, not only judged alone
            starts = np.cumsum([0, *lengths[:-1]])[np.array(lengths) > 0]
            top = np.repeat(np.maximum.reduceat(u, starts), [m for m in lengths if m])
            x = x - s.page_contrast * (top - u)
        return u, x

    def utility(self, obs: Observation, item: Item) -> float:
        """One item's utility: `_score`'s arithmetic on Python floats, operation for operation
        (the same number; tests/test_rule_policy.py checks), without numpy's per-call cost."""
        s, persona = self.spec, obs.persona
        genres = obs.catalog.genre_matrix[obs.catalog.row(item.item_id)]
        match = 0.0
        for t, g in zip(np.asarray(obs.taste, dtype=np.float64).tolist(), genres.tolist()):
            match += t * g
        if obs.user_taste is not None:  # a MovieLens-grounded user: what people with their history liked
            w = s.affinity_weight
            match = w * obs.user_taste.affinity(item.item_id) + (1.0 - w) * match
        crowd = float(obs.item_means[obs.catalog.row(item.item_id)]) if obs.item_means is not None \
            else _crowd_mean(obs, item.item_id)
        social = persona.conformity * 0.25 * ((crowd - 3.0) / 2.0) if not math.isnan(crowd) else 0.0
        novelty = persona.diversity * 0.15 * (1.0 - match)
        return match + social + novelty

    def watch_probability(self, obs: Observation, item: Item, pages_seen: int) -> float:
        return sigmoid(self.watch_log_odds(obs, item, pages_seen))

    def watch_log_odds(self, obs: Observation, item: Item, pages_seen: int) -> float:
        return float(self._score([(obs, (item,), pages_seen)])[1][0])  # alone on a page: no contrast

    def expected_rating(self, obs: Observation, item: Item) -> float:
        """The rating before noise and rounding (what `simworld eval fidelity` scores by RMSE);
        a grounded user's is the taste model's prediction, which holds their own bias."""
        if obs.user_taste is not None:
            return obs.user_taste.predict(item.item_id)
        s = self.spec
        return 0.5 + 4.5 * sigmoid(s.rating_slope * (self.utility(obs, item) - s.rating_center)) + obs.persona.rating_bias

    def rating(self, obs: Observation, item: Item) -> float:
        return self._rating(obs, item, self.utility(obs, item))

    def _rating(self, obs: Observation, item: Item, u: float) -> float:
        s, persona = self.spec, obs.persona
        if obs.user_taste is not None:
            raw = obs.user_taste.predict(item.item_id) + obs.rng.normal(0.0, persona.rating_noise)
        else:
            raw = 0.5 + 4.5 * sigmoid(s.rating_slope * (u - s.rating_center))
            raw += persona.rating_bias + obs.rng.normal(0.0, persona.rating_noise)
        return float(min(max(round(raw * 2) / 2, 0.5), 5.0))

    def judge_page(self, obs: Observation, page: tuple[Item, ...], pages_seen: int, allow_next: bool) -> PageDecision:
        u, x = self._score([(obs, page, pages_seen)])
        return self._judge(obs, page, u, x, pages_seen, allow_next)

    def _judge(self, obs: Observation, page: tuple[Item, ...], u: np.ndarray, x: np.ndarray, pages_seen: int,
               allow_next: bool) -> PageDecision:
        s, rng = self.spec, obs.rng
        watches: list[Watch] = []
        cap = s.max_watches_per_page
        for item, log_odds, utility in zip(page, x.tolist(), u.tolist()):
            if len(watches) < cap and rng.random() < sigmoid(log_odds):
                rating = self._rating(obs, item, utility)
                watches.append(Watch(item_id=item.item_id, rating=rating, feeling=self.feeling(obs, item, rating)))
        best = max(0.0, float(u.max())) if len(page) else 0.0
        # A page that offered something good (or that gave nothing to watch) invites one more look.
        go_on = s.continue_bias + 2.0 * (best - s.watch_threshold) - s.page_fatigue * pages_seen - 0.5 * len(watches)
        then = "next_page" if allow_next and rng.random() < sigmoid(go_on) else "leave"
        return PageDecision(watches=watches, then=then)

    def feeling(self, obs: Observation, item: Item, rating: float) -> str:
        band = "high" if rating >= 4 else "mid" if rating >= 2.5 else "low"
        options = FEELINGS[band]
        genre = (item.genres[0] if item.genres else "film").lower()
        return options[int(obs.rng.integers(len(options)))].format(genre=genre)

    def heard_title(self, obs: Observation) -> str | None:
        """The title of the film friends spoke best of (ties: the smaller id), if any was praised."""
        heard = obs.extra.get("heard")
        if not heard:
            return None
        item_id, uplift = min(heard.items(), key=lambda kv: (-kv[1], kv[0]))
        return obs.catalog.get(item_id).title if uplift > 0 else None

    def search_query(self, obs: Observation) -> str:
        rng = obs.rng
        weights = np.array([max(w, 0.0) for w in obs.persona.genre_taste.values()], dtype=np.float64)
        names = list(obs.persona.genre_taste)
        if weights.sum() <= 0:
            weights = np.ones(len(names))
        picks = rng.choice(len(names), size=min(2, len(names)), replace=False, p=weights / weights.sum())
        template = QUERIES[int(rng.integers(len(QUERIES)))]
        decade = int(rng.choice([1960, 1970, 1980, 1990, 2000, 2010]))
        genre2 = names[picks[-1]].lower()
        return template.format(genre=names[picks[0]].lower(), genre2=genre2, decade=decade)


def _crowd_mean(obs: Observation, item_id: int) -> float:
    mean = obs.item_mean_rating(item_id)
    return math.nan if mean is None else mean


def _split(u: np.ndarray, x: np.ndarray, lengths: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    ends = np.cumsum(lengths).tolist()
    return [(u[end - m:end], x[end - m:end]) for m, end in zip(lengths, ends)]
