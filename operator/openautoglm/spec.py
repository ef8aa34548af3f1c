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
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The trial contract is the other half of this model (no heavy imports: names and constants).
from openautoglm import promql
from openautoglm.specbase import _Model, _non_finite, _raise
from openautoglm.trialrun import DEFAULT_PENDING_TIMEOUT_SECONDS, Checkpoint, Scheduling
from openautoglm_trial import contract

#: The TuningJob resource: the one place its group, version and names are spelt.
GROUP: Final = "openautoglm.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "tuningjobs"
KIND: Final = "TuningJob"
API_VERSION: Final = f"{GROUP}/{VERSION}"
#: Pod names are ``<job>-t<trial>-w<rank>`` and must stay a DNS-1123 label (63 chars).
MAX_NAME_LENGTH: Final = 40
DEFAULT_RENDEZVOUS_PORT: Final = contract.DEFAULT_RENDEZVOUS_PORT
NAME_RE: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
#: Parameter and metric names: identifiers, plus '-' and '.' as Katib allows (``num-layers``,
#: ``Validation-accuracy``). They travel as JSON keys and label values, never as variable names.
PARAM_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
METRIC_NAME_RE: Final = PARAM_NAME_RE
#: Kubernetes resource quantity (a simplified form of the apimachinery grammar).
QUANTITY_RE: Final = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$")
ENV_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: ``storage.journal.path``: a file name (no directory part, not hidden) ending in ``.journal``.
JOURNAL_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.journal$")
#: A password in a database URL: ``user:password@`` or a ``password=`` query parameter (libpq).
URL_PASSWORD_RE: Final = re.compile(r"(?i)^[^/]*//[^/@?#]*:[^/@?#]*@|[?&]password=")
#: A Secret's name (DNS-1123 subdomain) and a key of its data.
SECRET_NAME_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_KEY_RE: Final = re.compile(r"^[-._a-zA-Z0-9]+$")
#: The floor of ``metrics.intervalSeconds``.
MIN_INTERVAL_SECONDS: Final = 0.5

Direction = Literal["maximize", "minimize"]
Launcher = Literal["horovod", "torchrun"]
#: A built-in task's taskSettings.distributed under each launcher, and back.
DISTRIBUTED_OF: Final = {"horovod": "horovod", "torchrun": "ddp"}
LAUNCHER_OF: Final = {v: k for k, v in DISTRIBUTED_OF.items()}
MetricName = Annotated[str, Field(min_length=1, max_length=63, pattern=PARAM_NAME_RE.pattern)]
#: How a metric's curve becomes one value: its minimum, its maximum or its last value (Katib's
#: metricStrategies).
MetricStrategy = Literal["min", "max", "latest"]
Scalar = bool | int | float | str | None


# ----------------------------------------------------------------------------- objective
class ObjectiveMetric(_Model):
    metric: MetricName
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

    metric: MetricName | None = None
    direction: Direction | None = None
    #: The job succeeds as soon as a finished trial reaches this value.
    target: float | None = None
    #: Which value of a trial's curve counts: the best epoch (as Katib) or the last one.
    strategy: Literal["best", "latest"] = "best"
    metrics: Annotated[list[ObjectiveMetric], Field(min_length=2, max_length=8)] | None = None
    #: Further metrics recorded for every trial (study, report, status), not optimised
    #: (Katib's additionalMetricNames).
    additional_metrics: Annotated[list[MetricName], Field(max_length=32)] = Field(default_factory=list)
    #: min | max | latest per metric; overrides ``strategy`` for an objective metric. Unset:
    #: an objective follows ``strategy`` (best: by its direction), an additional metric is latest.
    metric_strategies: dict[str, MetricStrategy] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Objective:
        p: list[tuple[str, str]] = []
        objective_names = (
            [m.metric for m in self.metrics] if self.metrics is not None else [self.metric] if self.metric else []
        )
        if len(set(self.additional_metrics)) != len(self.additional_metrics):
            p.append(("additionalMetrics", f"names must be unique, got {self.additional_metrics}"))
        for i, name in enumerate(self.additional_metrics):
            if name in objective_names:
                p.append((f"additionalMetrics[{i}]", f"{name!r} is already an objective metric"))
        for name in self.metric_strategies:
            if name not in objective_names and name not in self.additional_metrics:
                p.append((f"metricStrategies.{name}", "names neither an objective metric nor one of additionalMetrics"))
        if self.metrics is None:
            if self.metric is None:
                p.append(
                    ("metric", "required: the name of the metric the trial exports (or a list of {metric, direction})")
                )
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
        if self.metric is None or self.direction is None:  # refused by _check: a model_construct()ed one
            raise ValueError("an objective names metric and direction, or a list of them")
        return [ObjectiveMetric(metric=self.metric, direction=self.direction)]

    @property
    def is_multi(self) -> bool:
        return self.metrics is not None

    def strategies(self) -> dict[str, str]:
        """min | max | latest for every recorded metric: objectives first, then additional ones."""
        out: dict[str, str] = {}
        for o in self.objectives:
            by_direction = "max" if o.direction == "maximize" else "min"
            out[o.metric] = self.metric_strategies.get(o.metric, by_direction if self.strategy == "best" else "latest")
        for name in self.additional_metrics:
            out[name] = self.metric_strategies.get(name, "latest")
        return out


# ----------------------------------------------------------------------------- budget
class Budget(_Model):
    max_trials: Annotated[int, Field(ge=1, le=100_000)] = 10
    parallelism: Annotated[int, Field(ge=1, le=1000)] = 1
    #: The job fails once more trials than this have failed.
    max_failed_trials: Annotated[int, Field(ge=0)] = 3
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _check(self) -> Budget:
        if self.parallelism > self.max_trials:
            _raise([("parallelism", f"must be <= maxTrials ({self.max_trials}), got {self.parallelism}")])
        return self


# ----------------------------------------------------------------------------- algorithm
class Algorithm(_Model):
    #: Name in the sampler registry (see ``openautoglm.samplers``); checked there.
    #: Unset: auto (gp, then tpe) for one objective, nsga2 for several (see spec.sampler_name).
    sampler: Annotated[str, Field(min_length=1)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = None
    #: Keyword arguments of the sampler, validated against the registry entry.
    settings: dict[str, Any] = Field(default_factory=dict)
    #: The first trial is the built-in task's default configuration (where the search space
    #: admits it), as a person tuning by hand starts; then warmStart, then the sampler.
    #: Unset: on for built-in tasks, except with the grid sampler (a grid has no room for it).
    start_from_defaults: bool | None = None


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
            raise ValueError(
                "must start with a letter or underscore and contain only letters, digits, '_', '-' and '.'"
            )
        return v

    @model_validator(mode="after")
    def _check(self) -> Parameter:
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
        # YAML reads .nan/.inf, JSON has neither: the API server refuses them, so validate does too.
        for i, c in enumerate(self.choices or []):
            if _non_finite(c):
                p.append((f"choices[{i}]", "must be a finite number (JSON has no NaN or Infinity)"))
        if _non_finite(self.value):
            p.append(("value", "must be a finite number (JSON has no NaN or Infinity)"))
        for ref, v in (self.when or {}).items():
            if any(_non_finite(x) for x in (v if isinstance(v, list) else [v])):
                p.append((f"when.{ref}", "must be a finite number (JSON has no NaN or Infinity)"))
        _raise(p)
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) of a float or int parameter (the model refuses one without them)."""
        if self.low is None or self.high is None:
            raise ValueError(f"{self.name} is a {self.type} parameter: it has no low and high")
        return self.low, self.high

    def refuses(self, value: Scalar) -> str | None:
        """Why a trial of this search space cannot have ``value`` for this parameter (None: it can)."""
        if self.type == "categorical":
            return None if value in (self.choices or []) else f"{value!r} is not one of {self.name}'s choices"
        if self.type == "fixed":
            return None if value == self.value else f"{self.name} is fixed at {self.value!r}, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"must be a finite number ({self.name} is a {self.type} parameter), got {value!r}"
        if self.type == "int" and not float(value).is_integer():
            return f"must be an integer ({self.name} is an int parameter), got {value!r}"
        low, high = self.bounds
        if not low <= value <= high:
            return f"must be within {self.name}'s range [{self.low}, {self.high}], got {value!r}"
        return None


# ----------------------------------------------------------------------------- trial
#: What a trial gets when its template names no resources at all.
DEFAULT_REQUESTS: Final = {"cpu": "1", "memory": "1Gi"}
DEFAULT_LIMITS: Final = {"cpu": "1", "memory": "2Gi"}
_QUANTITY_SUFFIX: Final[dict[str, int | Decimal]] = {
    "": 1,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


_UNBOUNDED: Final = Context(prec=60, Emax=MAX_EMAX, Emin=MIN_EMIN)


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity (``500m`` -> 0.5, ``2Gi`` -> 2147483648).

    Raises:
        ValueError: not a quantity.
    """
    m = QUANTITY_RE.match(str(text))
    if not m:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number, suffix = str(text)[: m.start(2)] if m.group(2) else str(text), m.group(2) or ""
    if suffix.startswith("e"):
        # scaleb in a context without practical bounds: "0e1000000" is a quantity (zero), and 10**1000000
        # would raise decimal.Overflow out of validation in the default context (found by the fuzz test).
        return Decimal(number).scaleb(int(suffix[1:]), context=_UNBOUNDED)
    return Decimal(number) * Decimal(_QUANTITY_SUFFIX[suffix])


class Resources(_Model):
    """Requests and limits with the API server's semantics.

    Neither given: the defaults above. Only limits given: each request defaults to its limit
    (what the API server does, so limits ``cpu: 500m`` no longer gets a 1-CPU request above it).
    A request above its limit is refused, as the API server would refuse the pod. Extended
    resources (``nvidia.com/gpu``) pass through; as for the API server, they cannot be
    overcommitted: a request must equal its limit.
    """

    requests: dict[str, str] | None = None
    limits: dict[str, str] | None = None

    @model_validator(mode="after")
    def _check(self) -> Resources:
        p = [
            (f"{part}.{k}", f"must be a Kubernetes quantity such as 500m, 1, 2Gi; got {v!r}")
            for part in ("requests", "limits")
            for k, v in (getattr(self, part) or {}).items()
            if not QUANTITY_RE.match(str(v))
        ]
        if not p:
            requests, limits = self.effective()
            for k, limit in limits.items():
                if k in requests and parse_quantity(requests[k]) > parse_quantity(limit):
                    p.append((f"limits.{k}", f"must be >= requests.{k} ({requests[k]}), got {limit}"))
            for k in set(requests) | set(limits):
                if "/" in k and not k.startswith(("kubernetes.io/", "requests.")):
                    if k not in limits:
                        p.append((f"limits.{k}", f"an extended resource needs a limit (requests.{k} is {requests[k]})"))
                    elif k in requests and parse_quantity(requests[k]) != parse_quantity(limits[k]):
                        p.append((f"requests.{k}", f"must equal limits.{k} for an extended resource"))
        _raise(p)
        return self

    def effective(self) -> tuple[dict[str, str], dict[str, str]]:
        """(requests, limits) as the pod gets them."""
        if self.requests is None and self.limits is None:
            return dict(DEFAULT_REQUESTS), dict(DEFAULT_LIMITS)
        limits = dict(self.limits or {})
        requests = {**limits, **(self.requests or {})}
        return requests, limits


class EnvVar(_Model):
    name: str
    value: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not ENV_NAME_RE.match(v):
            raise ValueError("must be a valid environment variable name")
        if v.startswith(contract.RESERVED_ENV_PREFIXES):
            raise ValueError(f"{' and '.join(p + '*' for p in contract.RESERVED_ENV_PREFIXES)} are set by the operator")
        return v


class TrialTemplate(_Model):
    #: A built-in task of the trial runtime; mutually exclusive with ``command``.
    task: str | None = None
    #: Your own program (exec form, no shell); it receives the same environment.
    command: Annotated[list[str], Field(min_length=1)] | None = None
    #: Task settings, e.g. ``{dataset: ./corpus, model: ./checkpoint}``.
    task_settings: dict[str, Any] = Field(default_factory=dict)
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 10
    #: Ranks per trial, one pod (or local process) each.
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    #: What every rank's environment is made for: Horovod (HOROVOD_*, hvd.init() without horovodrun)
    #: or torchrun (MASTER_ADDR, RANK, WORLD_SIZE ...: a plain init_process_group()).
    launcher: Launcher = "horovod"
    image: Annotated[str, Field(min_length=1)] = "openautoglm/trial:0.1"
    resources: Resources = Field(default_factory=Resources)
    env: Annotated[list[EnvVar], Field(max_length=256)] = Field(default_factory=list)
    #: A trial running longer than this is stopped and counted as failed. Counted from the moment
    #: every rank of its run runs: time spent queued, gated or pulling images is not training time.
    timeout_seconds: Annotated[int, Field(ge=1)] | None = None
    #: A run with a rank not running this long after its launch gives back every pod and goes back
    #: to the queue (not failed, not a retry; repeated requeues back off); an image that cannot be
    #: pulled fails the trial with that reason instead.
    pending_timeout_seconds: Annotated[int, Field(ge=1, le=7 * 86400)] = DEFAULT_PENDING_TIMEOUT_SECONDS
    checkpoint: Checkpoint | None = None
    scheduling: Scheduling = Field(default_factory=Scheduling)
    #: How many times a failed trial is run again, with the same number, parameters and seed,
    #: before it counts as failed: a worker pod killed or evicted, a node lost, a rank crashing.
    #: Every rank of the failed attempt is stopped first (a lone Horovod rank cannot rejoin).
    retries: Annotated[int, Field(ge=0, le=10)] = 0
    #: A PodTemplateSpec overlay ``{metadata: {labels, annotations}, spec: {...}}`` merged under
    #: the fields the operator owns: volumes, the ``worker`` container's volumeMounts/env/envFrom,
    #: node placement, sidecars ... (checked by :mod:`openautoglm.podtemplate`).
    pod_template: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> TrialTemplate:
        p: list[tuple[str, str]] = []
        if (self.task is None) == (self.command is None):
            p.append(("task", "give exactly one of task (a built-in task) or command (your own program)"))
        names = [e.name for e in self.env]
        if len(set(names)) != len(names):
            p.append(("env", f"names must be unique, got {names}"))
        if self.launcher == "torchrun":
            p += [
                (f"env[{i}].name", f"{e.name} is set by the torchrun launcher")
                for i, e in enumerate(self.env)
                if e.name in contract.TORCHRUN_ENV or e.name.startswith(contract.TORCHELASTIC_PREFIX)
            ]
        distributed = self.task_settings.get("distributed") if self.task is not None else None
        if (
            distributed in LAUNCHER_OF and distributed != DISTRIBUTED_OF[self.launcher]
        ):  # other values: the task's check
            p.append(
                (
                    "taskSettings.distributed",
                    f"{distributed!r} needs trial.launcher: {LAUNCHER_OF[distributed]}"
                    f" (the launcher gives the ranks their environment); got launcher {self.launcher!r}",
                )
            )
        _raise(p)
        return self


# ----------------------------------------------------------------------------- metrics, storage
class PrometheusQuery(_Model):
    #: The Prometheus server's base URL. Unset: the operator's (OPENAUTOGLM_PROMETHEUS_URL); in a
    #: cluster one that is set must be on the operator's allow-list (OPENAUTOGLM_ALLOWED_PROMETHEUS_URLS).
    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=512)] | None = None
    #: PromQL template: exactly the placeholders ``{namespace}``, ``{job}``, ``{trial}`` and ``{metric}``
    #: are replaced (with ``{metric}`` it runs once per metric); any other brace pair that holds no
    #: label matcher is refused. Default: the trial gauge of the job's namespace, job and trial.
    query: Annotated[str, Field(min_length=1, max_length=promql.MAX_QUERY_LENGTH)] | None = None

    @field_validator("query")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None and (problems := promql.template_problems(v)):
            raise ValueError("; ".join(problems))
        return v


#: Katib's StdOut/File collector filter, widened to exponents and nan/inf (the trial contract's).
DEFAULT_METRIC_FILTER: Final = contract.DEFAULT_METRIC_FILTER


class Collector(_Model):
    """How the trial supervisor collects metrics from your program (``trial.command`` only)."""

    #: stdout: ``name=value`` lines your program prints (Katib's default) | file: text or JSON
    #: lines at ``path`` | prometheus: your program's own /metrics on ``port`` | push:
    #: ``openautoglm_trial.report(step, **metrics)`` | native: your program implements the whole
    #: trial contract itself (no supervisor).
    kind: Literal["stdout", "file", "prometheus", "push", "native"] = "stdout"
    #: Regex with two groups (name, value) for stdout and text files; default: Katib's, widened.
    filter: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    #: The file your program writes its metrics to (file kind).
    path: Annotated[str, Field(min_length=1)] | None = None
    #: text: ``name=value`` lines | json: one JSON object per line (file kind).
    format: Literal["text", "json"] = "text"
    #: Port of your program's /metrics (prometheus kind).
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    metrics_path: Annotated[str, Field(pattern=r"^/")] = "/metrics"
    #: A reported metric with this name is the step of the values reported with it; without
    #: it every report of the objective is one more step.
    step_metric: MetricName = "epoch"

    @model_validator(mode="after")
    def _check(self) -> Collector:
        p: list[tuple[str, str]] = []
        if self.filter is not None:
            if self.kind not in ("stdout", "file") or (self.kind == "file" and self.format == "json"):
                p.append(("filter", "only for the stdout collector and text files"))
            try:
                if re.compile(self.filter).groups < 2:
                    p.append(("filter", "needs two groups: the metric name and its value"))
            except re.error as err:
                p.append(("filter", f"not a valid regular expression: {err}"))
        if self.kind == "file" and self.path is None:
            p.append(("path", "required for the file collector: the file your program writes"))
        if self.kind != "file" and self.path is not None:
            p.append(("path", f"only for the file collector, not {self.kind}"))
        if self.kind == "prometheus" and self.port is None:
            p.append(("port", "required for the prometheus collector: the port of your program's /metrics"))
        if self.kind != "prometheus" and self.port is not None:
            p.append(("port", f"only for the prometheus collector, not {self.kind}"))
        _raise(p)
        return self


#: The kinds a TuningJob may name: the trial supervisor's collectors (tests/unit/test_registry.py), and native.
COLLECTOR_KINDS: Final = get_args(Collector.model_fields["kind"].annotation)


class MetricsSource(_Model):
    source: Literal["scrape", "prometheus"] = "scrape"
    port: Annotated[int, Field(ge=1, le=65535)] = contract.DEFAULT_METRICS_PORT
    #: Seconds between two passes of the job (each lists its pods and reads its trials' metrics):
    #: at least 0.5, so that no job can make the shared operator spin.
    interval_seconds: Annotated[float, Field(ge=MIN_INTERVAL_SECONDS, le=3600)] = 5.0
    prometheus: PrometheusQuery | None = None
    #: How a ``trial.command`` program's metrics are collected; unset: stdout (as Katib).
    collector: Collector | None = None

    @model_validator(mode="after")
    def _check(self) -> MetricsSource:
        p: list[tuple[str, str]] = []
        if self.collector is not None and self.collector.port in (self.port, DEFAULT_RENDEZVOUS_PORT):
            p.append(
                (
                    "collector.port",
                    f"{self.collector.port} is taken by the trial supervisor "
                    f"(metrics port {self.port}, rendezvous {DEFAULT_RENDEZVOUS_PORT})",
                )
            )
        _raise(p)
        return self

    @property
    def effective_collector(self) -> Collector:
        return self.collector or Collector()


class SecretRef(_Model):
    #: A Secret in the TuningJob's namespace; its value must be a postgresql:// URL.
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_NAME_RE.pattern)]
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_RE.pattern)] = "url"


class JournalStorage(_Model):
    #: The journal's file name, inside the operator's studies directory for this namespace
    #: (``<studyDir>/<namespace>/``): a name, not a path, so that no job reaches another
    #: namespace's journals or a file outside the volume. Default: ``<job>-<uid>.journal``.
    path: Annotated[str, Field(max_length=128, pattern=JOURNAL_NAME_RE.pattern)] | None = None


class PostgresStorage(_Model):
    #: A database URL without a password (anyone who may read the TuningJob reads it): give
    #: credentials in a Secret (secretRef). In a cluster, its host must be on the operator's
    #: allow-list (OPENAUTOGLM_ALLOWED_POSTGRES_HOSTS).
    url: Annotated[str, Field(pattern=r"^postgresql(\+[a-z0-9]+)?://", max_length=1024)] | None = None
    secret_ref: SecretRef | None = None

    @model_validator(mode="after")
    def _check(self) -> PostgresStorage:
        p: list[tuple[str, str]] = []
        if (self.url is None) == (self.secret_ref is None):
            p.append(("url", "give exactly one of url or secretRef"))
        if self.url is not None and URL_PASSWORD_RE.search(self.url):
            p.append(
                (
                    "url",
                    "holds a password, which everyone who may read this TuningJob would see: "
                    "put the URL in a Secret and name it in secretRef",
                )
            )
        _raise(p)
        return self


class Storage(_Model):
    journal: JournalStorage | None = None
    postgres: PostgresStorage | None = None

    @model_validator(mode="after")
    def _check(self) -> Storage:
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
    def _check(self) -> TuningJobSpec:
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
            p.append(
                ("earlyStopping.pruner", "pruning supports a single objective only; use none with several objectives")
            )
        for i, ws in enumerate(self.warm_start):
            for k, v in ws.params.items():
                if k not in by_name:
                    p.append((f"warmStart[{i}].params.{k}", "is not a parameter of the search space"))
                elif why := by_name[k][1].refuses(v):
                    # Optuna fails the first ask on such a value (a categorical) or runs it outside the space.
                    p.append((f"warmStart[{i}].params.{k}", why))
        if self.algorithm.sampler == "grid":
            # Optuna's grid sampler cannot complete a partial point (it fails the trial's every ask).
            for i, ws in enumerate(self.warm_start):
                if missing := [q.name for q in self.parameters if q.type != "fixed" and q.name not in ws.params]:
                    p.append(
                        (f"warmStart[{i}].params", f"the grid sampler needs every parameter here; missing: {missing}")
                    )
            if self.algorithm.start_from_defaults:
                p.append(
                    (
                        "algorithm.startFromDefaults",
                        "not with the grid sampler: it visits every point in its own order "
                        "(give the defaults as a complete warmStart entry to run them first)",
                    )
                )
        if self.trial.task is not None and self.metrics.collector is not None:
            p.append(("metrics.collector", "only for trial.command: built-in tasks report their metrics themselves"))
        if self.algorithm.start_from_defaults and self.trial.task is None:
            p.append(
                (
                    "algorithm.startFromDefaults",
                    "only for a built-in task (trial.task): a program's defaults are not known here; "
                    "give them as a warmStart entry",
                )
            )
        for i, item in enumerate(self.trial.command or []):
            for ref in contract.placeholders(item):
                if ref not in by_name:
                    p.append(
                        (
                            f"trial.command[{i}]",
                            f"${{trialParameters.{ref}}} names no parameter; parameters: {sorted(by_name)}",
                        )
                    )
        for i, item in enumerate(self.trial.command or []):
            if contract.CHECKPOINT_PLACEHOLDER in item and self.trial.checkpoint is None:
                p.append((f"trial.command[{i}]", f"{contract.CHECKPOINT_PLACEHOLDER} needs trial.checkpoint"))
        if self.trial.command is not None and self.metrics.effective_collector.kind == "native":
            substituted = (
                contract.PLACEHOLDER.search(i) or contract.CHECKPOINT_PLACEHOLDER in i for i in self.trial.command
            )
            if any(substituted):
                p.append(
                    (
                        "trial.command",
                        "${trialParameters.*} and ${trial.checkpointDir} need the trial supervisor; the native "
                        "collector runs your program as is (read OPENAUTOGLM_TRIAL_PARAMS)",
                    )
                )
        _raise(p)
        return self


def starts_from_defaults(spec: TuningJobSpec) -> bool:
    """Whether the study's first trial is the built-in task's default configuration."""
    if spec.algorithm.start_from_defaults is not None:
        return spec.algorithm.start_from_defaults and spec.trial.task is not None
    return spec.trial.task is not None and sampler_name(spec) != "grid"


def sampler_name(spec: TuningJobSpec) -> str:
    """The sampler a job uses: the one it names, else ``auto`` (GP, then TPE; one objective) or
    NSGA-II (several)."""
    if spec.algorithm.sampler:
        return spec.algorithm.sampler
    return "nsga2" if spec.objective.is_multi else "auto"


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
    # mypy takes no names in Literal[] (pydantic reads the value): the one place the version is spelt stays.
    api_version: Literal[API_VERSION] = Field(alias="apiVersion")  # type: ignore[valid-type]
    kind: Literal["TuningJob"]
    metadata: Metadata
    spec: TuningJobSpec
    # A TuningJob read back from a cluster carries its status; the engine ignores it.
    status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.metadata.name
