"""The CRS scenario: one frozen, typed model of a `simworld crs generate` YAML file.

A CRS scenario is told apart from a simulation scenario by its `crs:` section (see
`is_crs_scenario`). Errors name the YAML path of the bad field, one line per problem, like
the simulation's (`seeker.knobs.patience: must be >= 1, got 0`). Every knob of the seekers
is documented in `simworld schema --crs`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from simworld.config import CatalogSpec, OutputSpec, PopulationSpec, Section, _describe, read_scenario_file
from simworld.errors import ScenarioError
from simworld.llm.config import LLMConfig
from simworld.streams import Streams

# -- knobs ----------------------------------------------------------------------------------------


class Uniform(Section):
    dist: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> "Uniform":
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) must not exceed high ({self.high:g})")
        return self


class Normal(Section):
    """A normal distribution, clipped to the knob's range."""

    dist: Literal["normal"]
    mean: float
    sd: float = Field(gt=0)


class Beta(Section):
    """A beta distribution stretched over the knob's range."""

    dist: Literal["beta"]
    a: float = Field(gt=0)
    b: float = Field(gt=0)


class Choice(Section):
    dist: Literal["choice"]
    values: tuple[float, ...] = Field(min_length=1)
    weights: tuple[float, ...] | None = Field(None, description="relative weights, one per value (default: equal)")

    @model_validator(mode="after")
    def _weights(self) -> "Choice":
        if self.weights is not None and (len(self.weights) != len(self.values) or min(self.weights) < 0
                                         or sum(self.weights) <= 0):
            raise ValueError("weights must be one non-negative number per value, not all zero")
        return self


KnobDist = Annotated[Uniform | Normal | Beta | Choice, Field(discriminator="dist")]
Knob = float | KnobDist
_DISTRIBUTION: TypeAdapter = TypeAdapter(KnobDist)

# name -> (low, high, integer?, what it does). The order is the order of `Knobs`.
KNOBS: dict[str, tuple[float, float, bool, str]] = {
    "cooperativeness": (0.0, 1.0, False, "chance the seeker answers a question of the CRS with a constraint; "
                        "otherwise it deflects ('not sure, just show me something')"),
    "disclosure": (0.0, 5.0, False, "constraints revealed per seeker turn (0.5: one every other turn); a "
                   "cooperative answer reveals at least one"),
    "patience": (1.0, 50.0, True, "seeker turns without a film it accepts before it gives up"),
    "verbosity": (0.0, 1.0, False, "how much the seeker says: each of three extra sentences (about itself, "
                  "its evening, its taste) is added with this chance"),
    "leniency": (0.0, 1.0, False, "acceptance of films that are not a target: the chance is leniency x "
                 "(share of the need's constraints the film meets)^2; targets are always accepted"),
    "frustration": (0.0, 1.0, False, "chance of pushing back after a bad suggestion ('that is not what I "
                    "asked for'); a push-back costs one more turn of patience"),
    "ambiguity": (0.0, 1.0, False, "chance the first request is vague (no constraint), refined later"),
    "lowercase": (0.0, 1.0, False, "surface style: chance an utterance is written all in lower case"),
    "typos": (0.0, 0.5, False, "surface style: chance each word carries a typo (swapped, dropped or "
              "doubled letter)"),
    "chit_chat": (0.0, 1.0, False, "surface style: chance an utterance opens or closes with chit-chat "
                  "('hi!', 'thanks!', 'haha')"),
}


def _check_knob(name: str, value: Any) -> None:
    low, high, _, _ = KNOBS[name]

    def inside(x: float) -> bool:
        return low <= x <= high

    if isinstance(value, (int, float)):
        if not inside(float(value)):
            raise ValueError(f"must lie in [{low:g}, {high:g}], got {value:g}")
    elif isinstance(value, Uniform):
        if not (inside(value.low) and inside(value.high)):
            raise ValueError(f"uniform bounds must lie in [{low:g}, {high:g}], got [{value.low:g}, {value.high:g}]")
    elif isinstance(value, Choice):
        bad = [v for v in value.values if not inside(v)]
        if bad:
            raise ValueError(f"choice values must lie in [{low:g}, {high:g}], got {bad[0]:g}")
    elif isinstance(value, Normal) and not inside(value.mean):
        raise ValueError(f"the normal's mean must lie in [{low:g}, {high:g}], got {value.mean:g}")


def _field(name: str, default: float) -> Any:
    low, high, integer, doc = KNOBS[name]
    kind = "an integer" if integer else "a number"
    return Field(default, description=f"{doc}. {kind} in [{low:g}, {high:g}], or a distribution "
                 "({dist: uniform, low, high} | {dist: normal, mean, sd} | {dist: beta, a, b} | "
                 "{dist: choice, values, weights})")


@dataclass(frozen=True)
class Knobs:
    """One seeker's knob values (drawn from the scenario's `KnobsSpec`)."""

    cooperativeness: float = 0.8
    disclosure: float = 1.0
    patience: int = 6
    verbosity: float = 0.3
    leniency: float = 0.3
    frustration: float = 0.3
    ambiguity: float = 0.4
    lowercase: float = 0.3
    typos: float = 0.02
    chit_chat: float = 0.3

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


class KnobsSpec(Section):
    """The seekers' knobs: each a number, or a distribution each seeker draws its own value from."""

    cooperativeness: Knob = _field("cooperativeness", Knobs.cooperativeness)
    disclosure: Knob = _field("disclosure", Knobs.disclosure)
    patience: Knob = _field("patience", Knobs.patience)
    verbosity: Knob = _field("verbosity", Knobs.verbosity)
    leniency: Knob = _field("leniency", Knobs.leniency)
    frustration: Knob = _field("frustration", Knobs.frustration)
    ambiguity: Knob = _field("ambiguity", Knobs.ambiguity)
    lowercase: Knob = _field("lowercase", Knobs.lowercase)
    typos: Knob = _field("typos", Knobs.typos)
    chit_chat: Knob = _field("chit_chat", Knobs.chit_chat)

    @field_validator(*KNOBS, mode="before")
    @classmethod
    def _number_or_distribution(cls, value: Any) -> Any:
        """One clear message, not one per member of the union."""
        if isinstance(value, dict):
            try:
                return _DISTRIBUTION.validate_python(value)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"][1:] if not str(p).startswith("function-"))
                msg = err["msg"].removeprefix("Value error, ")
                raise ValueError(f"{where + ': ' if where else ''}{msg}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number or a distribution such as {dist: uniform, low: 0.2, high: 0.8}")
        return value

    @field_validator(*KNOBS)
    @classmethod
    def _in_range(cls, value: Any, info) -> Any:
        _check_knob(info.field_name, value)
        return value

    def draw(self, streams: Streams, index: int) -> Knobs:
        """Dialogue `index`'s seeker: fixed knobs as given, each distribution from its own stream."""
        values: dict[str, float] = {}
        for k, (name, (low, high, integer, _)) in enumerate(KNOBS.items()):
            spec = getattr(self, name)
            if isinstance(spec, (int, float)):
                x = float(spec)
            else:
                x = _sample(spec, streams.generator("crs_knobs", index, k), low, high)
            x = float(np.clip(x, low, high))
            values[name] = int(round(x)) if integer else x
        return Knobs(**values)

    def summary(self) -> dict[str, str]:
        """Each knob as the scenario gives it ('0.3', 'uniform 0.2..0.9'), for data-set cards."""
        out = {}
        for name in KNOBS:
            spec = getattr(self, name)
            if isinstance(spec, (int, float)):
                out[name] = f"{spec:g}"
            else:
                params = spec.model_dump(exclude={"dist"}, exclude_none=True)
                out[name] = f"{spec.dist} " + ", ".join(f"{k}={v}" for k, v in params.items())
        return out


def _sample(spec: Uniform | Normal | Beta | Choice, rng: np.random.Generator, low: float, high: float) -> float:
    if isinstance(spec, Uniform):
        return float(rng.uniform(spec.low, spec.high))
    if isinstance(spec, Normal):
        return float(rng.normal(spec.mean, spec.sd))
    if isinstance(spec, Beta):
        return low + (high - low) * float(rng.beta(spec.a, spec.b))
    weights = np.asarray(spec.weights if spec.weights is not None else [1.0] * len(spec.values), dtype=float)
    return float(spec.values[int(rng.choice(len(spec.values), p=weights / weights.sum()))])


# -- seekers, CRSs, the loop ----------------------------------------------------------------------


class SeekerSpec(Section):
    kind: Literal["template", "llm"] = Field(
        "template", description="who words the seeker's turns: templates (no LLM), or the LLM (`llm:`). "
        "Either way the seeker's decisions (what to reveal, accept, push back on) follow the knobs")
    judge: Literal["rule", "llm"] = Field(
        "rule", description="persuasiveness (0-2) of the CRS's recommendations: a rule proxy (2 accepted, "
        "1 meets half the need's constraints, 0 otherwise), or the seeker's LLM judging its last one")
    targets: int = Field(1, ge=1, le=5, description="target films in each hidden need")
    history: int = Field(20, ge=1, le=500, description="synthetic seekers: films each has seen (drawn from "
                         "its taste); the CRS's recommender is fitted on these histories")
    leak_threshold: float = Field(0.85, gt=0.5, le=1.0, description="fuzzy match (difflib ratio) at which a "
                                  "phrase counts as a target's title and the leak guard rewrites it")
    knobs: KnobsSpec = Field(default_factory=KnobsSpec)


class RecommenderChoice(Section):
    name: str = Field("popularity", description="any recommender of simworld.recommenders: a built-in, an "
                      "entry point, or 'package.module:Class'")
    params: dict[str, Any] = Field(default_factory=dict, description="the algorithm's own typed config")

    @model_validator(mode="after")
    def _known(self) -> "RecommenderChoice":
        from simworld.errors import SimworldError
        from simworld.recommenders.registry import validate_params

        try:
            validate_params(self.name, self.params)
        except SimworldError as exc:
            raise ValueError(str(exc)) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"params.{where}: {first['msg']}") from None
        return self


class RetrievalCRSSpec(Section):
    """No LLM: reads constraints from the seeker's words and ranks with a registered recommender."""

    kind: Literal["retrieval"]
    recommender: RecommenderChoice = Field(default_factory=RecommenderChoice)
    personalised: bool = Field(True, description="rank for the seeker's own history (the recommender knows "
                               "it); false: as for a stranger")
    questions: int = Field(2, ge=0, le=10, description="questions it may ask before it recommends anyway")
    show: int = Field(1, ge=1, le=10, description="films proposed per recommending turn")
    ranking_k: int = Field(50, ge=1, le=1000, description="length of the ranked list behind each turn (Recall@k)")


class LLMCRSSpec(Section):
    """An LLM chooses to ask or recommend among candidates retrieved with the embedder."""

    kind: Literal["llm"]
    embedder: Literal["minilm", "hashing"] = Field("minilm", description="candidate retrieval: all-MiniLM-L6-v2 "
                                                   "from an installed package, or hashing (no model)")
    candidates: int = Field(15, ge=1, le=100, description="candidates listed in the prompt")
    show: int = Field(2, ge=1, le=10, description="most films proposed per turn")
    ranking_k: int = Field(50, ge=1, le=1000, description="length of the ranked list behind each turn (Recall@k)")
    llm: LLMConfig | None = Field(None, description="the CRS's own model (default: the scenario's `llm:`)")


class HTTPCRSSpec(Section):
    """Any server that takes the dialogue so far and returns an utterance and ranked items (README)."""

    kind: Literal["http"]
    url: str = Field(..., pattern=r"^https?://", description="endpoint that answers POST requests")
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(2, ge=0, le=10, description="retries of a failed connection or a 5xx answer")
    concurrency: int = Field(8, gt=0, le=256, description="requests in flight at once")
    ranking_k: int = Field(50, ge=1, le=1000, description="`k` sent with each request")
    name: str = Field("http", description="the CRS's name in the data set")


CRSSpec = Annotated[RetrievalCRSSpec | LLMCRSSpec | HTTPCRSSpec, Field(discriminator="kind")]


class DialogueSpec(Section):
    max_turns: int = Field(10, ge=1, le=100, description="CRS turns before a dialogue ends with 'max_turns'")


class GenerationSpec(Section):
    batch_size: int = Field(20, gt=0, le=10_000, description="dialogues committed to the run folder together")


class MetricsSpec(Section):
    reference: str | None = Field(
        None, description="a ReDial JSON-lines file whose seekers are the human reference of the z-scores "
        "(relative to the scenario file); default: the figures of the ReDial test split shipped with simworld")


class CRSScenario(Section):
    name: str = Field("crs", pattern=r"^[A-Za-z0-9_.-]+$", max_length=100)
    description: str = ""
    seed: int = Field(0, ge=0)
    dialogues: int = Field(100, gt=0, le=1_000_000, description="dialogues to generate")
    catalog: CatalogSpec = Field(default_factory=CatalogSpec)
    population: PopulationSpec = Field(default_factory=PopulationSpec, description="the seekers' personas; "
                                       "dialogue i gets persona i modulo the population size")
    seeker: SeekerSpec = Field(default_factory=SeekerSpec)
    crs: CRSSpec = Field(..., description="the conversational recommender (this section marks a CRS scenario)")
    dialogue: DialogueSpec = Field(default_factory=DialogueSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    llm: LLMConfig = Field(default_factory=LLMConfig, description="the seekers' model (seeker.kind llm, "
                           "judge llm) and the LLM CRS's unless it has its own")
    output: OutputSpec = Field(default_factory=OutputSpec)
    base_dir: Annotated[str, Field(exclude=True)] = "."

    def resolve_path(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def uses_llm(self) -> bool:
        return self.seeker.kind == "llm" or self.seeker.judge == "llm" or self.crs.kind == "llm"

    def crs_llm(self) -> LLMConfig | None:
        """The LLM CRS's model config when it differs from the scenario's `llm:`."""
        return self.crs.llm if isinstance(self.crs, LLMCRSSpec) else None

    def with_overrides(self, **changes: Any) -> "CRSScenario":
        data = self.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        data["base_dir"] = self.base_dir
        return parse_crs_scenario(data, f"{self.name} (with overrides)")

    def resolved(self) -> "CRSScenario":
        """A copy whose data paths are absolute, so the copy in the run folder works from anywhere."""
        def absolute(path: str | None) -> str | None:
            return str(self.resolve_path(path).resolve()) if path else path

        return self.model_copy(update={
            "catalog": self.catalog.model_copy(update={"path": absolute(self.catalog.path)}),
            "population": self.population.model_copy(update={"path": absolute(self.population.path)}),
            "metrics": self.metrics.model_copy(update={"reference": absolute(self.metrics.reference)}),
        })

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.resolved().model_dump(mode="json"), sort_keys=False, allow_unicode=True)


# -- loading --------------------------------------------------------------------------------------


def is_crs_scenario(path: str | Path) -> bool:
    """Whether a YAML file is a CRS scenario (it has a top-level `crs:` section)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "crs" in data


def load_crs_scenario(path: str | Path) -> CRSScenario:
    """Read and validate a CRS scenario file; ScenarioError with one line per problem."""
    data = read_scenario_file(Path(path))
    if "crs" not in data and {"rounds", "policy", "recommender", "activity"} & set(data):
        raise ScenarioError(str(path), ["this is a simulation scenario (no `crs:` section): run it with "
                                        "`simworld run`"])
    return parse_crs_scenario(data, str(path))


def parse_crs_scenario(data: dict[str, Any], source: str = "CRS scenario") -> CRSScenario:
    try:
        return CRSScenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, [_describe(err) for err in exc.errors()]) from None


def crs_json_schema() -> dict[str, Any]:
    schema = CRSScenario.model_json_schema()
    schema.get("properties", {}).pop("base_dir", None)
    schema["title"] = "simworld CRS scenario"
    return schema
