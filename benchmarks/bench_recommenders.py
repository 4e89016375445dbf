"""Recommender latency: fit, one round's update, and `recommend` for 1,000 users (k=30).

    python benchmarks/bench_recommenders.py [--movielens DIR] [--users 1000] [--k 30]
                                            [--max-items 2000] [--embedder hashing|minilm]

The catalog is the `max-items` most-rated MovieLens movies; the 1,000 users get realistic
histories by taking over the ratings of MovieLens users (user u plays MovieLens user
u mod 610 + 1, restricted to the catalog). Each algorithm is fitted on that history, then
updated with one round of feedback (one new interaction per user), then asked for k items
for all users in one batch (median of `--repeats` calls). `llm_rerank` runs with a stub LLM
that answers instantly, so its row is the re-ranker's own overhead (prompting, parsing,
one call per user), not a model's latency. Default MovieLens folder: ../shared/data beside
the repository.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import polars as pl
from figures import add_json_option, write_figures
from simworld.recommenders.base import RecommenderContext
from simworld.recommenders.llm_rerank import LLMRerankConfig, LLMRerankRecommender
from simworld.recommenders.testing import ReverseRankingLLM

from simworld.embedding import HashingEmbedder, make_embedder
from simworld.evaluation import default_algorithms
from simworld.movielens import load_movielens_catalog, load_movielens_ratings

REPO = Path(__file__).resolve().parents[1]  # the package must be installed (pip install -e .)

ALGORITHMS = {
    **default_algorithms(),
    "llm_rerank (stub LLM)": (LLMRerankRecommender, LLMRerankConfig(base="popularity", candidates=30)),
}


def histories(ratings: pl.DataFrame, catalog_ids: list[int], users: int) -> pl.DataFrame:
    ratings = ratings.filter(pl.col("item_id").is_in(catalog_ids))
    real = sorted(ratings["user_id"].unique().to_list())
    mapping = pl.DataFrame({"user_id": [real[u % len(real)] for u in range(users)],
                            "sim_user": list(range(users))})
    return (mapping.join(ratings, on="user_id", how="inner")
            .select(pl.col("sim_user").alias("user_id"), "item_id", "rating",
                    pl.lit(0, dtype=pl.Int64).alias("round"))
            .sort(["user_id", "item_id"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens", type=Path,
                        default=REPO.parent / "shared" / "data" / "movielens" / "ml-latest-small")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--max-items", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--embedder", choices=["hashing", "minilm"], default="hashing")
    parser.add_argument("--only", nargs="*", help="algorithm names to run (default: all)")
    add_json_option(parser)
    args = parser.parse_args()

    catalog = load_movielens_catalog(args.movielens, max_items=args.max_items)
    history = histories(load_movielens_ratings(args.movielens), catalog.ids.tolist(), args.users)
    users = list(range(args.users))
    embedder = HashingEmbedder() if args.embedder == "hashing" else make_embedder("minilm")
    context = RecommenderContext(catalog=catalog, seed=0, embedder=embedder, llm=ReverseRankingLLM())
    print(f"catalog {len(catalog)} items, {args.users} users, {history.height} history interactions "
          f"({history.height / args.users:.0f} per user), k={args.k}, embedder={args.embedder}")

    rows = []
    for name, (cls, config) in ALGORITHMS.items():
        if args.only and name.split(" ")[0] not in args.only and name not in args.only:
            continue
        rec = cls(config if config is not None else cls.Config(), context)
        t0 = time.perf_counter()
        rec.fit(history)
        t1 = time.perf_counter()
        # one round of feedback: each user watches the first item of their page
        page = rec.recommend(users, args.k)
        new = pl.DataFrame({"user_id": users, "item_id": [p[0] for p in page],
                            "rating": [4.0] * len(users), "round": [1] * len(users)})
        t2 = time.perf_counter()
        rec.update(new)
        t3 = time.perf_counter()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            lists = rec.recommend(users, args.k)
            times.append(time.perf_counter() - start)
        assert all(len(items) == args.k for items in lists)
        median = statistics.median(times)
        rows.append((name, t1 - t0, t3 - t2, median, 1000 * median / len(users)))
        print(f"  {name}: fit {t1 - t0:.2f} s, update {t3 - t2:.2f} s, recommend {median:.2f} s", flush=True)

    print(f"\n| algorithm | fit (s) | update (s) | recommend {args.users} users (s) | per user (ms) |")
    print("|---|---:|---:|---:|---:|")
    for name, fit, update, rec_s, per_user in rows:
        print(f"| {name} | {fit:.2f} | {update:.2f} | {rec_s:.2f} | {per_user:.2f} |")
    write_figures(args.json, {"users": args.users, "k": args.k,
                              **{f"{name} recommend_s": rec_s for name, _, _, rec_s, _ in rows},
                              **{f"{name} update_s": update for name, _, update, _, _ in rows}})


if __name__ == "__main__":
    main()
