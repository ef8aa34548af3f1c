"""The TuningJob model: one place for the shape, the defaults and the rules of a job.

The same model backs ``openautoglm validate``, the local engine, the SDK and (issue 4)
the CRD schema. Field names are the camelCase ones a user writes in YAML; Python code
uses the snake_case attribute names.

Shape errors (wrong type, unknown field, missing field) come from pydantic; rules that
involve several fields are raised as :class:`SpecProblems`, which carry the name of
the offending field so every problem is reported with its full path.
"""
from __future__ import annotations

import math
import re
from typing import Annotated, Any, Final, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

API_VERSION: Final = "openautoglm.io/v1alpha1"
KIND: Final = "TuningJob"
#: Pod names are ``<job>-t<trial>-w<rank>`` and must stay a DNS-1123 label (63 chars).
MAX_NAME_LENGTH: Final = 40
NAME_RE: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
PARAM_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Kubernetes resource quantity (a simplified form of the apimachinery grammar).
QUANTITY_RE: Final = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$")
ENV_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Direction = Literal["maximize", "minimize"]
Scalar = Union[bool, int, float, str, None]


class SpecProblems(ValueError):
    """Several rule violations of one model, each naming its field (relative to the model)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{field}: {msg}" if field else msg for field, msg in problems))


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


def _raise(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise SpecProblems(problems)


# ----------------------------------------------------------------------------- objective
class ObjectiveMetric(_Model):
    metric: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    direction: Direction


class Objective(_Model):
    """A single metric (``metric``/``direction``) or several (``metrics``)."""

    @model_validator(mode="before")
    @classmethod
    def _no_bare_list(cls, data: Any) -> Any:
        # One shape for kubectl and the CLI alike: the CRD's objective is an object.
        if isinstance(data, list):
            raise ValueError("several objectives are written as objective: {metrics: [{metric, direction}, ...]}")
        return data

    metric: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    direction: Direction | None = None
    #: The job succeeds as soon as a finished trial reaches this value.
    target: float | None = None
    #: Which value of a trial's curve counts: the best epoch (as Katib) or the last one.
    strategy: Literal["best", "latest"] = "best"
    metrics: Annotated[list[ObjectiveMetric], Field(min_length=2, max_length=8)] | None = None

    @model_validator(mode="after")
    def _check(self) -> "Objective":
        p: list[tuple[str, str]] = []
        if self.metrics is None:
            if self.metric is None:
                p.append(("metric", "required: the name of the metric the trial exports (or a list of {metric, direction})"))
            if self.direction is None:
                p.append(("direction", "required: maximize or minimize"))
        else:
            if self.metric is not None or self.direction is not None:
                p.append(("metric", "give either metric/direction or a list of objectives, not both"))
            if self.target is not None:
                p.append(("target", "a target applies to a single objective only"))
            names = [m.metric for m in self.metrics]
            if len(set(names)) != len(names):
                p.append(("metrics", f"metric names must be unique, got {names}"))
        if self.target is not None and not math.isfinite(self.target):
            p.append(("target", "must be a finite number"))
        _raise(p)
        return self

    @property
    def objectives(self) -> list[ObjectiveMetric]:
        if self.metrics is not None:
            return list(self.metrics)
        return [ObjectiveMetric(metric=self.metric, direction=self.direction)]  # type: ignore[arg-type]

    @property
    def is_multi(self) -> bool:
        return self.metrics is not None


# ----------------------------------------------------------------------------- budget
class Budget(_Model):
    max_trials: Annotated[int, Field(ge=1, le=100_000)] = 10
    parallelism: Annotated[int, Field(ge=1, le=1000)] = 1
    #: The job fails once more trials than this have failed.
    max_failed_trials: Annotated[int, Field(ge=0)] = 3
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _check(self) -> "Budget":
        if self.parallelism > self.max_trials:
            _raise([("parallelism", f"must be <= maxTrials ({self.max_trials}), got {self.parallelism}")])
        return self


# ----------------------------------------------------------------------------- algorithm
class Algorithm(_Model):
    #: Name in the sampler registry (see ``openautoglm.samplers``); checked there.
    #: Unset: tpe for one objective, nsga2 for several (see TuningJobSpec.sampler_name).
    sampler: Annotated[str, Field(min_length=1)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None
    #: Keyword arguments of the sampler, validated against the registry entry.
    settings: dict[str, Any] = Field(default_factory=dict)


class EarlyStopping(_Model):
    #: Name in the pruner registry (see ``openautoglm.pruners``); checked there.
    pruner: Annotated[str, Field(min_length=1)] = "none"
    settings: dict[str, Any] = Field(default_factory=dict)
    #: Stop a trial whose gradient norm exceeds this (NaN/inf loss always stops it).
    max_grad_norm: Annotated[float, Field(gt=0)] | None = 1.0e4
    #: Stop a trial after this many epochs without improvement of the first objective.
    patience: Annotated[int, Field(ge=1)] | None = None
    min_delta: Annotated[float, Field(ge=0)] = 0.0


# ----------------------------------------------------------------------------- parameters
class Parameter(_Model):
    name: Annotated[str, Field(min_length=1, max_length=63)]
    type: Literal["float", "int", "categorical", "fixed"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: Annotated[float, Field(gt=0)] | None = None
    choices: Annotated[list[Scalar], Field(min_length=1, max_length=1000)] | None = None
    value: Scalar = None
    #: Sample this parameter only when other (categorical) parameters have these values.
    when: dict[str, Scalar | list[Scalar]] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not PARAM_NAME_RE.match(v):
            raise ValueError("must be an identifier (letters, digits, underscore; not starting with a digit)")
        return v

    @model_validator(mode="after")
    def _check(self) -> "Parameter":
        p: list[tuple[str, str]] = []
        t = self.type
        numeric = t in ("float", "int")
        if numeric:
            if self.low is None:
                p.append(("low", f"required for a {t} parameter"))
            if self.high is None:
                p.append(("high", f"required for a {t} parameter"))
            for f in ("low", "high"):
                v = getattr(self, f)
                if v is not None and not math.isfinite(v):
                    p.append((f, "must be a finite number"))
                if t == "int" and v is not None and math.isfinite(v) and v != int(v):
                    p.append((f, f"must be an integer for an int parameter, got {v}"))
            if self.low is not None and self.high is not None and not self.low < self.high:
                p.append(("high", f"must be greater than low ({self.low}), got {self.high}"))
            if self.log and self.low is not None and self.low <= 0:
                p.append(("low", f"must be > 0 on a log scale, got {self.low}"))
            if self.step is not None:
                if self.log and (t == "float" or self.step != 1):
                    p.append(("step", "cannot be combined with log: true"))
                if t == "int" and self.step != int(self.step):
                    p.append(("step", f"must be an integer for an int parameter, got {self.step}"))
                if self.low is not None and self.high is not None and self.step > self.high - self.low:
                    p.append(("step", f"must be <= high - low ({self.high - self.low}), got {self.step}"))
            if self.choices is not None:
                p.append(("choices", f"only for categorical parameters, not {t}"))
            if self.value is not None:
                p.append(("value", f"only for fixed parameters, not {t}"))
        else:
            for f in ("low", "high", "step"):
                if getattr(self, f) is not None:
                    p.append((f, f"only for float/int parameters, not {t}"))
            if self.log:
                p.append(("log", f"only for float/int parameters, not {t}"))
        if t == "categorical":
            if self.choices is None:
                p.append(("choices", "required for a categorical parameter: a non-empty list"))
            else:
                keys = [repr(c) for c in self.choices]
                if len(set(keys)) != len(keys):
                    p.append(("choices", f"must be unique, got {self.choices}"))
            if self.value is not None:
                p.append(("value", "only for fixed parameters, not categorical"))
        if t == "fixed":
            if self.value is None:
                p.append(("value", "required for a fixed parameter"))
            if self.choices is not None:
                p.append(("choices", "only for categorical parameters, not fixed"))
        if self.when is not None and not self.when:
            p.append(("when", "must name at least one parameter"))
        _raise(p)
        return self


# ----------------------------------------------------------------------------- trial
class Resources(_Model):
    requests: dict[str, str] = Field(default_factory=lambda: {"cpu": "1", "memory": "1Gi"})
    limits: dict[str, str] = Field(default_factory=lambda: {"cpu": "1", "memory": "2Gi"})

    @model_validator(mode="after")
    def _check(self) -> "Resources":
        p = [
            (f"{part}.{k}", f"must be a Kubernetes quantity such as 500m, 1, 2Gi; got {v!r}")
            for part in ("requests", "limits")
            for k, v in getattr(self, part).items()
            if not QUANTITY_RE.match(str(v))
        ]
        _raise(p)
        return self


class EnvVar(_Model):
    name: str
    value: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not ENV_NAME_RE.match(v):
            raise ValueError("must be a valid environment variable name")
        if v.startswith(("OPENAUTOGLM_", "HOROVOD_")):
            raise ValueError("OPENAUTOGLM_* and HOROVOD_* are set by the operator")
        return v


class TrialTemplate(_Model):
    #: A built-in task of the trial runtime; mutually exclusive with ``command``.
    task: str | None = None
    #: Your own program (exec form, no shell); it receives the same environment.
    command: Annotated[list[str], Field(min_length=1)] | None = None
    #: Task settings, e.g. ``{dataset: ./corpus, model: ./checkpoint}``.
    task_settings: dict[str, Any] = Field(default_factory=dict)
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 10
    #: Horovod ranks per trial, one pod (or local process) each.
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    image: Annotated[str, Field(min_length=1)] = "openautoglm/trial:0.1"
    resources: Resources = Field(default_factory=Resources)
    env: list[EnvVar] = Field(default_factory=list)
    #: A trial running longer than this is stopped and counted as failed.
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _check(self) -> "TrialTemplate":
        p: list[tuple[str, str]] = []
        if (self.task is None) == (self.command is None):
            p.append(("task", "give exactly one of task (a built-in task) or command (your own program)"))
        names = [e.name for e in self.env]
        if len(set(names)) != len(names):
            p.append(("env", f"names must be unique, got {names}"))
        _raise(p)
        return self


# ----------------------------------------------------------------------------- metrics, storage
class PrometheusQuery(_Model):
    url: Annotated[str, Field(pattern=r"^https?://")]
    #: PromQL; ``{job}``, ``{trial}`` and ``{metric}`` are replaced. Default: the trial gauge.
    query: str | None = None


class MetricsSource(_Model):
    source: Literal["scrape", "prometheus"] = "scrape"
    port: Annotated[int, Field(ge=1, le=65535)] = 9090
    interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    prometheus: PrometheusQuery | None = None

    @model_validator(mode="after")
    def _check(self) -> "MetricsSource":
        if self.source == "prometheus" and self.prometheus is None:
            _raise([("prometheus", "required when source is prometheus: {url, query}")])
        return self


class SecretRef(_Model):
    name: str
    key: str = "url"


class JournalStorage(_Model):
    path: str | None = None


class PostgresStorage(_Model):
    url: Annotated[str, Field(pattern=r"^postgresql(\+[a-z0-9]+)?://")] | None = None
    secret_ref: SecretRef | None = None

    @model_validator(mode="after")
    def _check(self) -> "PostgresStorage":
        if (self.url is None) == (self.secret_ref is None):
            _raise([("url", "give exactly one of url or secretRef")])
        return self


class Storage(_Model):
    journal: JournalStorage | None = None
    postgres: PostgresStorage | None = None

    @model_validator(mode="after")
    def _check(self) -> "Storage":
        if self.journal is not None and self.postgres is not None:
            _raise([("postgres", "choose one storage: journal or postgres")])
        return self


# ----------------------------------------------------------------------------- the job
class WarmStart(_Model):
    """Known configurations enqueued as the first trials (e.g. today's manual setting)."""

    params: dict[str, Scalar]


class TuningJobSpec(_Model):
    objective: Objective
    budget: Budget = Field(default_factory=Budget)
    algorithm: Algorithm = Field(default_factory=Algorithm)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    parameters: Annotated[list[Parameter], Field(min_length=1, max_length=200)]
    trial: TrialTemplate
    metrics: MetricsSource = Field(default_factory=MetricsSource)
    storage: Storage = Field(default_factory=Storage)
    warm_start: list[WarmStart] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "TuningJobSpec":
        p: list[tuple[str, str]] = []
        by_name: dict[str, tuple[int, Parameter]] = {}
        for i, prm in enumerate(self.parameters):
            if prm.name in by_name:
                p.append((f"parameters[{i}].name", f"duplicate parameter name {prm.name!r}"))
            for ref, wanted in (prm.when or {}).items():
                where = f"parameters[{i}].when.{ref}"
                if ref not in by_name:
                    p.append((where, f"must name a categorical or fixed parameter defined before {prm.name!r}"))
                    continue
                other = by_name[ref][1]
                if other.type not in ("categorical", "fixed"):
                    p.append((where, f"{ref!r} is a {other.type} parameter; conditions need a categorical one"))
                    continue
                allowed = other.choices if other.type == "categorical" else [other.value]
                for v in wanted if isinstance(wanted, list) else [wanted]:
                    if v not in (allowed or []):
                        p.append((where, f"{v!r} is not one of {ref}'s choices {allowed}"))
            by_name.setdefault(prm.name, (i, prm))
        if self.objective.is_multi and self.early_stopping.pruner != "none":
            p.append(("earlyStopping.pruner", "pruning supports a single objective only; use none with several objectives"))
        for i, ws in enumerate(self.warm_start):
            for k in ws.params:
                if k not in by_name:
                    p.append((f"warmStart[{i}].params.{k}", "is not a parameter of the search space"))
        _raise(p)
        return self


def sampler_name(spec: "TuningJobSpec") -> str:
    """The sampler a job uses: the one it names, else TPE (one objective) or NSGA-II (several)."""
    if spec.algorithm.sampler:
        return spec.algorithm.sampler
    return "nsga2" if spec.objective.is_multi else "tpe"


class Metadata(BaseModel):
    # Kubernetes adds many fields (uid, resourceVersion, ...); accept and ignore them.
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    namespace: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if len(v) > MAX_NAME_LENGTH:
            raise ValueError(f"must be at most {MAX_NAME_LENGTH} characters (it prefixes pod names), got {len(v)}")
        if not NAME_RE.match(v):
            raise ValueError("must be a DNS-1035 label: lower-case letters, digits and '-', starting with a letter")
        return v


class TuningJob(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)
    api_version: Literal["openautoglm.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["TuningJob"]
    metadata: Metadata
    spec: TuningJobSpec
    # A TuningJob read back from a cluster carries its status; the engine ignores it.
    status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.metadata.name


def parameter_by_name(spec: TuningJobSpec) -> dict[str, Parameter]:
    return {p.name: p for p in spec.parameters}
