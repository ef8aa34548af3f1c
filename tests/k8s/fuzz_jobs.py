"""Hypothesis strategies for TuningJobs: from the CRD's own openAPIV3Schema (generated from the
model in spec.py), plausible jobs built from its enums and bounds, and mutations of those.

Used by test_fuzz.py. Everything is read from the committed CRD file (through the harness's
admission module), so a field added to the model is fuzzed without a change here.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import random
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import admission
from hypothesis import strategies as st

from openautoglm.pruners import PRUNERS
from openautoglm.samplers import SAMPLERS
from openautoglm.spec import API_VERSION, KIND, MAX_NAME_LENGTH
from openautoglm_trial.tasks import TASKS

ROOT: Final = Path(__file__).resolve().parents[2]
TOY: Final = str(ROOT / "tests" / "engine" / "toy_trial.py")
SCHEMA: Final = admission.schema()
SPEC: Final = SCHEMA["properties"]["spec"]
POD_TEMPLATE: Final = "spec.trial.podTemplate"

Path_ = tuple[str | int, ...]

# ----------------------------------------------------------------------------- leaves
#: Text as users (and copy-paste) produce it: any code point but lone surrogates (no JSON/YAML for them).
TEXT: Final = st.text(st.characters(codec="utf-8"), max_size=12)
SCALARS: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    TEXT,
)
VALUES: Final = SCALARS.filter(lambda v: v is not None)
CHOICES: Final = st.lists(VALUES, min_size=1, max_size=4, unique_by=repr)
COMMANDS: Final = st.lists(TEXT.filter(bool), min_size=1, max_size=3)
JSONISH: Final = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6
)


def node(path: str) -> dict[str, Any]:
    """The schema node at ``spec.parameters[].name`` (``[]`` an item, ``{}`` a map value)."""
    n = SCHEMA
    for part in filter(None, path.split(".")):
        name = part.rstrip("[]{}")
        n = n["properties"][name]
        for suffix in re.findall(r"\[\]|\{\}", part):
            n = n["items"] if suffix == "[]" else n["additionalProperties"]
    return n


def _number_bounds(s: dict[str, Any], integer: bool) -> tuple[float, float, bool]:
    low = s.get("minimum", -1e6)
    high = s.get("maximum", 1e6 if "minimum" not in s else low + 1e6)
    return low, high, bool(s.get("exclusiveMinimum"))


def from_schema(s: dict[str, Any], path: str = "", depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of the shape an openAPIV3Schema node describes: types, enums, bounds, patterns,
    required fields, list-map keys. Cross-field rules are not followed (that is the point)."""
    if path == POD_TEMPLATE:
        return st.sampled_from(POD_TEMPLATES)
    if "enum" in s:
        return st.sampled_from(s["enum"])
    if s.get("x-kubernetes-int-or-string"):
        return st.integers(-100, 100) | TEXT
    t = s.get("type")
    if t is None:  # preserve-unknown-fields scalars (choices, value, when, warm-start params)
        return SCALARS if depth > 4 else st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
    if t == "boolean":
        return st.booleans()
    if t == "integer":
        low, high, exclusive = _number_bounds(s, True)
        return st.integers(int(low) + exclusive, int(high))
    if t == "number":
        low, high, exclusive = _number_bounds(s, False)
        return st.floats(low, high, exclude_min=exclusive, allow_nan=False, allow_infinity=False)
    if t == "string":
        most = min(s.get("maxLength", 24), 24)
        if "pattern" in s:
            return (
                st.from_regex(s["pattern"], fullmatch=True)
                .map(lambda v: v[:most])
                .filter(lambda v: len(v) >= s.get("minLength", 0) and re.search(s["pattern"], v))
            )
        return st.text(st.characters(codec="utf-8"), min_size=s.get("minLength", 0), max_size=most)
    if t == "array":
        items = from_schema(s["items"], path + "[]", depth + 1)
        keys = s.get("x-kubernetes-list-map-keys")
        unique_by: Callable[[Any], Any] | None = None
        if keys:
            unique_by = lambda item: str([item.get(k) for k in keys])  # noqa: E731
        elif s.get("x-kubernetes-list-type") == "set":
            unique_by = repr
        low = s.get("minItems", 0)
        return st.lists(items, min_size=low, max_size=max(low, min(s.get("maxItems", 3), 3)), unique_by=unique_by)
    if t == "object":
        props = s.get("properties")
        if props:
            required = set(s.get("required", []))
            strategies = {k: from_schema(v, f"{path}.{k}", depth + 1) for k, v in props.items()}
            return st.fixed_dictionaries(
                {k: v for k, v in strategies.items() if k in required},
                optional={k: v for k, v in strategies.items() if k not in required},
            )
        extra = s.get("additionalProperties")
        low = s.get("minProperties", 0)
        size = {"min_size": low, "max_size": max(low, min(s.get("maxProperties", 3), 3))}
        if isinstance(extra, dict):
            return st.dictionaries(TEXT.filter(bool), from_schema(extra, path + "{}", depth + 1), **size)
        return st.dictionaries(TEXT, JSONISH, **size)
    raise AssertionError(f"schema node of unknown type at {path}: {s}")


@functools.cache
def at(path: str) -> st.SearchStrategy[Any]:
    """The strategy of the schema node at ``path`` (built once: hypothesis validates each new strategy)."""
    return from_schema(node(path), path)


@functools.cache
def schema_jobs() -> st.SearchStrategy[dict[str, Any]]:
    """Whole documents straight from the schema: right shape, mostly wrong in combination."""
    return st.fixed_dictionaries(
        {
            "apiVersion": st.just(API_VERSION),
            "kind": st.just(KIND),
            "metadata": st.fixed_dictionaries({"name": names()}),
            "spec": from_schema(SPEC, "spec"),
        }
    )


@functools.cache
def names() -> st.SearchStrategy[str]:
    return st.from_regex(r"[a-z]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


# ----------------------------------------------------------------------------- pod templates
#: Small overlays, valid and not: the template's own schema is the Kubernetes Pod's (thousands of
#: nodes), fuzzed in depth by tests/unit/test_podtemplate.py; here it only rides along.
POD_TEMPLATES: Final[list[Any]] = [
    {"metadata": {"labels": {"team": "ml"}}},
    {"spec": {"nodeSelector": {"disk": "ssd"}}},
    {"spec": {"volumes": [{"name": "scratch", "emptyDir": {}}]}},
    {"spec": {"nodeSelector": ["gpu"]}},
    {"spec": {"hostNetwork": True}},
    {"spec": {"containers": [{"name": "worker", "command": ["sh"]}]}},
    {"spec": {"containers": [{"name": "side", "image": "busybox", "securityContext": {"privileged": True}}]}},
    {"metadata": {"labels": {"openautoglm.io/job": "x"}}},
    {"spec": {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}},
    {"spec": {"tolerations": "all"}},
]


# ----------------------------------------------------------------------------- plausible jobs
@functools.cache
def _metric_names(task: str | None = None) -> st.SearchStrategy[str]:
    if task is not None:
        return st.sampled_from(TASKS[task].metrics)
    return st.sampled_from(("score", "cost", "accuracy", "loss", "val-loss", "f1.macro")) | at("spec.objective.metric")


def _numeric_parameter(draw: Any, rnd: random.Random, name: str, kind: str) -> dict[str, Any]:
    if kind == "int":
        low = draw(st.integers(-1000, 1000))
        high = low + draw(st.integers(1, 1000))
        p: dict[str, Any] = {"name": name, "type": "int", "low": low, "high": high}
        if low > 0 and rnd.random() < 0.5:
            p["log"] = True
        elif rnd.random() < 0.5:
            p["step"] = rnd.randint(1, high - low)
        return p
    log = rnd.random() < 0.5
    low = draw(st.floats(1e-6, 10.0) if log else st.floats(-100.0, 100.0))
    high = low + draw(st.floats(1e-3, 1000.0))
    p = {"name": name, "type": "float", "low": low, "high": high}
    if log:
        p["log"] = True
    elif rnd.random() < 1 / 4:
        p["step"] = (high - low) * draw(st.floats(1e-9, 1.0))
    return p


@functools.cache
def _parameter_names() -> st.SearchStrategy[list[str]]:
    return st.lists(
        st.sampled_from(("x", "mode", "epoch_seconds")) | at("spec.parameters[].name"),
        min_size=1,
        max_size=5,
        unique=True,
    )


def _own_parameters(draw: Any, rnd: random.Random) -> list[dict[str, Any]]:
    """A search space for a trial.command: unique names, coherent ranges, a `when` or two."""
    names_ = draw(_parameter_names())
    params: list[dict[str, Any]] = []
    for name in names_:
        kind = rnd.choice(node("spec.parameters[].type")["enum"])
        if name == "x":
            p = {"name": "x", "type": "float", "low": 0.0, "high": 1.0}
        elif name == "mode":
            p = {"name": "mode", "type": "categorical", "choices": rnd.choice([["ok"], ["ok", "fail"]])}
        elif name == "epoch_seconds":
            p = {"name": name, "type": "fixed", "value": 0.05}
        elif kind in ("float", "int"):
            p = _numeric_parameter(draw, rnd, name, kind)
        elif kind == "categorical":
            choices = draw(CHOICES)
            p = {"name": name, "type": "categorical", "choices": choices}
        else:
            p = {"name": name, "type": "fixed", "value": draw(VALUES)}
        conditions = [q for q in params if q["type"] == "categorical"]
        if conditions and rnd.random() < 1 / 4:
            q = rnd.choice(conditions)
            p["when"] = {q["name"]: rnd.choice(q["choices"])}
        params.append(p)
    return params


def _task_parameters(rnd: random.Random, task: Any) -> list[dict[str, Any]]:
    """A built-in task's own search space entries (a subset, in order), within its bounds."""
    chosen = [h for h in task.hyperparameters if h.space is not None and rnd.random() < 0.5]
    if not chosen:
        chosen = [next(h for h in task.hyperparameters if h.space is not None)]
    params: list[dict[str, Any]] = []
    for h in chosen:
        p = {"name": h.name, **copy.deepcopy(dict(h.space))}
        when = p.get("when") or {}
        if any(k not in [q["name"] for q in params] for k in when):
            p.pop("when")
        params.append(p)
    return params


@st.composite
def plausible_jobs(draw: Any, cheap: bool = False) -> dict[str, Any]:
    """A job a user could mean: sections coherent with each other, values from the schema's enums
    and within its bounds. ``cheap``: a trial.command job of the toy trial (one worker, short) that
    the emulated cluster runs in well under a second, and no storage of its own."""
    # Choices come from a seeded Random (uniform), values from hypothesis (which favours edges).
    rnd = draw(st.randoms(use_true_random=True))
    use_task = not cheap and rnd.random() < 1 / 3
    task = TASKS[rnd.choice(sorted(TASKS))] if use_task else None
    multi = rnd.random() < 1 / 5
    metric = _metric_names(task.name if task else None)
    if multi:
        chosen = draw(st.lists(metric, min_size=2, max_size=3, unique=True))
        objective: dict[str, Any] = {
            "metrics": [{"metric": m, "direction": rnd.choice(["maximize", "minimize"])} for m in chosen]
        }
        names_ = chosen
    else:
        m = "score" if cheap and rnd.random() < 0.5 else draw(metric)
        objective = {"metric": m, "direction": rnd.choice(["maximize", "minimize"])}
        names_ = [m]
        if rnd.random() < 1 / 4:
            objective["target"] = draw(st.floats(-10.0, 10.0))
    if rnd.random() < 1 / 4:
        extra = draw(st.lists(metric, max_size=2, unique=True))
        objective["additionalMetrics"] = [m for m in extra if m not in names_]
        names_ += objective["additionalMetrics"]
    if rnd.random() < 1 / 4:
        objective["metricStrategies"] = {rnd.choice(names_): rnd.choice(["min", "max", "latest"])}
    if rnd.random() < 0.5:
        objective["strategy"] = rnd.choice(node("spec.objective.strategy")["enum"])

    if cheap:
        max_trials = draw(st.integers(1, 3))
        budget = {"maxTrials": max_trials, "parallelism": draw(st.integers(1, min(2, max_trials)))}
    else:
        max_trials = draw(at("spec.budget.maxTrials"))
        parallelism = node("spec.budget.parallelism")
        budget = {"maxTrials": max_trials, "parallelism": draw(st.integers(1, min(max_trials, parallelism["maximum"])))}
    if rnd.random() < 0.5:
        budget["maxFailedTrials"] = draw(st.integers(0, 5))
    if rnd.random() < 1 / 4:
        budget["timeoutSeconds"] = draw(st.integers(1, 10**6))

    samplers = [n for n in node("spec.algorithm.sampler")["enum"] if SAMPLERS[n].multi_objective or not multi]
    algorithm: dict[str, Any] = {}
    if rnd.random() < 0.5:
        algorithm["sampler"] = rnd.choice(samplers)
        allowed = sorted(SAMPLERS[algorithm["sampler"]].settings)
        if allowed and rnd.random() < 1 / 4:
            algorithm["settings"] = {
                k: draw(SCALARS) for k in rnd.sample(allowed, rnd.randint(1, min(2, len(allowed))))
            }
    if rnd.random() < 0.5:
        algorithm["seed"] = draw(at("spec.algorithm.seed"))
    if task and rnd.random() < 1 / 4:
        algorithm["startFromDefaults"] = rnd.random() < 0.5

    early: dict[str, Any] = {}
    if not multi and rnd.random() < 0.5:
        early["pruner"] = rnd.choice(node("spec.earlyStopping.pruner")["enum"])
        allowed = sorted(PRUNERS[early["pruner"]].settings)
        if allowed and rnd.random() < 1 / 3:
            early["settings"] = {k: draw(SCALARS) for k in rnd.sample(allowed, rnd.randint(1, min(2, len(allowed))))}
    for key in ("maxGradNorm", "patience", "minDelta"):
        if rnd.random() < 1 / 5:
            early[key] = draw(at(f"spec.earlyStopping.{key}"))

    parameters = _task_parameters(rnd, task) if task else _own_parameters(draw, rnd)
    trial: dict[str, Any]
    if task:
        trial = {"task": task.name, "epochs": draw(st.integers(1, 50)), "workers": draw(st.integers(1, 4))}
    else:
        command = [sys.executable, TOY]
        if not cheap and rnd.random() < 0.5:
            command = draw(COMMANDS)
        if rnd.random() < 1 / 4:
            command.append(f"--{parameters[0]['name']}=${{trialParameters.{parameters[0]['name']}}}")
        trial = {"command": command, "epochs": draw(st.integers(1, 2) if cheap else st.integers(1, 50))}
        trial["workers"] = draw(st.integers(1, 2) if cheap else st.integers(1, 8))
    if rnd.random() < 1 / 4:
        cpu = rnd.choice(["250m", "500m", "1", "2"])
        trial["resources"] = rnd.choice(
            [{"limits": {"cpu": cpu}}, {"requests": {"cpu": "100m"}, "limits": {"cpu": cpu, "memory": "1Gi"}}]
        )
    if rnd.random() < 1 / 5:
        trial["env"] = [{"name": "DATA_DIR", "value": draw(TEXT)}]
    if rnd.random() < 1 / 6:
        trial["timeoutSeconds"] = draw(st.integers(30, 3600))
    if rnd.random() < 1 / 7:
        trial["podTemplate"] = copy.deepcopy(rnd.choice(POD_TEMPLATES[:3]))

    metrics_: dict[str, Any] = {"intervalSeconds": 0.5} if cheap else {}
    if not task:
        kinds = ["native"] if cheap else node("spec.metrics.collector.kind")["enum"]
        kind = rnd.choice(kinds)
        collector: dict[str, Any] = {"kind": kind}
        if kind == "file":
            collector["path"] = "/tmp/metrics.jsonl"
            collector["format"] = rnd.choice(["text", "json"])
        elif kind == "prometheus":
            collector["port"] = draw(st.integers(1024, 9000))
        elif kind == "stdout" and rnd.random() < 0.5:
            collector["filter"] = rnd.choice([r"(\w+)=(\S+)", r"(\w+):\s*([-+.\deE]+)"])
        metrics_["collector"] = collector
    if not cheap and rnd.random() < 1 / 6:
        metrics_["source"] = "prometheus"
        metrics_["prometheus"] = {"url": "http://prometheus.monitoring:9090"}

    spec: dict[str, Any] = {"objective": objective, "parameters": parameters, "trial": trial}
    for key, section in (("budget", budget), ("algorithm", algorithm), ("earlyStopping", early), ("metrics", metrics_)):
        if section or rnd.random() < 0.5:
            spec[key] = section
    if not cheap and rnd.random() < 1 / 6:
        spec["storage"] = rnd.choice(
            [{}, {"journal": {"path": "/tmp/x.journal"}}, {"postgres": {"secretRef": {"name": "db"}}}]
        )
    if rnd.random() < 1 / 5:
        first = parameters[0]
        value = first.get("low", first.get("value", (first.get("choices") or [None])[0]))
        if value is not None:
            spec["warmStart"] = [{"params": {first["name"]: value}}]
    name = draw(names())
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}


# ----------------------------------------------------------------------------- mutations
def walk(value: Any, s: dict[str, Any] | None, path: Path_ = ()) -> Iterator[tuple[Path_, Any, dict[str, Any]]]:
    """Every node of a document with its schema node ({} where the schema says nothing)."""
    s = s or {}
    yield path, value, s
    if ".".join(map(str, path)).startswith("spec.trial.podTemplate"):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            sub = (s.get("properties") or {}).get(k)
            if sub is None and isinstance(s.get("additionalProperties"), dict):
                sub = s["additionalProperties"]
            yield from walk(v, sub, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, s.get("items"), (*path, i))


def _set(doc: dict[str, Any], path: Path_, value: Any) -> None:
    target: Any = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _delete(doc: dict[str, Any], path: Path_) -> None:
    target: Any = doc
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]


#: One strategy per JSON type: a mutation draws a value of another type than the field's.
OTHER_TYPES: Final = {
    str: st.sampled_from(("yes", "12", "1.5", "true", "null", "", "NaN", "[]")),
    int: st.integers(-5, 5),
    float: st.floats(-1.5, 1.5),
    bool: st.booleans(),
    list: st.lists(SCALARS, max_size=2),
    dict: st.dictionaries(TEXT, SCALARS, max_size=2),
}


def _other_type(draw: Any, rnd: random.Random, value: Any) -> Any:
    """A value of another JSON type than ``value`` (the API server's and pydantic's type errors)."""
    return draw(rnd.choice([s for kind, s in OTHER_TYPES.items() if kind is not type(value)]))


#: Bytes of JSON a mutated job may have (the emulated API server takes 1 MiB, kube-apiserver 3 MiB).
MAX_DOCUMENT: Final = 256 * 1024
NAN_LIKE: Final = [
    math.nan,
    math.inf,
    -math.inf,
    "NaN",
    "inf",
    "-Infinity",
    1e308 * 10,
    2**64,
    -(2**63) - 1,
    -0.0,
    1e-320,
]
BAD_NAMES: Final = [
    "",
    "A",
    "9lives",
    "job-",
    "-job",
    "job_name",
    "job.name",
    "jöb",
    "x" * (MAX_NAME_LENGTH + 1),
    "y" * 254,
    "job name",
    "ジョブ",
]
UNICODE: Final = ["\u202eevil", "a\u0000b", "😀", "\ufeffname", "e\u0301", "\u200b", "Ⅻ", "ǅ"]


def _out_of_range(s: dict[str, Any], value: Any) -> list[Any]:
    out: list[Any] = []
    if "minimum" in s:
        out.append(s["minimum"] if s.get("exclusiveMinimum") else s["minimum"] - 1)
    if "maximum" in s:
        out.append(s["maximum"] + 1)
    if "maxLength" in s:
        out.append("a" * (s["maxLength"] + 1))
    if "minLength" in s and s["minLength"] > 0:
        out.append("")
    if "pattern" in s:
        out += ["9starts-with-digit", "has space", "ünïcode", "", "-"]
    if "enum" in s:
        out += [str(s["enum"][0]).upper(), f" {s['enum'][0]}", "none-of-these"]
    if "maxItems" in s and isinstance(value, list) and value:
        out.append([copy.deepcopy(value[0]) for _ in range(s["maxItems"] + 1)])
    if "minItems" in s and s["minItems"] > 0:
        out.append([])
    if "minProperties" in s:
        out.append({})
    return out


#: Cross-field mistakes a user makes: (name, applies to the document?, edit).
def _cross_field(doc: dict[str, Any]) -> list[tuple[str, Callable[[dict[str, Any]], None]]]:
    spec = doc["spec"]
    out: list[tuple[str, Callable[[dict[str, Any]], None]]] = []
    params = spec.get("parameters") if isinstance(spec.get("parameters"), list) else []
    numeric = [i for i, p in enumerate(params) if isinstance(p, dict) and "low" in p and "high" in p]
    if numeric:
        i = numeric[0]
        out += [
            ("low>high", lambda d: d["spec"]["parameters"][i].update(low=params[i]["high"], high=params[i]["low"])),
            ("low==high", lambda d: d["spec"]["parameters"][i].update(high=params[i]["low"])),
            ("log-low<=0", lambda d: d["spec"]["parameters"][i].update(log=True, low=0)),
            ("step>range", lambda d: d["spec"]["parameters"][i].update(step=1e9)),
            ("int-fraction", lambda d: d["spec"]["parameters"][i].update(type="int", low=0.5)),
            ("choices-on-float", lambda d: d["spec"]["parameters"][i].update(choices=[1, 2])),
        ]
    if params:
        out += [
            ("duplicate-parameter", lambda d: d["spec"]["parameters"].append(copy.deepcopy(params[0]))),
            ("when-unknown", lambda d: d["spec"]["parameters"][0].update(when={"nowhere": "x"})),
            ("when-empty", lambda d: d["spec"]["parameters"][-1].update(when={})),
            ("when-map", lambda d: d["spec"]["parameters"][-1].update(when={"x": {"a": 1}})),
            ("when-list-of-maps", lambda d: d["spec"]["parameters"][-1].update(when={"x": [{"a": 1}]})),
            ("categorical-no-choices", lambda d: d["spec"]["parameters"][0].update(type="categorical")),
            ("fixed-no-value", lambda d: d["spec"]["parameters"][0].update(type="fixed")),
            ("choices-duplicate", lambda d: d["spec"]["parameters"][0].update(type="categorical", choices=[1, 1])),
            (
                "choices-nested",
                lambda d: d["spec"]["parameters"][0].update(type="categorical", choices=[[1], {"a": 2}]),
            ),
            ("warm-start-unknown", lambda d: d["spec"].update(warmStart=[{"params": {"nowhere": 1}}])),
            (
                "warm-start-map",
                lambda d: d["spec"].update(warmStart=[{"params": {params[0].get("name", "x"): {"a": 1}}}]),
            ),
            (
                "placeholder-unknown",
                lambda d: d["spec"].update(trial={"command": ["run", "${trialParameters.nowhere}"]}),
            ),
        ]
    out += [
        ("parallelism>maxTrials", lambda d: d["spec"].update(budget={"maxTrials": 2, "parallelism": 3})),
        (
            "target-with-metrics",
            lambda d: d["spec"].update(
                objective={
                    "metrics": [{"metric": "a", "direction": "maximize"}, {"metric": "b", "direction": "minimize"}],
                    "target": 1.0,
                }
            ),
        ),
        (
            "metric-and-metrics",
            lambda d: d["spec"]["objective"].update(
                metrics=[{"metric": "a", "direction": "maximize"}, {"metric": "a", "direction": "minimize"}]
            ),
        ),
        ("no-direction", lambda d: d["spec"].update(objective={"metric": "score"})),
        ("task-and-command", lambda d: d["spec"]["trial"].update(task="digits", command=["x"])),
        ("neither-task-nor-command", lambda d: d["spec"].update(trial={"epochs": 1})),
        (
            "collector-with-task",
            lambda d: d["spec"].update(trial={"task": "digits"}, metrics={"collector": {"kind": "stdout"}}),
        ),
        (
            "start-from-defaults-command",
            lambda d: d["spec"].update(trial={"command": ["x"]}, algorithm={"startFromDefaults": True}),
        ),
        (
            "pruner-with-several",
            lambda d: d["spec"].update(
                objective={
                    "metrics": [{"metric": "a", "direction": "maximize"}, {"metric": "b", "direction": "minimize"}]
                },
                earlyStopping={"pruner": "median"},
            ),
        ),
        ("reserved-env", lambda d: d["spec"]["trial"].update(env=[{"name": "OPENAUTOGLM_X", "value": "1"}])),
        (
            "duplicate-env",
            lambda d: d["spec"]["trial"].update(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        ),
        (
            "request>limit",
            lambda d: d["spec"]["trial"].update(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
        ),
        ("gpu-request-only", lambda d: d["spec"]["trial"].update(resources={"requests": {"nvidia.com/gpu": "1"}})),
        ("bad-quantity", lambda d: d["spec"]["trial"].update(resources={"limits": {"cpu": "one"}})),
        ("prometheus-no-query", lambda d: d["spec"].update(metrics={"source": "prometheus"})),
        (
            "collector-port-taken",
            lambda d: d["spec"].update(metrics={"collector": {"kind": "prometheus", "port": 9090}}),
        ),
        ("bad-filter", lambda d: d["spec"].update(metrics={"collector": {"kind": "stdout", "filter": "(unclosed"}})),
        ("two-storages", lambda d: d["spec"].update(storage={"journal": {}, "postgres": {"url": "postgresql://db"}})),
        ("unknown-sampler-setting", lambda d: d["spec"].update(algorithm={"sampler": "tpe", "settings": {"bogus": 1}})),
        (
            "sampler-setting-type",
            lambda d: d["spec"].update(algorithm={"sampler": "tpe", "settings": {"n_startup_trials": "ten"}}),
        ),
        (
            "pruner-setting-type",
            lambda d: d["spec"].update(earlyStopping={"pruner": "median", "settings": {"n_startup_trials": [1]}}),
        ),
        ("unknown-task", lambda d: d["spec"].update(trial={"task": "mnist"})),
        ("section-null", lambda d: d["spec"].update(budget=None, metrics=None)),
        ("spec-not-a-map", lambda d: d.update(spec=["objective"])),
        ("api-version", lambda d: d.update(apiVersion="openautoglm.io/v1")),
        ("kind", lambda d: d.update(kind="TuningJobs")),
    ]
    return out


def mutate(draw: Any, rnd: random.Random, doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """One to three mutations of ``doc``: (the mutated copy, what was done)."""
    doc = copy.deepcopy(doc)
    done: list[str] = []
    for _ in range(rnd.choice([1, 1, 1, 2, 2, 3])):
        if not isinstance(doc.get("spec"), dict):
            break
        before = copy.deepcopy(doc)
        kind = rnd.choice(
            [
                "wrong-type",
                "null",
                "drop",
                "unknown-field",
                "out-of-range",
                "nan-like",
                "huge-string",
                "unicode",
                "duplicate-item",
                "empty",
                "bad-name",
                "cross-field",
                "cross-field",
            ],
        )
        nodes = [(p, v, s) for p, v, s in walk(doc, SCHEMA) if p and p[0] in ("spec", "metadata")]
        if kind == "bad-name":
            doc["metadata"]["name"] = rnd.choice(BAD_NAMES)
        elif kind == "cross-field":
            label, edit = rnd.choice(_cross_field(doc))
            try:
                edit(doc)
            except (AttributeError, KeyError, IndexError, TypeError):
                continue  # the document no longer has the shape this edit expects
            kind = f"cross-field:{label}"
        else:
            candidates = {
                "wrong-type": nodes,
                "null": nodes,
                "drop": [n for n in nodes if len(n[0]) > 1],
                "unknown-field": [n for n in nodes if isinstance(n[1], dict) and n[2].get("properties")],
                "out-of-range": [n for n in nodes if _out_of_range(n[2], n[1])],
                "nan-like": [n for n in nodes if n[2].get("type") in ("number", "integer") or n[2].get("type") is None],
                "huge-string": [n for n in nodes if isinstance(n[1], str)],
                "unicode": [n for n in nodes if isinstance(n[1], str)],
                "duplicate-item": [n for n in nodes if isinstance(n[1], list) and n[1]],
                "empty": [n for n in nodes if isinstance(n[1], (list, dict, str))],
            }[kind]
            if not candidates:
                continue
            path, value, s = rnd.choice(candidates)
            if kind == "wrong-type":
                _set(doc, path, _other_type(draw, rnd, value))
            elif kind == "null":
                _set(doc, path, None)
            elif kind == "drop":
                _delete(doc, path)
            elif kind == "unknown-field":
                field = rnd.choice(["bogus", "maxtrials", "Name", "spec", "x-extra", "ünknown"])
                value[field] = draw(SCALARS)
            elif kind == "out-of-range":
                _set(doc, path, rnd.choice(_out_of_range(s, value)))
            elif kind == "nan-like":
                _set(doc, path, rnd.choice(NAN_LIKE))
            elif kind == "huge-string":
                _set(doc, path, rnd.choice(["a", "é", "9"]) * rnd.choice([64, 1025, 100_000]))
            elif kind == "unicode":
                _set(doc, path, value + rnd.choice(UNICODE))
            elif kind == "duplicate-item":
                value.append(copy.deepcopy(value[0]))
            elif kind == "empty":
                _set(doc, path, type(value)())
            kind = f"{kind}:{'.'.join(map(str, path))}"
        if len(json.dumps(doc, default=str)) > MAX_DOCUMENT:
            doc = before  # a huge string times a thousand items: past any API server's request limit
            continue
        done.append(kind)
    return doc, done


@st.composite
def _job(draw: Any, cheap: bool) -> tuple[str, dict[str, Any], list[str]]:
    """(origin, document, mutations): a fifth straight from the schema (not when ``cheap``), a
    quarter plausible jobs, the rest plausible jobs mutated."""
    rnd = draw(st.randoms(use_true_random=True))
    r = rnd.random()
    if r < 0.2 and not cheap:
        return "schema", draw(schema_jobs()), []
    doc = draw(_PLAUSIBLE[cheap])
    if r < 0.45:
        return "plausible", doc, []
    doc, done = mutate(draw, rnd, doc)
    return "mutated", doc, done


_PLAUSIBLE: Final = {False: plausible_jobs(cheap=False), True: plausible_jobs(cheap=True)}


def jobs(cheap: bool = False) -> st.SearchStrategy[tuple[str, dict[str, Any], list[str]]]:
    return _job(cheap)
