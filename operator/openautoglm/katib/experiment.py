"""The Experiment's own fields: metadata, objective, parameters (the search space), budget, resume.

Katib's defaults are the ones its defaulter writes (experiment_defaults.go): a parallelism of 3,
additional metrics judged by the objective's type, no limit on failed trials.
"""

from __future__ import annotations

from typing import Any, Final

from openautoglm.katib.findings import Findings
from openautoglm.katib.values import Bound, dns_name, integer, is_number, number, real
from openautoglm.spec import MAX_NAME_LENGTH, METRIC_NAME_RE, PARAM_NAME_RE

_DEFAULT_PARALLEL: Final = 3
_METRIC_NAME: Final = "is not a TuningJob metric name (letters, digits, '_', '-', '.'; at most 63)"


def metadata(meta: dict[str, Any], findings: Findings) -> dict[str, Any]:
    """The TuningJob's name (a DNS label derived from the Experiment's), namespace, labels, annotations."""
    out: dict[str, Any] = {}
    name = meta.get("name")
    if not name and meta.get("generateName"):
        name = str(meta["generateName"]).rstrip("-")
        findings.note(
            f"metadata.generateName {meta['generateName']!r}: a TuningJob needs a fixed name; named {dns_name(name)!r}"
        )
    if not name:
        findings.miss("metadata.name", "required: the Experiment has no name")
    else:
        new = dns_name(str(name))
        if new != name:
            findings.note(
                f"metadata.name {name!r} is not a DNS label of at most {MAX_NAME_LENGTH} characters "
                f"(it prefixes pod names): renamed {new!r}"
            )
        out["name"] = new
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    for key in ("labels", "annotations"):
        values = {
            k: v for k, v in (meta.get(key) or {}).items() if k != "kubectl.kubernetes.io/last-applied-configuration"
        }
        if values:
            out[key] = values
    return out


def _metric_name(name: Any) -> bool:
    return bool(METRIC_NAME_RE.match(str(name))) and len(str(name)) <= 63


def objective(obj: Any, findings: Findings) -> dict[str, Any]:
    """``spec.objective``: metric, direction, target, additional metrics and their strategies."""
    path = "spec.objective"
    out: dict[str, Any] = {}
    if not isinstance(obj, dict):
        findings.miss(path, "required: Katib needs an objective")
        return out
    metric = obj.get("objectiveMetricName")
    if not metric:
        findings.miss(f"{path}.objectiveMetricName", "required")
    elif not _metric_name(metric):
        findings.miss(f"{path}.objectiveMetricName", f"{metric!r} {_METRIC_NAME}")
    else:
        out["metric"] = metric
    kind = obj.get("type")
    if kind in ("minimize", "maximize"):
        out["direction"] = kind
    else:
        findings.miss(f"{path}.type", f"must be minimize or maximize, got {kind!r}")
    if obj.get("goal") is not None:
        target = findings.number(f"{path}.goal", obj["goal"], real)
        if target is not None:
            out["target"] = target
    additional: list[str] = []
    for i, name in enumerate(obj.get("additionalMetricNames") or []):
        if not _metric_name(name):
            findings.miss(f"{path}.additionalMetricNames[{i}]", f"{name!r} {_METRIC_NAME}")
        elif name != metric and name not in additional:
            additional.append(name)
    if additional:
        out["additionalMetrics"] = additional
    strategies = _strategies(obj, metric, out.get("metric"), additional, path, findings)
    # Katib's defaulter gives additional metrics min (minimize) or max (maximize), not latest.
    default = {"minimize": "min", "maximize": "max"}.get(str(kind))
    implicit = [m for m in additional if m not in strategies]
    if default and implicit:
        for m in implicit:
            strategies[m] = default
        findings.note(
            f"additional metrics {implicit} get Katib's default strategy {default!r} (its defaulter uses the "
            f"objective's type); the TuningJob default would be 'latest'"
        )
    if strategies:
        out["metricStrategies"] = strategies
    return out


def _strategies(
    obj: dict[str, Any], metric: Any, mapped: Any, additional: list[str], path: str, findings: Findings
) -> dict[str, str]:
    """``metricStrategies [{name, value}]`` as ``{name: value}`` for the metrics that map."""
    out: dict[str, str] = {}
    for i, s in enumerate(obj.get("metricStrategies") or []):
        name, value = (s or {}).get("name"), (s or {}).get("value")
        if value not in ("min", "max", "latest"):
            findings.miss(f"{path}.metricStrategies[{i}].value", f"must be min, max or latest, got {value!r}")
        elif name != mapped and name not in additional:
            if name == metric or name in (obj.get("additionalMetricNames") or []):
                continue  # the metric itself is unmapped, reported with it
            findings.miss(
                f"{path}.metricStrategies[{i}].name",
                f"{name!r} is neither the objective nor one of additionalMetricNames",
            )
        else:
            out[name] = value
    return out


def parameters(spec: dict[str, Any], findings: Findings) -> dict[str, dict[str, Any]]:
    """``spec.parameters``: Katib parameter name -> the TuningJob parameter, for those that map."""
    out: dict[str, dict[str, Any]] = {}
    raw = spec.get("parameters")
    if not raw:
        if "nasConfig" not in spec:
            findings.miss("spec.parameters", "a TuningJob needs at least one parameter")
        else:
            findings.miss("spec.parameters", "none: the search space of a NAS experiment is its nasConfig")
        return out
    for i, p in enumerate(raw):
        q = parameter(f"spec.parameters[{i}]", p or {}, findings)
        if q is not None:
            out[p["name"]] = q
    return out


def parameter(path: str, p: dict[str, Any], findings: Findings) -> dict[str, Any] | None:
    """One Katib parameter as a TuningJob parameter, or None when it does not map (reported)."""
    name = p.get("name")
    if not name or not PARAM_NAME_RE.match(str(name)) or len(str(name)) > 63:
        findings.miss(
            f"{path}.name",
            f"{name!r} is not a TuningJob parameter name "
            "(letters, digits, '_', '-', '.'; starting with a letter or '_')",
        )
        return None
    kind = p.get("parameterType")
    fs = p.get("feasibleSpace") or {}
    if kind in ("double", "int"):
        return _range(name, kind, fs, f"{path}.feasibleSpace", findings)
    if kind in ("categorical", "discrete"):
        return _choices(name, kind, fs, f"{path}.feasibleSpace", findings)
    findings.miss(f"{path}.parameterType", f"must be double, int, categorical or discrete, got {kind!r}")
    return None


def _range(name: str, kind: str, fs: dict[str, Any], fpath: str, findings: Findings) -> dict[str, Any] | None:
    """A ``double`` or ``int`` parameter: min, max, step and the distribution."""
    dist = fs.get("distribution") or "uniform"
    if fs.get("list"):
        findings.miss(f"{fpath}.list", f"not allowed for a {kind} parameter")
        return None
    parse = integer if kind == "int" else real
    try:
        low, high = parse(fs.get("min")), parse(fs.get("max"))
    except ValueError as err:
        findings.miss(
            f"{fpath}.min" if "min" not in fs or not is_number(fs.get("min"), kind) else f"{fpath}.max",
            f"a {kind} parameter needs numeric min and max: {err}",
        )
        return None
    if low > high:
        findings.miss(f"{fpath}.max", f"must be >= min ({fs.get('min')}), got {fs.get('max')}")
        return None
    if low == high:
        findings.note(f"parameter {name!r}: min = max = {low}: a fixed parameter")
        return {"name": name, "type": "fixed", "value": low}
    q: dict[str, Any] = {"name": name, "type": "float" if kind == "double" else "int", "low": low, "high": high}
    step = None
    if fs.get("step") not in (None, ""):
        step = findings.number(f"{fpath}.step", fs["step"], parse, Bound(above=0))
        if step is None:
            return None
        if step > high - low:
            findings.miss(f"{fpath}.step", f"must be <= max - min ({high - low}), got {fs['step']}")
            return None
    if dist in ("logUniform", "logNormal"):
        if low <= 0:
            findings.miss(f"{fpath}.distribution", f"{dist} needs min > 0, got {fs.get('min')}")
            return None
        q["log"] = True
        if step is not None and (kind == "double" or step != 1):
            findings.note(
                f"parameter {name!r}: step {fs['step']} dropped: a log-scale range cannot be "
                f"quantised (Katib's Optuna service drops it too; hyperopt's quantises)"
            )
            step = None
        if dist == "logNormal":
            findings.note(
                f"parameter {name!r}: logNormal approximated by log-uniform over [min, max] (Katib's "
                f"hyperopt service samples exp(N(mu, sigma)) with mu, sigma from log(min), log(max), "
                f"unbounded; its Optuna and goptuna services refuse or ignore the distribution)"
            )
    elif dist == "normal":
        findings.note(
            f"parameter {name!r}: normal approximated by uniform over [min, max] (Katib's hyperopt "
            f"service samples N((min+max)/2, (max-min)/6), unbounded; its Optuna and goptuna services "
            f"refuse or ignore the distribution)"
        )
    elif dist not in ("uniform", "unknown"):
        findings.miss(f"{fpath}.distribution", f"unknown distribution {dist!r}")
        return None
    if step is not None:
        q["step"] = step
    return q


def _choices(name: str, kind: str, fs: dict[str, Any], fpath: str, findings: Findings) -> dict[str, Any] | None:
    """A ``categorical`` (strings) or ``discrete`` (numbers) parameter: its list, without repeats."""
    for k in ("min", "max", "step"):
        if fs.get(k) not in (None, ""):
            findings.miss(f"{fpath}.{k}", f"not allowed for a {kind} parameter")
            return None
    values = fs.get("list") or []
    if not values:
        findings.miss(f"{fpath}.list", f"a {kind} parameter needs a non-empty list")
        return None
    if kind == "discrete":
        try:
            choices: list[Any] = [number(v) for v in values]
        except ValueError as err:
            findings.miss(f"{fpath}.list", f"a discrete parameter's values must be numbers: {err}")
            return None
    else:
        choices = [v if isinstance(v, str) else str(v) for v in values]
    unique: list[Any] = []
    for c in choices:
        if c not in unique:
            unique.append(c)
    dist = fs.get("distribution") or "uniform"
    if dist not in ("uniform", "unknown"):
        findings.note(f"parameter {name!r}: distribution {dist} ignored for a {kind} parameter (as Katib does)")
    return {"name": name, "type": "categorical", "choices": unique}


def budget(spec: dict[str, Any], findings: Findings) -> dict[str, Any]:
    """``maxTrialCount``, ``parallelTrialCount``, ``maxFailedTrialCount`` as ``spec.budget``."""
    out: dict[str, Any] = {}
    max_trials = None
    if spec.get("maxTrialCount") is not None:
        max_trials = findings.number("spec.maxTrialCount", spec["maxTrialCount"], integer, Bound(1, 100_000))
        if max_trials is not None:
            out["maxTrials"] = max_trials
    else:
        findings.note(
            "maxTrialCount unset: Katib runs trials until the goal is reached; budget.maxTrials is "
            "left at its default (10)"
        )
    effective_max = max_trials or 10
    parallel: int | None = _DEFAULT_PARALLEL
    if spec.get("parallelTrialCount") is not None:
        parallel = findings.number("spec.parallelTrialCount", spec["parallelTrialCount"], integer, Bound(low=1))
    else:
        findings.note(f"parallelTrialCount unset: Katib's default {_DEFAULT_PARALLEL}")
    parallel = 1 if parallel is None else parallel
    if parallel > effective_max:
        findings.note(f"parallelTrialCount {parallel} > maxTrialCount {effective_max}: parallelism {effective_max}")
        parallel = effective_max
    out["parallelism"] = min(parallel, 1000)
    failed = spec.get("maxFailedTrialCount")
    if failed is None:
        out["maxFailedTrials"] = effective_max
        findings.note(
            "maxFailedTrialCount unset: Katib never fails an experiment for failed trials; "
            f"maxFailedTrials {effective_max} (= maxTrials)"
        )
        return out
    n = findings.number("spec.maxFailedTrialCount", failed, integer, Bound(low=0))
    if n is None:
        return out
    out["maxFailedTrials"] = max(0, n - 1)
    if n == 0:
        findings.note(
            "maxFailedTrialCount 0: Katib fails the experiment at its first failed trial, as maxFailedTrials 0 does"
        )
    else:
        findings.note(
            f"maxFailedTrialCount {n}: Katib fails the experiment when {n} trials have failed, a "
            f"TuningJob when more than maxFailedTrials have: maxFailedTrials {n - 1}"
        )
    return out


def resume_policy(spec: dict[str, Any], findings: Findings) -> None:
    """``resumePolicy``: what Katib keeps of a finished experiment to continue it."""
    policy = spec.get("resumePolicy")
    if policy in (None, "", "Never"):
        return
    if policy in ("LongRunning", "FromVolume"):
        # Katib keeps the suggestion service (LongRunning) or its state on a volume (FromVolume) so
        # that a finished experiment can go on with a larger maxTrialCount. A TuningJob's study is
        # kept in its storage, and a finished job continues when its budget is raised.
        findings.note(
            f"resumePolicy {policy} dropped: the TuningJob's study is kept, and a finished TuningJob continues "
            "when its budget.maxTrials (or timeoutSeconds, maxFailedTrials) is raised; no policy is needed"
        )
    else:
        findings.miss("spec.resumePolicy", f"unknown policy {policy!r}")
