"""Pluggable recommenders (installed as `simworld.recommenders`)."""

from simworld.recommenders.base import (
    INTERACTION_SCHEMA,
    Recommender,
    RecommenderConfig,
    RecommenderContext,
    ScoringRecommender,
    empty_interactions,
)
from simworld.recommenders.registry import REGISTRY, build_recommender, register, resolve

__all__ = [
    "INTERACTION_SCHEMA", "REGISTRY", "Recommender", "RecommenderConfig", "RecommenderContext",
    "ScoringRecommender", "build_recommender", "empty_interactions", "register", "resolve",
]
