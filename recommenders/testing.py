"""The recommender contract as a reusable pytest base class, for built-ins and plug-ins alike.

A plug-in author subclasses `RecommenderContract` in a test module and says how to build
the algorithm; every test method then runs against it::

    from simworld.recommenders.testing import RecommenderContract

    class TestMyRecommender(RecommenderContract):
        def make(self, context):
            return MyRecommender(MyRecommender.Config(), context)

`make_context` may be overridden too (for example to give an LLM re-ranker a fake model).
The fixtures are small hand-made frames: a 24-film catalog whose last four films nobody has
seen (cold items), six users with histories, and user ids the recommender never saw (cold
users). Nothing here needs data files, a network or a model.
"""

from __future__ import annotations

import pickle
from typing import Any

import polars as pl

from simworld.catalog import GENRES, Catalog, Item
from simworld.embedding import HashingEmbedder
from simworld.recommenders.base import INTERACTION_SCHEMA, Recommender, RecommenderContext, empty_interactions

N_ITEMS = 24
COLD_ITEMS = (121, 122, 123, 124)  # in the catalog, in no interaction
COLD_USERS = (900, 901)
UNKNOWN_ITEM = 99_999  # not in the catalog


def contract_catalog() -> Catalog:
    """24 films with ids 101..124, two or three genres each and a one-line description."""
    words = ["space", "love", "heist", "ghost", "war", "school", "robot", "ocean"]
    items = []
    for n in range(N_ITEMS):
        genres = (GENRES[n % len(GENRES)], GENRES[(3 * n + 5) % len(GENRES)])
        genres = tuple(dict.fromkeys(genres))
        desc = f"A story about {words[n % len(words)]} and {words[(n * 5 + 3) % len(words)]}."
        items.append(Item(101 + n, f"Film {n + 1}", 1980 + n, genres, desc))
    return Catalog(tuple(items), name="contract")


def contract_interactions() -> pl.DataFrame:
    """Six users (1..6), rounds 0 and 1, ratings 1..5 with a few unrated rows; no cold items."""
    rows = []
    for user in range(1, 7):
        for j in range(5 + user % 3):
            item = 101 + (user * 3 + j * (user + 1)) % (N_ITEMS - len(COLD_ITEMS))
            rating = None if (user + j) % 4 == 0 else float(1 + (user + 2 * j) % 5)
            rows.append((user, item, rating, j % 2))
    return pl.DataFrame(rows, schema=INTERACTION_SCHEMA, orient="row")


class RecommenderContract:
    """Tests every recommender must pass. Subclasses implement `make(context)`."""

    seed: int = 7

    # -- hooks ------------------------------------------------------------------------------
    def make(self, context: RecommenderContext) -> Recommender:  # pragma: no cover - abstract
        raise NotImplementedError("subclasses of RecommenderContract implement make(context)")

    def make_context(self, seed: int | None = None) -> RecommenderContext:
        return RecommenderContext(catalog=contract_catalog(), seed=self.seed if seed is None else seed,
                                  embedder=HashingEmbedder(dim=64), llm=None)

    # -- helpers ----------------------------------------------------------------------------
    def fitted(self, interactions: pl.DataFrame | None = None, seed: int | None = None) -> Recommender:
        rec = self.make(self.make_context(seed))
        rec.fit(contract_interactions() if interactions is None else interactions)
        return rec

    @staticmethod
    def seen_by(interactions: pl.DataFrame) -> dict[int, set[int]]:
        out: dict[int, set[int]] = {}
        for user, item in interactions.select("user_id", "item_id").iter_rows():
            out.setdefault(user, set()).add(item)
        return out

    def check_lists(self, lists: Any, n_users: int, k: int, catalog: Catalog) -> None:
        assert isinstance(lists, list) and len(lists) == n_users
        for items in lists:
            assert isinstance(items, list) and len(items) <= k
            assert all(isinstance(i, int) and i in catalog for i in items), items
            assert len(set(items)) == len(items), f"duplicates in {items}"

    # -- the contract -----------------------------------------------------------------------
    def test_satisfies_protocol(self):
        assert isinstance(self.make(self.make_context()), Recommender)

    def test_empty_history(self):
        rec = self.fitted(empty_interactions())
        lists = rec.recommend([1, 2, 3], k=5)
        self.check_lists(lists, 3, 5, contract_catalog())
        assert all(len(items) == 5 for items in lists)
        rec.update(empty_interactions())
        assert all(len(items) == 5 for items in rec.recommend([1], k=5))

    def test_cold_users(self):
        rec = self.fitted()
        lists = rec.recommend(list(COLD_USERS), k=6)
        self.check_lists(lists, len(COLD_USERS), 6, contract_catalog())
        assert all(len(items) == 6 for items in lists)

    def test_cold_items_can_be_recommended(self):
        rec = self.fitted()
        everything = rec.recommend([COLD_USERS[0]], k=N_ITEMS, exclude_seen=False)[0]
        assert sorted(everything) == sorted(contract_catalog().ids.tolist())
        assert set(COLD_ITEMS) <= set(everything)

    def test_excludes_seen_items(self):
        data = contract_interactions()
        rec = self.fitted(data)
        seen = self.seen_by(data)
        users = sorted(seen)
        for user, items in zip(users, rec.recommend(users, k=N_ITEMS)):
            assert not set(items) & seen[user], f"user {user} was shown seen items"
            assert len(items) == N_ITEMS - len(seen[user])

    def test_exclude_seen_false_returns_k(self):
        data = contract_interactions()
        rec = self.fitted(data)
        users = sorted(self.seen_by(data))
        lists = rec.recommend(users, k=10, exclude_seen=False)
        self.check_lists(lists, len(users), 10, contract_catalog())
        assert all(len(items) == 10 for items in lists)
        full = rec.recommend(users, k=N_ITEMS, exclude_seen=False)
        assert all(len(items) == N_ITEMS for items in full)

    def test_update_adds_seen_items(self):
        rec = self.fitted()
        first = rec.recommend([COLD_USERS[0]], k=3)[0]
        new = pl.DataFrame({"user_id": [COLD_USERS[0]] * len(first), "item_id": first,
                            "rating": [5.0] * len(first), "round": [2] * len(first)})
        rec.update(new)
        after = rec.recommend([COLD_USERS[0]], k=N_ITEMS)[0]
        assert not set(first) & set(after)
        assert len(after) == N_ITEMS - len(first)

    def test_deterministic_under_seed(self):
        users = [1, 2, 3, 4, 5, 6, *COLD_USERS]
        a, b = self.fitted(), self.fitted()
        assert a.recommend(users, k=8) == b.recommend(users, k=8)
        extra = pl.DataFrame({"user_id": [1, 900], "item_id": [110, 111], "rating": [4.0, None],
                              "round": [2, 2]})
        a.update(extra)
        b.update(extra)
        assert a.recommend(users, k=8) == b.recommend(users, k=8)

    def test_batched_equals_one_by_one(self):
        rec = self.fitted()
        users = [3, 1, 900, 6, 2, 901, 5, 4]
        batched = rec.recommend(users, k=7)
        single = [rec.recommend([u], k=7)[0] for u in users]
        assert batched == single
        assert rec.recommend([2, 2], k=7) == [batched[4], batched[4]]

    def test_pickle_round_trip(self):
        rec = self.fitted()
        users = [1, 2, 3, 900]
        before = rec.recommend(users, k=8)
        copy = pickle.loads(pickle.dumps(rec))
        assert copy.recommend(users, k=8) == before
        extra = pl.DataFrame({"user_id": [2], "item_id": [105], "rating": [3.0], "round": [2]})
        rec.update(extra)
        copy.update(extra)
        assert copy.recommend(users, k=8) == rec.recommend(users, k=8)

    def test_k_larger_than_catalog(self):
        rec = self.fitted()
        lists = rec.recommend([1, 900], k=10 * N_ITEMS)
        self.check_lists(lists, 2, 10 * N_ITEMS, contract_catalog())
        seen = self.seen_by(contract_interactions())
        assert len(lists[0]) == N_ITEMS - len(seen[1])
        assert len(lists[1]) == N_ITEMS

    def test_k_zero_and_no_users(self):
        rec = self.fitted()
        assert rec.recommend([], k=5) == []
        assert rec.recommend([1, 2], k=0) == [[], []]

    def test_unknown_items_are_ignored(self):
        data = contract_interactions()
        noisy = pl.concat([data, pl.DataFrame(
            {"user_id": [1, 2, 950], "item_id": [UNKNOWN_ITEM, UNKNOWN_ITEM + 1, UNKNOWN_ITEM],
             "rating": [5.0, 1.0, 4.0], "round": [1, 1, 1]}, schema=INTERACTION_SCHEMA)])
        clean_rec, noisy_rec = self.fitted(data), self.fitted(noisy)
        users = [1, 2, 3, 950, 900]
        lists = noisy_rec.recommend(users, k=N_ITEMS)
        self.check_lists(lists, len(users), N_ITEMS, contract_catalog())
        assert lists == clean_rec.recommend(users, k=N_ITEMS)
        noisy_rec.update(pl.DataFrame({"user_id": [3], "item_id": [UNKNOWN_ITEM], "rating": [2.0],
                                       "round": [2]}))
        self.check_lists(noisy_rec.recommend(users, k=5), len(users), 5, contract_catalog())


class ReverseRankingLLM:
    """A deterministic stand-in `LanguageModel` for re-rankers: it ranks the candidates that
    the prompt lists as `id: ...` lines in reverse order. Picklable; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request):
        import json
        import re

        from simworld.llm import LLMResponse

        self.calls += 1
        text = request.messages[-1]["content"]
        ids = [int(m) for m in re.findall(r"^(\d+): ", text, flags=re.MULTILINE)]
        answer = {"ranking": ids[::-1]}
        parsed = request.response_model.model_validate(answer) if request.response_model else None
        return LLMResponse(text=json.dumps(answer), parsed=parsed)
