"""Find a recommender by name: built-ins, then entry points, then `package.module:Class` paths."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from simworld.errors import SimworldError
from simworld.plugins import import_object
from simworld.recommenders.base import Recommender, RecommenderConfig, RecommenderContext
from simworld.recommenders.baselines import PopularityRecommender, RandomRecommender
from simworld.recommenders.content import ContentRecommender
from simworld.recommenders.knn import ItemKNNRecommender
from simworld.recommenders.llm_rerank import LLMRerankRecommender
from simworld.recommenders.mf import MFRecommender

ENTRY_POINT_GROUP = "simworld.recommenders"

REGISTRY: dict[str, type] = {
    "random": RandomRecommender,
    "popularity": PopularityRecommender,
    "itemknn": ItemKNNRecommender,
    "mf": MFRecommender,
    "content": ContentRecommender,
    "llm_rerank": LLMRerankRecommender,
}


def register(name: str, cls: type) -> None:
    REGISTRY[name] = cls


def resolve(name: str) -> type:
    """The recommender class called `name`, or a SimworldError that says why not."""
    if name in REGISTRY:
        return REGISTRY[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _check(name, ep.load())
    if ":" in name:
        return _check(name, import_object(name, "recommender"))
    known = ", ".join(sorted(REGISTRY))
    raise SimworldError(
        f"unknown recommender {name!r}: use one of {known}, an entry point in group "
        f"{ENTRY_POINT_GROUP!r}, or a dotted path 'package.module:Class'"
    )


def _check(name: str, cls: Any) -> type:
    missing = [m for m in ("fit", "update", "recommend") if not callable(getattr(cls, m, None))]
    if not isinstance(cls, type) or missing:
        raise SimworldError(
            f"recommender {name!r} does not satisfy the Recommender protocol"
            + (f" (missing {', '.join(missing)})" if missing else " (not a class)")
        )
    return cls


def config_class(cls: type) -> type[BaseModel]:
    return getattr(cls, "Config", RecommenderConfig)


def validate_params(name: str, params: dict[str, Any]) -> BaseModel:
    """Validate `params` with the algorithm's own typed config (raises ValidationError)."""
    return config_class(resolve(name)).model_validate(params)


def build_recommender(name: str, params: dict[str, Any], context: RecommenderContext) -> Recommender:
    cls = resolve(name)
    try:
        config = config_class(cls).model_validate(params)
    except ValidationError as exc:
        raise SimworldError(f"recommender {name!r}: {exc.errors()[0]['msg']}") from exc
    return cls(config, context)
