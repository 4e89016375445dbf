"""The scenario: one frozen, typed model of the whole YAML file.

Errors name the YAML path of the bad field (`population.size: must be > 0, got -3`), one line
per problem, so a user can fix a file without reading a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simworld.errors import ScenarioError
from simworld.llm.config import LLMConfig
from simworld.memory.config import MemoryConfig


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogSpec(Section):
    source: Literal["bundled", "csv", "movielens"] = Field(
        "bundled", description="bundled: the 300+ films shipped in scenarios/catalog; csv: a file "
        "in that layout; movielens: a MovieLens folder (ml-latest-small, ml-25m, ml-100k, ml-1m)")
    path: str | None = Field(None, description="file or folder for csv/movielens, relative to the scenario file")
    min_ratings: int = Field(0, ge=0, description="movielens: keep items with at least this many ratings")
    max_items: int | None = Field(None, gt=0, description="movielens: keep the most-rated N items")

    @model_validator(mode="after")
    def _path_needed(self) -> "CatalogSpec":
        if self.source != "bundled" and not self.path:
            raise ValueError(f"source {self.source!r} needs a path")
        return self


class PopulationSpec(Section):
    size: int = Field(50, gt=0, description="number of simulated users")
    source: Literal["synthetic", "movielens"] = Field(
        "synthetic", description="synthetic personas, or personas built from MovieLens users' histories")
    path: str | None = Field(None, description="movielens: the MovieLens folder (defaults to catalog.path)")
    seed_history: bool = Field(
        True, description="movielens: give each agent its user's past ratings (recommender warm start)")


class ActivitySpec(Section):
    model: Literal["constant", "pareto", "marginal"] = Field(
        "pareto", description="constant: every agent acts with `probability`; pareto: per-agent "
        "rates with a heavy tail (few very active users); marginal: the chance grows each idle round")
    probability: float = Field(0.5, gt=0, le=1, description="base chance that an agent acts in a round")
    pareto_alpha: float = Field(1.5, gt=0, description="pareto: tail index (smaller = more unequal)")
    growth: float = Field(0.25, ge=0, description="marginal: added chance per idle round, relative to base")
    max_active: int | None = Field(None, gt=0, description="at most this many agents act in one round")


class RecommenderSpec(Section):
    name: str = Field("popularity", description="a built-in (random, popularity, ...), an entry point "
                      "in group simworld.recommenders, or 'package.module:Class'")
    params: dict[str, Any] = Field(default_factory=dict, description="the algorithm's own typed config")
    page_size: int = Field(10, gt=0, le=100, description="items on one page")
    max_pages: int = Field(3, gt=0, le=20, description="pages an agent may browse in one round")
    retrain_every: int = Field(1, gt=0, description="update the recommender every N rounds")

    @model_validator(mode="after")
    def _known_algorithm(self) -> "RecommenderSpec":
        from simworld.errors import SimworldError
        from simworld.recommenders.registry import resolve

        try:
            resolve(self.name)
        except SimworldError as exc:
            raise ValueError(str(exc)) from None
        return self


class RulePolicySpec(Section):
    """Constants of the calibrated choice model (see agents/rule_policy.py for their roles)."""

    watch_threshold: float = Field(0.45, description="taste match at which watching is a coin flip")
    watch_slope: float = Field(9.0, gt=0, description="how sharply watching rises with taste match")
    max_watches_per_page: int = Field(2, ge=1, le=10)
    page_fatigue: float = Field(0.9, ge=0, description="log-odds lost per page already seen")
    repeat_penalty: float = Field(4.0, ge=0, description="log-odds lost for an item already watched")
    continue_bias: float = Field(0.3, description="log-odds of opening the next page")
    search_rate: float = Field(0.12, ge=0, le=1, description="chance of searching instead of browsing (times curiosity x2)")
    idle_rate: float = Field(0.05, ge=0, le=1, description="chance an active agent does nothing")
    rating_center: float = Field(0.35, description="taste match that gives a middling rating")
    rating_slope: float = Field(5.0, gt=0)
    taste_drift: float = Field(0.05, ge=0, le=1, description="how far one watch moves the taste vector")


class PolicySpec(Section):
    kind: Literal["rule", "llm", "hybrid"] = Field(
        "rule", description="rule: the choice model, no LLM; llm: every decision by the LLM; "
        "hybrid: a fraction of agents on the LLM, or the LLM voices the rule model's choices")
    llm_fraction: float = Field(0.2, ge=0, le=1, description="hybrid: share of agents deciding by LLM")
    voice: bool = Field(False, description="hybrid: agents not deciding by LLM keep the rule model's choices "
                        "and ratings, and the LLM writes their feelings")
    voice_fraction: float = Field(1.0, ge=0, le=1, description="hybrid with voice: share of the rule-deciding "
                                  "agents whose feelings the LLM writes (the rest keep template feelings)")
    rule: RulePolicySpec = Field(default_factory=RulePolicySpec)


class OutputSpec(Section):
    dir: str = Field("runs", description="folder that holds run folders, relative to the working directory")
    run_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", description="fixed run id (default: name-time)")


class Scenario(Section):
    name: str = Field("scenario", pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = Field(0, ge=0)
    rounds: int = Field(10, gt=0)
    population: PopulationSpec = Field(default_factory=PopulationSpec)
    catalog: CatalogSpec = Field(default_factory=CatalogSpec)
    activity: ActivitySpec = Field(default_factory=ActivitySpec)
    recommender: RecommenderSpec = Field(default_factory=RecommenderSpec)
    policy: PolicySpec = Field(default_factory=PolicySpec)
    llm: LLMConfig = Field(default_factory=LLMConfig, description="the language model (used by llm/hybrid policies, "
                           "LLM re-rankers, interviews); default: the embedded offline model")
    memory: MemoryConfig | None = Field(None, description="long-term agent memory (chromadb); null: agents "
                                        "remember only their last few events")
    output: OutputSpec = Field(default_factory=OutputSpec)
    base_dir: Annotated[str, Field(exclude=True)] = "."  # folder of the YAML file: relative paths start here

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    def resolve_path(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def with_overrides(self, **changes: Any) -> "Scenario":
        data = self.model_dump()
        for key, value in changes.items():
            if value is not None:
                data[key] = value
        data["base_dir"] = self.base_dir
        return Scenario.model_validate(data)

    def resolved(self) -> "Scenario":
        """A copy whose data paths are absolute, so the saved file works from anywhere."""
        catalog = self.catalog.model_copy(
            update={"path": str(self.resolve_path(self.catalog.path).resolve())} if self.catalog.path else {})
        population = self.population.model_copy(
            update={"path": str(self.resolve_path(self.population.path).resolve())} if self.population.path else {})
        return self.model_copy(update={"catalog": catalog, "population": population})

    def to_yaml(self) -> str:
        """The scenario as resolved (absolute data paths), as written into the run folder."""
        data = self.resolved().model_dump(mode="json")
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# -- loading ----------------------------------------------------------------------------------

def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raise ScenarioError with one line per problem."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ScenarioError(source, [f"file not found: {source}"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ScenarioError(source, [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    except UnicodeDecodeError:
        raise ScenarioError(source, ["not a UTF-8 text file"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(source, [f"the top level must be a mapping of sections, got {type(data).__name__}"])
    data.setdefault("name", path.stem)
    data["base_dir"] = str(path.resolve().parent)
    return parse_scenario(data, source)


def parse_scenario(data: dict[str, Any], source: str = "scenario") -> Scenario:
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, [_describe(err) for err in exc.errors()]) from None
    # The algorithm's own typed config is known only once the name resolves.
    from simworld.recommenders.registry import validate_params

    try:
        validate_params(scenario.recommender.name, scenario.recommender.params)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            err = dict(err, loc=("recommender", "params", *err["loc"]))
            problems.append(_describe(err))
        raise ScenarioError(source, problems) from None
    return scenario


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-")) or "(top level)"
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    got = f", got {given!r}" if not isinstance(given, (dict, list)) else ""
    if kind == "greater_than":
        return f"{loc}: must be > {_num(ctx['gt'])}{got}"
    if kind == "greater_than_equal":
        return f"{loc}: must be >= {_num(ctx['ge'])}{got}"
    if kind == "less_than_equal":
        return f"{loc}: must be <= {_num(ctx['le'])}{got}"
    if kind == "less_than":
        return f"{loc}: must be < {_num(ctx['lt'])}{got}"
    if kind == "literal_error":
        return f"{loc}: must be one of {ctx['expected']}{got}"
    if kind == "extra_forbidden":
        return f"{loc}: unknown field (check the spelling; `simworld schema` lists the fields)"
    if kind == "missing":
        return f"{loc}: required field is missing"
    if kind == "string_pattern_mismatch":
        return f"{loc}: may hold only letters, digits, '.', '_' and '-'{got}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return f"{loc}: {msg[0].lower() + msg[1:]}{got}"


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def scenario_json_schema() -> dict[str, Any]:
    schema = Scenario.model_json_schema()
    schema.get("properties", {}).pop("base_dir", None)
    schema["title"] = "simworld scenario"
    return schema
