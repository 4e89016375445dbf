"""The scenario: one frozen, typed model of the whole YAML file.

Errors name the YAML path of the bad field (`population.size: must be > 0, got -3`), one line
per problem, so a user can fix a file without reading a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator,
)

from simworld.errors import ScenarioError
from simworld.llm.config import LLMConfig
from simworld.memory.config import MemoryConfig
from simworld.social.config import SocialConfig


# What a scenario name or run id may hold: one plain folder name, never a path.
RUN_ID_PATTERN = r"^[A-Za-z0-9_.-]+$"
# Longest scenario name or run id: both become a folder name (with a time stamp appended).
MAX_NAME = 100


class Section(BaseModel):
    # NaN and infinity are never meaningful in a scenario: every float must be finite.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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
        if self.source == "bundled" and self.path:
            raise ValueError("path is given but source is 'bundled', which has no path: "
                             "set source to 'csv' or 'movielens', or remove path")
        return self


class PopulationSpec(Section):
    size: int = Field(50, gt=0, le=1_000_000, description="number of simulated users")
    source: Literal["synthetic", "movielens"] = Field(
        "synthetic", description="synthetic personas, or personas built from MovieLens users' histories")
    path: str | None = Field(None, description="movielens: the MovieLens folder (defaults to catalog.path)")
    seed_history: bool = Field(
        True, description="movielens: give each agent its user's past ratings (recommender warm start)")
    holdout: float = Field(
        0.2, ge=0, lt=1, description="movielens: each user's last share of ratings in time, held out of the "
        "personas, warm-start history, crowd ratings, catalogue filter and taste model (read only by "
        "`simworld eval fidelity`); 0 uses every rating")


class ActivitySpec(Section):
    model: Literal["constant", "pareto", "marginal"] = Field(
        "pareto", description="constant: every agent acts with `probability`; pareto: per-agent "
        "rates with a heavy tail (few very active users); marginal: the chance grows each idle round")
    probability: float = Field(0.5, gt=0, le=1, description="base chance that an agent acts in a round")
    pareto_alpha: float = Field(
        1.5, ge=0.5, description="pareto: tail index (smaller = more unequal; below 0.5 a handful of "
        "users would take nearly all the activity)")
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
    def _known_algorithm(self, info: ValidationInfo) -> "RecommenderSpec":
        from simworld.errors import SimworldError
        from simworld.recommenders.registry import resolve

        if not (info.context or {}).get("allow_plugins", True):
            base = self.params.get("base") if self.name == "llm_rerank" else None
            for name in (self.name, base):
                if isinstance(name, str) and _is_dotted_path(name):
                    raise ValueError(_plugins_off(name))
        try:
            resolve(self.name)
        except SimworldError as exc:
            raise ValueError(str(exc)) from None
        return self


PLUGINS_OFF = "plug-ins are turned off here"  # ends the message of a refused dotted path


def _plugins_off(path: str) -> str:
    return f"{_short(path)} is a dotted path to code, which would be imported and run; {PLUGINS_OFF}"


def _is_dotted_path(name: str) -> bool:
    """True when resolving `name` would import a module named in the scenario ('package.module:Class')."""
    from importlib.metadata import entry_points

    from simworld.recommenders.registry import ENTRY_POINT_GROUP, REGISTRY

    if name in REGISTRY or ":" not in name:
        return False
    return not any(ep.name == name for ep in entry_points(group=ENTRY_POINT_GROUP))


LOG_ODDS = 1e6  # bound of the choice model's log-odds constants and slopes


class RulePolicySpec(Section):
    """Constants of the calibrated choice model (see agents/rule_policy.py for their roles).

    Taste matches lie near 0..1 and log-odds beyond a few dozen are certainty, so the bounds
    below lose nothing and keep every sum of the model finite."""

    watch_threshold: float = Field(0.45, ge=-100, le=100, description="taste match at which watching is a coin flip")
    watch_slope: float = Field(9.0, gt=0, le=LOG_ODDS, description="how sharply watching rises with taste match")
    max_watches_per_page: int = Field(2, ge=1, le=10)
    page_fatigue: float = Field(0.9, ge=0, le=LOG_ODDS, description="log-odds lost per page already seen")
    repeat_penalty: float = Field(4.0, ge=0, le=LOG_ODDS, description="log-odds lost for an item already watched "
                                  "(50 or more: never rewatch)")
    continue_bias: float = Field(0.3, ge=-LOG_ODDS, le=LOG_ODDS, description="log-odds of opening the next page")
    search_rate: float = Field(0.12, ge=0, le=1, description="chance of searching instead of browsing (times curiosity x2)")
    idle_rate: float = Field(0.05, ge=0, le=1, description="chance an active agent does nothing")
    rating_center: float = Field(0.35, ge=-100, le=100, description="taste match that gives a middling rating")
    rating_slope: float = Field(5.0, gt=0, le=LOG_ODDS)
    taste_drift: float = Field(0.05, ge=0, le=1, description="how far one watch moves the taste vector")
    affinity_weight: float = Field(1.0, ge=0, le=1, description="MovieLens-grounded users: share of the "
                                   "collaborative affinity (simworld/taste.py) in the taste match; the rest is genres")
    page_contrast: float = Field(0.0, ge=0, le=LOG_ODDS, description="log-odds lost per unit of utility below "
                                 "the best film on the page (0: films are judged one by one)")
    discovery_rate: float = Field(0.0, ge=0, le=1, description="chance per active round that a user also weighs "
                                  "a few films found outside the platform (friends, TV, cinemas), drawn from the "
                                  "whole catalogue in proportion to their taste (0: the platform is the only way "
                                  "to films)")
    discovery_films: int = Field(3, ge=1, le=20, description="films a user weighs when they find films outside "
                                 "the platform, each judged on its own")


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


class StageSpec(Section):
    """A plug-in stage of the round: `path` names a factory that `params` are passed to."""

    path: str = Field(..., description="'package.module:factory' returning an object with `name` and "
                      "`run(world, rnd)` (code you trust: it is imported)")
    before: str | None = Field(None, description="the stage it runs before (e.g. 'learn')")
    after: str | None = Field(None, description="the stage it runs after (e.g. 'apply'); neither: at the end")
    params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the factory")

    @model_validator(mode="after")
    def _one_anchor(self, info: ValidationInfo) -> "StageSpec":
        if self.before is not None and self.after is not None:
            raise ValueError("give `before` or `after`, not both")
        if not (info.context or {}).get("allow_plugins", True):
            raise ValueError(_plugins_off(self.path))
        return self


class ExecutionSpec(Section):
    """Where the decide stage runs. The driver keeps the world, the recommender, memory and the
    round barrier in every backend; only the agents' policies move to workers, and every backend
    gives the same event log for the same seed and the same LLM answers."""

    backend: Literal["local", "processes", "ray"] = Field(
        "local", description="local: every policy decides in this process; processes: worker processes "
        "on this machine (for LLM-heavy populations when one process's CPU is the bottleneck); ray: "
        "shards as Ray actors, on the cluster at `address` or a local Ray started for the run")
    workers: int = Field(2, ge=1, le=1024, description="processes: worker processes; ray: actors "
                         "(each holds one or more shards)")
    address: str | None = Field(None, description="ray: the cluster to join ('ray://host:10001' or "
                                "'host:6379'); null: start a local Ray (only inside a loopback-only "
                                "network namespace on machines without outside network, see README)")
    shard_size: int = Field(500, ge=1, le=1_000_000, description="agents per shard at most; shards follow "
                            "the social graph's communities when the scenario has one, else agent ids")

    @model_validator(mode="after")
    def _address_for_ray(self) -> "ExecutionSpec":
        if self.address is not None and self.backend != "ray":
            raise ValueError(f"address is given but backend is {self.backend!r}: set backend to 'ray', "
                             "or remove address")
        if self.address is not None and not self.address.strip():
            raise ValueError("address is empty: give 'ray://host:10001' or 'host:6379', or null for a local Ray")
        return self


class OutputSpec(Section):
    dir: str = Field("runs", description="folder that holds run folders, relative to the working directory")
    run_id: str | None = Field(None, pattern=RUN_ID_PATTERN, max_length=MAX_NAME,
                               description="fixed run id (default: name-time)")

    @field_validator("run_id")
    @classmethod
    def _not_a_parent(cls, value: str | None) -> str | None:
        if value in (".", ".."):
            raise ValueError("must name a folder, not '.' or '..'")
        return value


def run_id_problem(run_id: str) -> str | None:
    """Why `run_id` (e.g. given on the command line) cannot name a run folder, or None."""
    if len(run_id) > MAX_NAME:
        return f"must be at most {MAX_NAME} characters, got {len(run_id)}"
    if not re.fullmatch(RUN_ID_PATTERN, run_id):
        return f"may hold only letters, digits, '.', '_' and '-', got {_short(run_id)}"
    if run_id in (".", ".."):
        return f"must name a folder, not {run_id!r}"
    return None


class Scenario(Section):
    name: str = Field("scenario", pattern=RUN_ID_PATTERN, max_length=MAX_NAME)
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
    social: SocialConfig | None = Field(None, description="the social side: a friend graph, chats, posts and "
                                        "reposts, the feed, word of mouth; null: agents only use the platform")
    stages: list[StageSpec] = Field(default_factory=list, description="plug-in stages added to the round "
                                    "(activate, recommend, recall, observe, decide, apply, remember, reflect, "
                                    "forget, learn)")
    output: OutputSpec = Field(default_factory=OutputSpec)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec, description="where the agents' policies "
                                     "decide: this process, worker processes or Ray actors")
    base_dir: Annotated[str, Field(exclude=True)] = "."  # folder of the YAML file: relative paths start here

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    def resolve_path(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def with_overrides(self, **changes: Any) -> "Scenario":
        """A copy with some top-level fields changed (e.g. --rounds); ScenarioError if they are out of range."""
        data = self.model_dump()
        for key, value in changes.items():
            if value is not None:
                data[key] = value
        data["base_dir"] = self.base_dir
        try:
            return Scenario.model_validate(data)
        except ValidationError as exc:
            raise ScenarioError(f"{self.name} (with overrides)", [_describe(err) for err in exc.errors()]) from None

    def with_settings(self, settings: dict[str, Any]) -> "Scenario":
        """A copy with fields set by dotted names (`{"recommender.name": "mf", "seed": 3}`), as
        `simworld branch --set` and Mesa's batch_run keyword arguments give them."""
        if not settings:
            return self
        data = self.model_dump()
        for dotted, value in settings.items():
            *parents, leaf = dotted.split(".")
            node = data
            for key in parents:
                if not isinstance(node.get(key), dict):
                    node[key] = {} if node.get(key) is None else node[key]
                node = node[key]
                if not isinstance(node, dict):
                    raise ScenarioError("settings", [f"{dotted}: {key} is not a section"])
            node[leaf] = value
        data["base_dir"] = self.base_dir
        return parse_scenario(data, "settings")

    def resolved(self) -> "Scenario":
        """A copy whose data paths are absolute, so the saved file works from anywhere."""
        catalog = self.catalog.model_copy(
            update={"path": str(self.resolve_path(self.catalog.path).resolve())} if self.catalog.path else {})
        population = self.population.model_copy(
            update={"path": str(self.resolve_path(self.population.path).resolve())} if self.population.path else {})
        update = {"catalog": catalog, "population": population}
        if self.social is not None and self.social.graph.path:
            graph = self.social.graph.model_copy(
                update={"path": str(self.resolve_path(self.social.graph.path).resolve())})
            update["social"] = self.social.model_copy(update={"graph": graph})
        return self.model_copy(update=update)

    def to_yaml(self) -> str:
        """The scenario as resolved (absolute data paths), as written into the run folder."""
        data = self.resolved().model_dump(mode="json")
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# -- loading ----------------------------------------------------------------------------------

class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, except that a key given twice in one mapping is an error (PyYAML keeps
    the last one silently, so a forgotten earlier setting would win or lose by position)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges keys that the mapping may then override
            key = self.construct_object(key_node, deep=deep)
            try:
                earlier = first_line.get(key)
            except TypeError:
                continue  # an unhashable key: the SafeLoader reports it
            if earlier is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_short(key)} (first given on line {earlier})", key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str, source: str, what: str = "file") -> dict[str, Any]:
    """The mapping of sections in a scenario's YAML text; ScenarioError if it is not one."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ScenarioError(source, [f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc})"]) from None
    if data is None:
        raise ScenarioError(source, [f"the {what} is empty" if not text.strip() else
                                     f"the {what} holds no settings (only comments or null)"])
    if not isinstance(data, dict):
        raise ScenarioError(source, [f"the top level must be a mapping of sections, got {type(data).__name__}"])
    return data


def read_scenario_file(path: Path) -> dict[str, Any]:
    """A scenario file's sections, unvalidated: `name` defaults to the file's stem, and `base_dir`
    is its folder; ScenarioError if the file is missing, not text, empty or not a mapping."""
    source = str(path)
    if not path.is_file():
        raise ScenarioError(source, [f"file not found: {source}"])
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ScenarioError(source, ["not a UTF-8 text file"]) from None
    data = read_yaml(text, source)
    data.setdefault("name", path.stem)
    data["base_dir"] = str(path.resolve().parent)
    return data


def load_scenario(path: str | Path, *, allow_plugins: bool = True) -> Scenario:
    """Read and validate a scenario file; raise ScenarioError with one line per problem."""
    path = Path(path)
    return parse_scenario(read_scenario_file(path), str(path), allow_plugins=allow_plugins)


def parse_scenario(data: dict[str, Any], source: str = "scenario", *, allow_plugins: bool = True) -> Scenario:
    """Validate a scenario's sections; ScenarioError with one line per problem.

    A recommender named by a dotted path ('package.module:Class') is imported to be checked,
    which runs its code: with `allow_plugins=False` such a scenario is refused instead."""
    try:
        scenario = Scenario.model_validate(data, context={"allow_plugins": allow_plugins})
    except ValidationError as exc:
        problems = [_describe(err) for err in exc.errors()]
        # The recommender's params are reported with the other problems, unless its name is one.
        if not any(p.startswith(("recommender:", "recommender.name:")) for p in problems):
            problems += _params_problems(data.get("recommender"), allow_plugins)
        raise ScenarioError(source, problems) from None
    problems = _params_problems(scenario.recommender.model_dump(), allow_plugins)
    if problems:
        raise ScenarioError(source, problems)
    return scenario


def _params_problems(recommender: Any, allow_plugins: bool) -> list[str]:
    """Problems of `recommender.params` under the algorithm's own typed config (known only once
    the name resolves); none when the name or the params are themselves the problem."""
    from simworld.errors import SimworldError
    from simworld.recommenders.registry import validate_params

    if not isinstance(recommender, dict):
        return []
    name = recommender.get("name", RecommenderSpec.model_fields["name"].default)
    params = recommender.get("params", {})
    if not isinstance(name, str) or not isinstance(params, dict) or (not allow_plugins and _is_dotted_path(name)):
        return []
    try:
        validate_params(name, params)
    except SimworldError:
        return []
    except ValidationError as exc:
        return [_describe(dict(err, loc=("recommender", "params", *err["loc"]))) for err in exc.errors()]
    return []


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(_short(p, quote=False) for p in err["loc"] if not str(p).startswith("function-")) or "(top level)"
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    got = f", got {_short(given)}" if not isinstance(given, (dict, list)) else ""
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
    if kind == "string_too_long":
        return f"{loc}: must be at most {ctx['max_length']} characters, got {len(given)}"
    if kind == "finite_number":
        return f"{loc}: must be a finite number{got}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return f"{loc}: {msg[0].lower() + msg[1:]}{got}"


def _short(value: Any, quote: bool = True, limit: int = 60) -> str:
    """A value as a message shows it: repr (or str), cut to `limit` characters."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else f"{text[:limit - 15]}... ({len(text)} characters)"


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def scenario_json_schema() -> dict[str, Any]:
    schema = Scenario.model_json_schema()
    schema.get("properties", {}).pop("base_dir", None)
    schema["title"] = "simworld scenario"
    return schema
