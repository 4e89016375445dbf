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
"""

from __future__ import annotations

import math

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


class RulePolicy:
    name = "rule"

    def __init__(self, spec: RulePolicySpec | None = None):
        self.spec = spec or RulePolicySpec()

    async def decide(self, obs: Observation) -> Action:
        return self.decide_now(obs)

    # The model is cheap and synchronous; `decide` wraps it for the concurrent decide stage.
    def decide_now(self, obs: Observation) -> Action:
        spec, rng, persona = self.spec, obs.rng, obs.persona
        roll = rng.random()
        if roll < spec.idle_rate:
            return IdleAction(meta=DecisionMeta(policy="rule"))
        lookup = self.heard_title(obs)
        if lookup is not None and rng.random() >= float(obs.extra.get("lookup", 0.0)):
            lookup = None
        if lookup is not None or roll < spec.idle_rate + spec.search_rate * 2 * persona.curiosity or not obs.pages:
            query = lookup or self.search_query(obs)
            results = tuple(obs.search(query, max(len(obs.pages[0]) if obs.pages else 10, 1)))
            items = tuple(obs.catalog.get(i) for i in results)
            decision = self.judge_page(obs, items, pages_seen=0, allow_next=False)
            return SearchAction(query=query, results=results, decision=decision, meta=DecisionMeta(policy="rule"))
        pages = []
        for index, page in enumerate(obs.pages):
            decision = self.judge_page(obs, page, pages_seen=index, allow_next=index + 1 < len(obs.pages))
            pages.append((tuple(item.item_id for item in page), decision))
            if decision.then == "leave":
                break
        return BrowseAction(pages=tuple(pages), meta=DecisionMeta(policy="rule"))

    # -- the choice model -------------------------------------------------------------------
    def utility(self, obs: Observation, item: Item) -> float:
        genres = obs.catalog.genre_matrix[obs.catalog.row(item.item_id)]
        match = float(obs.taste @ genres)
        if obs.user_taste is not None:  # a MovieLens-grounded user: what people with their history liked
            w = self.spec.affinity_weight
            match = w * obs.user_taste.affinity(item.item_id) + (1.0 - w) * match
        crowd = obs.item_mean_rating(item.item_id)
        social = obs.persona.conformity * 0.25 * ((crowd - 3.0) / 2.0) if crowd is not None else 0.0
        novelty = obs.persona.diversity * 0.15 * (1.0 - match)
        return match + social + novelty

    def watch_probability(self, obs: Observation, item: Item, pages_seen: int) -> float:
        return sigmoid(self.watch_log_odds(obs, item, pages_seen))

    def watch_log_odds(self, obs: Observation, item: Item, pages_seen: int) -> float:
        s = self.spec
        repeat = item.item_id in obs.watched
        x = s.watch_slope * (self.utility(obs, item) - s.watch_threshold) - s.page_fatigue * pages_seen
        heard = obs.extra.get("heard")
        if heard:
            x += heard.get(item.item_id, 0.0)  # a friend's word
        return x - s.repeat_penalty * repeat

    def expected_rating(self, obs: Observation, item: Item) -> float:
        """The rating before noise and rounding (what `simworld eval fidelity` scores by RMSE);
        a grounded user's is the taste model's prediction, which holds their own bias."""
        if obs.user_taste is not None:
            return obs.user_taste.predict(item.item_id)
        s = self.spec
        return 0.5 + 4.5 * sigmoid(s.rating_slope * (self.utility(obs, item) - s.rating_center)) + obs.persona.rating_bias

    def rating(self, obs: Observation, item: Item) -> float:
        s, persona = self.spec, obs.persona
        if obs.user_taste is not None:
            raw = obs.user_taste.predict(item.item_id) + obs.rng.normal(0.0, persona.rating_noise)
            return float(np.clip(round(raw * 2) / 2, 0.5, 5.0))
        u = self.utility(obs, item)
        raw = 0.5 + 4.5 * sigmoid(s.rating_slope * (u - s.rating_center))
        raw += persona.rating_bias + obs.rng.normal(0.0, persona.rating_noise)
        return float(np.clip(round(raw * 2) / 2, 0.5, 5.0))

    def judge_page(self, obs: Observation, page: tuple[Item, ...], pages_seen: int, allow_next: bool) -> PageDecision:
        s, rng = self.spec, obs.rng
        watches: list[Watch] = []
        best = 0.0
        top = max((self.utility(obs, item) for item in page), default=0.0) if s.page_contrast else 0.0
        for item in page:
            best = max(best, self.utility(obs, item))
            if s.page_contrast:  # films are compared with the page's best, not only judged alone
                x = self.watch_log_odds(obs, item, pages_seen) - s.page_contrast * (top - self.utility(obs, item))
                p = sigmoid(x)
            else:
                p = self.watch_probability(obs, item, pages_seen)
            if len(watches) < s.max_watches_per_page and rng.random() < p:
                rating = self.rating(obs, item)
                watches.append(Watch(item_id=item.item_id, rating=rating, feeling=self.feeling(obs, item, rating)))
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
