"""Convert a Katib Experiment (``kubeflow.org/v1beta1``) into the equivalent TuningJob.

:func:`convert` is a pure function: it returns the TuningJob as a plain document, every Katib
field it cannot map (with its path in the Experiment and why), and the approximations it made.
``openautoglm import-katib`` (:func:`main`) prints the TuningJob, or lists the unmappable fields
and exits 2; ``--lossy`` drops them instead.

Which Katib behaviour is the reference: the suggestion services of Katib at commit 33c8ff4
(``pkg/suggestion/v1beta1/{optuna,hyperopt,skopt,goptuna,hyperband}``), the median-stop service
(``pkg/earlystopping/v1beta1/medianstop``), the experiment defaulter and validator
(``pkg/apis/controller/experiments/v1beta1/experiment_defaults.go``,
``pkg/webhook/v1beta1/experiment/validator``). Where Katib runs an algorithm through several
services (``tpe`` is hyperopt's in the default KatibConfig, Optuna's in others), the settings of
all of them are understood. The mapping table is in README.md ("Coming from Kubeflow Katib").

The rule for a field that has no exact equivalent: if the TuningJob operator already provides what
the field is for (clean-up, success detection, which pod's metrics count, trial restarts of the
stored study...), it is dropped with a note; if it changes what is searched, how trials run or how
they are judged, it is *unmapped*.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import math
import posixpath
import re
import shlex
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import yaml

from openautoglm.spec import (
    API_VERSION,
    ENV_NAME_RE,
    KIND,
    MAX_NAME_LENGTH,
    METRIC_NAME_RE,
    PARAM_NAME_RE,
    QUANTITY_RE,
)

KATIB_API_VERSION: Final = "kubeflow.org/v1beta1"
#: ``${trialParameters.NAME}`` as Katib writes it (and as a TuningJob command item does).
_PLACEHOLDER: Final = re.compile(r"\$\{trialParameters\.([^}]*)\}")
#: The kubelet expands ``$(VAR)`` in a container's command and args (``$$(VAR)`` escapes it).
_KUBELET_VAR: Final = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
#: Katib's trial metadata substitutions: ``${trialSpec.Name}``, ``${trialSpec.Labels[k]}`` ...
_META_REF: Final = re.compile(r"^\$\{trialSpec\.(.+)\}$")
_RESERVED_ENV: Final = ("OPENAUTOGLM_", "HOROVOD_")
#: Katib's defaults (experiment_defaults.go, constants.go, the median-stop service).
_DEFAULT_PARALLEL: Final = 3
_DEFAULT_FILE_PATH: Final = "/var/log/katib/metrics.log"
_DEFAULT_PROMETHEUS_PORT: Final = 8080
_MEDIANSTOP_DEFAULTS: Final = {"min_trials_required": 3, "start_step": 4}
_JOB_CONDITIONS: Final = {
    ("batch/v1", "Job"): (
        'status.conditions.#(type=="Complete")#|#(status=="True")#',
        'status.conditions.#(type=="Failed")#|#(status=="True")#',
    ),
}
_KUBEFLOW_CONDITIONS: Final = (
    'status.conditions.#(type=="Succeeded")#|#(status=="True")#',
    'status.conditions.#(type=="Failed")#|#(status=="True")#',
)
#: What the trial supervisor and the operator take (spec.metrics.port, the rendezvous port).
_OPERATOR_PORTS: Final = (9090, 29400)


@dataclasses.dataclass
class Conversion:
    """The result of :func:`convert`.

    Attributes:
        job: the TuningJob document (camelCase, as a user writes it); without the unmapped fields.
        unmapped: ``(path in the Experiment, reason)`` for every field that cannot be mapped.
        notes: approximations and dropped fields whose meaning the operator already provides.
    """

    job: dict[str, Any]
    unmapped: list[tuple[str, str]]
    notes: list[str]

    @property
    def complete(self) -> bool:
        return not self.unmapped


class NotAnExperiment(ValueError):
    """The document is not a Katib Experiment."""


# ============================================================================= helpers
def _number(value: Any) -> int | float:
    """A Katib number (a string in the API, sometimes a YAML number): int when written as one."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, (int, float)):
        v: int | float = value
    else:
        text = str(value).strip()
        try:
            v = int(text)
        except ValueError:
            v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"not a finite number: {value!r}")
    return v


def _int(value: Any) -> int:
    v = _number(value)
    if v != int(v):
        raise ValueError(f"not an integer: {value!r}")
    return int(v)


def _dns_name(name: str) -> str:
    """A TuningJob name (DNS label, at most MAX_NAME_LENGTH characters) derived from ``name``."""
    out = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", name.lower())).strip("-")
    if not out or not out[0].isalpha():
        out = ("k-" + out).rstrip("-")
    if len(out) > MAX_NAME_LENGTH:
        # A hash of the full name keeps two long names with the same prefix apart.
        out = out[: MAX_NAME_LENGTH - 7].rstrip("-") + "-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return out


def _walk_strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _walk_strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_strings(v, f"{path}[{i}]")


# ============================================================================= shell command lines
_SHELLS: Final = {"sh", "bash", "dash", "ash", "ksh", "zsh"}
_MASK_OPEN, _MASK_CLOSE = "\ue000", "\ue001"


def shell_words(script: str) -> tuple[list[str] | None, str | None]:
    """Split a ``sh -c`` script into an argv when it is one simple command.

    Returns ``(argv, None)``, or ``(None, reason)`` when the script needs a shell: operators
    (``|``, ``&&``, ``;``, ``>``, ``<``, ``&``), several lines, expansions (``$VAR``, ``$(...)``,
    backquotes), globs, ``~``, comments, brace expansion or variable assignments. Katib's
    ``${trialParameters.X}`` placeholders are not expansions (Katib replaces them before the shell
    runs) and stay in the words.
    """
    placeholders: list[str] = []

    def _mask(m: re.Match[str]) -> str:
        placeholders.append(m.group(0))
        return f"{_MASK_OPEN}{len(placeholders) - 1}{_MASK_CLOSE}"

    masked = _PLACEHOLDER.sub(_mask, script.strip())
    if not masked:
        return None, "the shell script is empty"
    if re.match(r"[A-Za-z_][A-Za-z0-9_]*=", masked):
        return None, "a variable assignment (NAME=value)"
    quote = ""
    word_start = True
    clean: list[str] = []  # the script without line continuations (shlex keeps them as "\n")
    i = 0
    while i < len(masked):
        ch = masked[i]
        if ch == "\\" and quote != "'" and masked[i + 1 : i + 2] == "\n":
            i += 2
            word_start = not quote
            continue
        clean.append(ch)
        if quote == "'":
            if ch == "'":
                quote = ""
        elif quote == '"':
            if ch == "\\":
                clean.append(masked[i + 1 : i + 2])
                i += 1
            elif ch == '"':
                quote = ""
            elif ch == "$":
                return None, "a shell expansion ($...)"
            elif ch == "`":
                return None, "a command substitution (`...`)"
        else:
            if ch == "\\":
                clean.append(masked[i + 1 : i + 2])
                i += 1
            elif ch in "'\"":
                quote = ch
            elif ch == "$":
                return None, "a shell expansion ($...)"
            elif ch == "`":
                return None, "a command substitution (`...`)"
            elif ch in "|&;<>()":
                return None, f"the shell operator {ch!r}"
            elif ch == "\n":
                return None, "several command lines"
            elif ch in "*?[":
                return None, f"a glob pattern ({ch!r})"
            elif ch in "{}":
                return None, "brace expansion ({...})"
            elif ch == "~" and word_start:
                return None, "tilde expansion (~)"
            elif ch == "#" and word_start:
                return None, "a shell comment (#)"
        word_start = not quote and ch in " \t"
        i += 1
    if quote:
        return None, f"an unterminated {quote} quote"
    try:
        words = shlex.split("".join(clean), posix=True)
    except ValueError as err:
        return None, f"a line shlex cannot split ({err})"

    def _unmask(word: str) -> str:
        return re.sub(f"{_MASK_OPEN}(\\d+){_MASK_CLOSE}", lambda m: placeholders[int(m.group(1))], word)

    return [_unmask(w) for w in words], None


def _shell_invocation(argv: list[str]) -> tuple[str, list[str]] | None:
    """``(script, extra args)`` when argv is ``sh -c SCRIPT [ARG0 ...]`` (any usual shell), else None."""
    if len(argv) < 3 or posixpath.basename(argv[0]) not in _SHELLS:
        return None
    i, has_c = 1, False
    while i < len(argv) and re.fullmatch(r"-[ceuxvl]+", argv[i]):
        has_c = has_c or "c" in argv[i]
        i += 1
    if not has_c or i >= len(argv):
        return None
    return argv[i], argv[i + 1 :]


# ============================================================================= mpirun / horovodrun
_LAUNCHERS: Final = {"mpirun", "mpiexec", "orterun", "horovodrun"}
#: Options without an argument (Open MPI, MPICH/Hydra, horovodrun).
_MPI_FLAGS: Final = {
    "--allow-run-as-root",
    "-allow-run-as-root",
    "--oversubscribe",
    "-oversubscribe",
    "--tag-output",
    "-tag-output",
    "--timestamp-output",
    "-timestamp-output",
    "--report-bindings",
    "-report-bindings",
    "--display-map",
    "-display-map",
    "--display-allocation",
    "-display-allocation",
    "-v",
    "--verbose",
    "-q",
    "--quiet",
    "--noprefix",
    "--nolocal",
    "-nolocal",
    "--use-hwthread-cpus",
    "-use-hwthread-cpus",
    "--merge-stderr-to-stdout",
    "-merge-stderr-to-stdout",
    "--bind-to-core",
    "-bind-to-core",
    "--bind-to-socket",
    "-bind-to-socket",
    "--enable-recovery",
    "-l",
    "-prepend-rank",
    "--prepend-rank",
    "--gloo",
    "--mpi",
    "--tcp",
    "--disable-cache",
    "--elastic-timeout-disabled",
    "-print-all-exitcodes",
}
#: Options with one argument.
_MPI_ONE_ARG: Final = {
    "-np",
    "--np",
    "-n",
    "--n",
    "-c",
    "-N",
    "-npernode",
    "--npernode",
    "-npersocket",
    "--npersocket",
    "-H",
    "--host",
    "-host",
    "-hosts",
    "--hosts",
    "-hostfile",
    "--hostfile",
    "-machinefile",
    "--machinefile",
    "-bind-to",
    "--bind-to",
    "-map-by",
    "--map-by",
    "-rank-by",
    "--rank-by",
    "-x",
    "-wdir",
    "--wdir",
    "-wd",
    "--prefix",
    "-prefix",
    "-output-filename",
    "--output-filename",
    "-path",
    "--path",
    "-ppn",
    "-genvlist",
    "-launcher",
    "-iface",
    "-p",
    "--ssh-port",
    "-i",
    "--ssh-identity-file",
    "--start-timeout",
    "--network-interface",
    "--gloo-timeout-seconds",
    "--log-level",
    "--config-file",
    "--min-np",
    "--max-np",
    "--slots-per-host",
    "--slots",
    "--host-discovery-script",
    "--mpi-args",
    "-s",
}
#: Options with two arguments (``-mca KEY VALUE``, ``-genv NAME VALUE``).
_MPI_TWO_ARGS: Final = {"-mca", "--mca", "-gmca", "--gmca", "-env", "-genv"}


def strip_mpi_launcher(argv: list[str]) -> tuple[list[str] | None, dict[str, Any], str | None]:
    """Split ``mpirun [options] PROGRAM ARGS`` into PROGRAM ARGS and what the options said.

    Returns ``(program argv, info, None)`` or ``(None, info, reason)``; ``info`` has ``np``
    (int or None), ``env`` (``-x NAME=VALUE`` / ``-genv NAME VALUE``: name -> value) and
    ``forwarded`` (``-x NAME``: names forwarded from the launcher).
    """
    info: dict[str, Any] = {"np": None, "env": {}, "forwarded": [], "launcher": posixpath.basename(argv[0])}
    i = 1
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("-") or tok == "-":
            return argv[i:], info, None
        if tok == "--":
            if i + 1 < len(argv):
                return argv[i + 1 :], info, None
            return None, info, "no program after --"
        opt, eq, inline = tok.partition("=")
        if opt in _MPI_FLAGS and not eq:
            i += 1
            continue
        if opt in _MPI_ONE_ARG:
            value = inline if eq else (argv[i + 1] if i + 1 < len(argv) else None)
            if value is None:
                return None, info, f"{opt} has no value"
            if opt in ("-np", "--np", "-n", "--n", "-c"):
                try:
                    info["np"] = int(value)
                except ValueError:
                    pass
            elif opt == "-x":
                name, has_value, v = value.partition("=")
                if has_value:
                    info["env"][name] = v
                else:
                    info["forwarded"].append(name)
            i += 1 if eq else 2
            continue
        if opt in _MPI_TWO_ARGS and not eq:
            if i + 2 >= len(argv):
                return None, info, f"{opt} needs two values"
            if opt in ("-env", "-genv"):
                info["env"][argv[i + 1]] = argv[i + 2]
            i += 3
            continue
        return None, info, f"unknown {info['launcher']} option {tok!r} (cannot tell where the program starts)"
    return None, info, f"no program after the {info['launcher']} options"


# ============================================================================= the converter
class _Converter:
    def __init__(self, experiment: dict[str, Any]):
        self.exp = experiment
        self.spec: dict[str, Any] = experiment.get("spec") or {}
        self.unmapped: list[tuple[str, str]] = []
        self.notes: list[str] = []
        #: Katib parameter name -> our parameter (dict) for the ones that map.
        self.params: dict[str, dict[str, Any]] = {}
        #: trialParameters name -> Katib parameter name (reference), for the ones that map.
        self.trial_params: dict[str, str] = {}
        self.out_spec: dict[str, Any] = {}
        self.pruner: dict[str, Any] | None = None

    # --------------------------------------------------------------------- reporting
    def miss(self, path: str, reason: str) -> None:
        self.unmapped.append((path, reason))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # --------------------------------------------------------------------- top level
    def run(self) -> Conversion:
        known = {
            "parameters",
            "objective",
            "algorithm",
            "earlyStopping",
            "trialTemplate",
            "parallelTrialCount",
            "maxTrialCount",
            "maxFailedTrialCount",
            "metricsCollectorSpec",
            "nasConfig",
            "resumePolicy",
        }
        metadata = self._metadata()
        objective = self._objective()
        parameters = self._parameters()
        algorithm = self._algorithm()
        early = self._early_stopping()
        budget = self._budget()
        metrics = self._metrics()
        trial = self._trial()
        if "nasConfig" in self.spec:
            self.miss("spec.nasConfig", "not supported (neural architecture search)")
        self._resume_policy()
        for k in self.spec:
            if k not in known:
                self.miss(f"spec.{k}", "unknown Katib Experiment field")

        spec: dict[str, Any] = {"objective": objective, "budget": budget, "algorithm": algorithm}
        if early:
            spec["earlyStopping"] = early
        spec["parameters"] = parameters
        spec["trial"] = trial
        spec["metrics"] = metrics
        job = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
        return Conversion(job=job, unmapped=self.unmapped, notes=self.notes)

    def _metadata(self) -> dict[str, Any]:
        meta = self.exp.get("metadata") or {}
        out: dict[str, Any] = {}
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = str(meta["generateName"]).rstrip("-")
            self.note(
                f"metadata.generateName {meta['generateName']!r}: a TuningJob needs a fixed name; "
                f"named {_dns_name(name)!r}"
            )
        if not name:
            self.miss("metadata.name", "required: the Experiment has no name")
        else:
            new = _dns_name(str(name))
            if new != name:
                self.note(
                    f"metadata.name {name!r} is not a DNS label of at most {MAX_NAME_LENGTH} characters "
                    f"(it prefixes pod names): renamed {new!r}"
                )
            out["name"] = new
        if meta.get("namespace"):
            out["namespace"] = meta["namespace"]
        for key in ("labels", "annotations"):
            values = {
                k: v
                for k, v in (meta.get(key) or {}).items()
                if k != "kubectl.kubernetes.io/last-applied-configuration"
            }
            if values:
                out[key] = values
        return out

    # --------------------------------------------------------------------- objective
    def _objective(self) -> dict[str, Any]:
        obj = self.spec.get("objective")
        path = "spec.objective"
        out: dict[str, Any] = {}
        if not isinstance(obj, dict):
            self.miss(path, "required: Katib needs an objective")
            return out
        metric = obj.get("objectiveMetricName")
        if not metric:
            self.miss(f"{path}.objectiveMetricName", "required")
        elif not METRIC_NAME_RE.match(str(metric)) or len(str(metric)) > 63:
            self.miss(
                f"{path}.objectiveMetricName",
                f"{metric!r} is not a TuningJob metric name (letters, digits, '_', '-', '.'; at most 63)",
            )
        else:
            out["metric"] = metric
        kind = obj.get("type")
        if kind in ("minimize", "maximize"):
            out["direction"] = kind
        else:
            self.miss(f"{path}.type", f"must be minimize or maximize, got {kind!r}")
        if obj.get("goal") is not None:
            try:
                out["target"] = float(_number(obj["goal"]))
            except ValueError as err:
                self.miss(f"{path}.goal", str(err))
        additional: list[str] = []
        for i, name in enumerate(obj.get("additionalMetricNames") or []):
            if not METRIC_NAME_RE.match(str(name)) or len(str(name)) > 63:
                self.miss(
                    f"{path}.additionalMetricNames[{i}]",
                    f"{name!r} is not a TuningJob metric name (letters, digits, '_', '-', '.'; at most 63)",
                )
            elif name != metric and name not in additional:
                additional.append(name)
        if additional:
            out["additionalMetrics"] = additional
        strategies: dict[str, str] = {}
        for i, s in enumerate(obj.get("metricStrategies") or []):
            name, value = (s or {}).get("name"), (s or {}).get("value")
            if value not in ("min", "max", "latest"):
                self.miss(f"{path}.metricStrategies[{i}].value", f"must be min, max or latest, got {value!r}")
            elif name != out.get("metric") and name not in additional:
                if name == metric or name in (obj.get("additionalMetricNames") or []):
                    continue  # the metric itself is unmapped, reported above
                self.miss(
                    f"{path}.metricStrategies[{i}].name",
                    f"{name!r} is neither the objective nor one of additionalMetricNames",
                )
            else:
                strategies[name] = value
        # Katib's defaulter gives additional metrics min (minimize) or max (maximize), not latest.
        default = {"minimize": "min", "maximize": "max"}.get(kind)
        implicit = [m for m in additional if m not in strategies]
        if default and implicit:
            for m in implicit:
                strategies[m] = default
            self.note(
                f"additional metrics {implicit} get Katib's default strategy {default!r} (its defaulter uses the "
                f"objective's type); the TuningJob default would be 'latest'"
            )
        if strategies:
            out["metricStrategies"] = strategies
        return out

    # --------------------------------------------------------------------- parameters
    def _parameters(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        raw = self.spec.get("parameters")
        if not raw:
            if "nasConfig" not in self.spec:
                self.miss("spec.parameters", "a TuningJob needs at least one parameter")
            else:
                self.miss("spec.parameters", "none: the search space of a NAS experiment is its nasConfig")
            return out
        for i, p in enumerate(raw):
            q = self._parameter(i, p or {})
            if q is not None:
                out.append(q)
                self.params[p["name"]] = q
        return out

    def _parameter(self, i: int, p: dict[str, Any]) -> dict[str, Any] | None:
        path = f"spec.parameters[{i}]"
        name = p.get("name")
        if not name or not PARAM_NAME_RE.match(str(name)) or len(str(name)) > 63:
            self.miss(
                f"{path}.name",
                f"{name!r} is not a TuningJob parameter name "
                "(letters, digits, '_', '-', '.'; starting with a letter or '_')",
            )
            return None
        kind = p.get("parameterType")
        fs = p.get("feasibleSpace") or {}
        fpath = f"{path}.feasibleSpace"
        dist = fs.get("distribution") or "uniform"
        if kind in ("double", "int"):
            if fs.get("list"):
                self.miss(f"{fpath}.list", f"not allowed for a {kind} parameter")
                return None
            try:
                low, high = (
                    (_int(fs.get("min")), _int(fs.get("max")))
                    if kind == "int"
                    else (float(_number(fs.get("min"))), float(_number(fs.get("max"))))
                )
            except ValueError as err:
                self.miss(
                    f"{fpath}.min" if "min" not in fs or not _is_number(fs.get("min"), kind) else f"{fpath}.max",
                    f"a {kind} parameter needs numeric min and max: {err}",
                )
                return None
            if low > high:
                self.miss(f"{fpath}.max", f"must be >= min ({fs.get('min')}), got {fs.get('max')}")
                return None
            if low == high:
                self.note(f"parameter {name!r}: min = max = {low}: a fixed parameter")
                return {"name": name, "type": "fixed", "value": low}
            q: dict[str, Any] = {"name": name, "type": "float" if kind == "double" else "int", "low": low, "high": high}
            step = None
            if fs.get("step") not in (None, ""):
                try:
                    step = _int(fs["step"]) if kind == "int" else float(_number(fs["step"]))
                    if step <= 0:
                        raise ValueError(f"must be > 0, got {fs['step']}")
                    if step > high - low:
                        raise ValueError(f"must be <= max - min ({high - low}), got {fs['step']}")
                except ValueError as err:
                    self.miss(f"{fpath}.step", str(err))
                    return None
            if dist in ("logUniform", "logNormal"):
                if low <= 0:
                    self.miss(f"{fpath}.distribution", f"{dist} needs min > 0, got {fs.get('min')}")
                    return None
                q["log"] = True
                if step is not None and (kind == "double" or step != 1):
                    self.note(
                        f"parameter {name!r}: step {fs['step']} dropped: a log-scale range cannot be "
                        f"quantised (Katib's Optuna service drops it too; hyperopt's quantises)"
                    )
                    step = None
                if dist == "logNormal":
                    self.note(
                        f"parameter {name!r}: logNormal approximated by log-uniform over [min, max] (Katib's "
                        f"hyperopt service samples exp(N(mu, sigma)) with mu, sigma from log(min), log(max), "
                        f"unbounded; its Optuna and goptuna services refuse or ignore the distribution)"
                    )
            elif dist == "normal":
                self.note(
                    f"parameter {name!r}: normal approximated by uniform over [min, max] (Katib's hyperopt "
                    f"service samples N((min+max)/2, (max-min)/6), unbounded; its Optuna and goptuna services "
                    f"refuse or ignore the distribution)"
                )
            elif dist not in ("uniform", "unknown"):
                self.miss(f"{fpath}.distribution", f"unknown distribution {dist!r}")
                return None
            if step is not None:
                q["step"] = step
            return q
        if kind in ("categorical", "discrete"):
            for k in ("min", "max", "step"):
                if fs.get(k) not in (None, ""):
                    self.miss(f"{fpath}.{k}", f"not allowed for a {kind} parameter")
                    return None
            values = fs.get("list") or []
            if not values:
                self.miss(f"{fpath}.list", f"a {kind} parameter needs a non-empty list")
                return None
            if kind == "discrete":
                try:
                    choices: list[Any] = [_number(v) for v in values]
                except ValueError as err:
                    self.miss(f"{fpath}.list", f"a discrete parameter's values must be numbers: {err}")
                    return None
            else:
                choices = [v if isinstance(v, str) else str(v) for v in values]
            unique: list[Any] = []
            for c in choices:
                if c not in unique:
                    unique.append(c)
            if dist not in ("uniform", "unknown"):
                self.note(f"parameter {name!r}: distribution {dist} ignored for a {kind} parameter (as Katib does)")
            return {"name": name, "type": "categorical", "choices": unique}
        self.miss(f"{path}.parameterType", f"must be double, int, categorical or discrete, got {kind!r}")
        return None

    # --------------------------------------------------------------------- algorithm
    def _algorithm(self) -> dict[str, Any]:
        alg = self.spec.get("algorithm")
        path = "spec.algorithm"
        if not isinstance(alg, dict) or not alg.get("algorithmName"):
            self.miss(f"{path}.algorithmName", "required")
            return {}
        name = alg["algorithmName"]
        settings: list[tuple[int, str, Any]] = [
            (i, str((s or {}).get("name")), (s or {}).get("value"))
            for i, s in enumerate(alg.get("algorithmSettings") or [])
        ]
        out: dict[str, Any] = {}
        kw: dict[str, Any] = {}

        def bad(i: int, key: str, why: str) -> None:
            self.miss(f"{path}.algorithmSettings[{i}]", f"setting {key!r} of {name}: {why}")

        def seed(i: int, key: str, value: Any) -> None:
            try:
                v = _int(value)
                if not 0 <= v <= 2**32 - 1:
                    raise ValueError(f"must be in [0, 2^32 - 1], got {value}")
                out["seed"] = v
            except ValueError as err:
                bad(i, key, str(err))

        def integer(i: int, key: str, value: Any, target: str, minimum: int = 0) -> None:
            try:
                v = _int(value)
                if v < minimum:
                    raise ValueError(f"must be >= {minimum}, got {value}")
                kw[target] = v
            except ValueError as err:
                bad(i, key, str(err))

        if name in ("random", "grid"):
            out["sampler"] = name
            for i, key, value in settings:
                if key == "random_state":
                    seed(i, key, value)
                else:
                    bad(i, key, "no equivalent (Katib accepts only random_state)")
            if name == "grid":
                no_step = [p["name"] for p in self.params.values() if p["type"] == "float" and "step" not in p]
                if no_step:
                    self.note(
                        f"grid: {no_step} have no step; Katib's grid refuses that, the grid sampler tries "
                        f"5 evenly spaced values (algorithm.settings.points)"
                    )
        elif name in ("tpe", "multivariate-tpe"):
            out["sampler"] = "tpe"
            # Katib's Optuna service: TPESampler(multivariate=..., constant_liar=True, **settings).
            kw.update({"multivariate": name == "multivariate-tpe", "constant_liar": True})
            for i, key, value in settings:
                if key == "random_state":
                    seed(i, key, value)
                elif key == "n_startup_trials":
                    integer(i, key, value, "n_startup_trials")
                elif key in ("n_ei_candidates", "n_EI_candidates"):
                    integer(i, key, value, "n_ei_candidates", 1)
                elif key == "prior_weight":
                    try:
                        v = float(_number(value))
                        if v <= 0:
                            raise ValueError(f"must be > 0, got {value}")
                        kw["prior_weight"] = v
                    except ValueError as err:
                        bad(i, key, str(err))
                elif key == "gamma":
                    bad(
                        i,
                        key,
                        "hyperopt's gamma (a fraction of the trials) has no equivalent: Optuna's TPE "
                        "gamma is a function of the number of trials and not a setting",
                    )
                else:
                    bad(i, key, "unknown setting")
        elif name == "bayesianoptimization":
            out["sampler"] = "gp"
            for i, key, value in settings:
                if key == "random_state":
                    seed(i, key, value)
                elif key == "n_initial_points":
                    integer(i, key, value, "n_startup_trials")
                elif key == "base_estimator":
                    if value != "GP":
                        bad(i, key, f"{value!r}: only a Gaussian process (GP) is available")
                elif key == "acq_func":
                    if value in ("gp_hedge", "EI"):
                        self.note(
                            f"bayesianoptimization acq_func {value}: the gp sampler uses (log) expected improvement"
                        )
                    else:
                        bad(i, key, f"{value!r}: the gp sampler's acquisition function is (log) expected improvement")
                elif key == "acq_optimizer":
                    self.note(
                        f"bayesianoptimization acq_optimizer {value!r} dropped: the gp sampler optimises its "
                        f"acquisition function itself"
                    )
                else:
                    bad(i, key, "unknown setting")
            doubles = [p["name"] for p in self.params.values() if p["type"] == "float" and not p.get("log")]
            if doubles:
                self.note(
                    f"bayesianoptimization: Katib's skopt service samples every double on a log scale whatever "
                    f"its distribution; {doubles} keep the declared (uniform) scale (add log: true to reproduce)"
                )
        elif name == "cmaes":
            out["sampler"] = "cmaes"
            for i, key, value in settings:
                if key == "random_state":
                    seed(i, key, value)
                elif key == "sigma":
                    try:
                        v = float(_number(value))
                        if v <= 0:
                            raise ValueError(f"must be > 0, got {value}")
                        kw["sigma0"] = v
                    except ValueError as err:
                        bad(i, key, str(err))
                elif key == "restart_strategy":
                    if value in ("ipop", "bipop"):
                        # Optuna >= 4.4 accepts restart_strategy but ignores it (FutureWarning).
                        self.note(
                            f"cmaes restart_strategy {value} dropped: Optuna's CMA-ES no longer restarts "
                            "(since 4.4); restarts only follow a converged search, rare within a tuning budget"
                        )
                    elif value not in ("none", "None"):
                        bad(i, key, f"{value!r}: ipop, bipop or none")
                else:
                    bad(i, key, "unknown setting")
        elif name == "sobol":
            out["sampler"] = "qmc"
            kw["qmc_type"] = "sobol"
            for i, key, value in settings:
                if key == "random_state":
                    seed(i, key, value)
                else:
                    bad(i, key, "unknown setting (Katib's sobol has none)")
        elif name == "hyperband":
            out["sampler"] = "random"
            self._hyperband(settings, path)
        else:
            what = {
                "pbt": "population-based training (trials that resume from each other's checkpoints)",
                "enas": "neural architecture search",
                "darts": "neural architecture search",
            }.get(name)
            self.miss(f"{path}.algorithmName", f"{name!r} has no equivalent" + (f" ({what})" if what else ""))
            return out
        if kw:
            out["settings"] = kw
        return out

    def _hyperband(self, settings: list[tuple[int, str, Any]], path: str) -> None:
        """Katib's hyperband as random sampling + Optuna's HyperbandPruner.

        Katib runs brackets of new trials with growing values of the resource parameter (r_l at
        most); the pruner instead lets every trial run to r_l and stops it at rungs of its
        reported steps. The resource parameter therefore leaves the search space: fixed at r_l.
        """
        values = {key: (i, value) for i, key, value in settings}
        eta, r_l, resource = 3, None, None
        for i, key, value in settings:
            try:
                if key == "eta":
                    eta = int(float(_number(value)))
                    if eta < 2:
                        raise ValueError(f"must be >= 2, got {value}")
                elif key == "r_l":
                    r = float(_number(value))
                    if r < 1:
                        raise ValueError(f"must be >= 1, got {value}")
                    r_l = int(round(r))
                    if r_l != r:
                        self.note(
                            f"hyperband r_l {value} rounded to {r_l} (the pruner's max_resource is a number of steps)"
                        )
                elif key == "resource_name":
                    resource = str(value)
                elif key in ("b_l", "n", "r", "s_max", "current_s", "current_i", "evaluating_trials"):
                    self.note(
                        f"hyperband setting {key} dropped: Katib's bracket state; the pruner computes its brackets"
                    )
                else:
                    self.miss(f"{path}.algorithmSettings[{i}]", f"setting {key!r} of hyperband: unknown setting")
            except ValueError as err:
                self.miss(f"{path}.algorithmSettings[{i}]", f"setting {key!r} of hyperband: {err}")
        if r_l is None:
            self.miss(f"{path}.algorithmSettings", "hyperband needs r_l (the maximum resource)")
            return
        s_max = int(math.log(r_l) / math.log(eta) + 1e-9) if r_l > 1 else 0
        min_resource = max(1, int(round(r_l / eta**s_max)))
        self.pruner = {
            "pruner": "hyperband",
            "settings": {"min_resource": min_resource, "max_resource": r_l, "reduction_factor": eta},
        }
        self.out_spec["epochs"] = r_l
        if resource is None:
            self.miss(f"{path}.algorithmSettings", "hyperband needs resource_name")
            return
        p = self.params.get(resource)
        if p is None:
            i = values["resource_name"][0]
            self.miss(f"{path}.algorithmSettings[{i}]", f"resource_name {resource!r} names no (mappable) parameter")
            return
        value: Any = r_l if p["type"] in ("int", "fixed") else float(r_l)
        self.notes = [n for n in self.notes if not n.startswith(f"parameter {resource!r}: min = max")]
        p.clear()
        p.update({"name": resource, "type": "fixed", "value": value})
        self.note(
            f"hyperband (eta {eta}, r_l {r_l}) became random sampling with the hyperband pruner "
            f"(min_resource {min_resource}, max_resource {r_l}, reduction_factor {eta}): instead of starting "
            f"new trials with a larger {resource!r}, every trial runs {resource}={r_l} and is stopped at the "
            f"pruner's rungs; the trial must report the objective at every step (epoch), which is the resource"
        )
        self.note(
            f"parameter {resource!r} (hyperband's resource_name) removed from the search space: fixed at {value} (r_l)"
        )

    # --------------------------------------------------------------------- early stopping
    def _early_stopping(self) -> dict[str, Any]:
        es = self.spec.get("earlyStopping")
        path = "spec.earlyStopping"
        if not es:
            return dict(self.pruner) if self.pruner else {}
        name = es.get("algorithmName")
        if name != "medianstop":
            self.miss(f"{path}.algorithmName", f"{name!r} has no equivalent (medianstop maps to the median pruner)")
            return dict(self.pruner) if self.pruner else {}
        if self.pruner is not None:
            self.miss(path, "medianstop together with hyperband: a TuningJob has one pruner (hyperband's)")
            return dict(self.pruner)
        values = dict(_MEDIANSTOP_DEFAULTS)
        for i, s in enumerate(es.get("algorithmSettings") or []):
            key, value = (s or {}).get("name"), (s or {}).get("value")
            if key not in values:
                self.miss(f"{path}.algorithmSettings[{i}]", f"setting {key!r} of medianstop: unknown setting")
                continue
            try:
                v = _int(value)
                if v < 1:
                    raise ValueError(f"must be >= 1, got {value}")
                values[key] = v
            except ValueError as err:
                self.miss(f"{path}.algorithmSettings[{i}]", f"setting {key!r} of medianstop: {err}")
        self.note(
            f"medianstop (min_trials_required {values['min_trials_required']}, start_step "
            f"{values['start_step']}) became the median pruner (n_startup_trials, n_warmup_steps): Katib stops "
            f"a trial worse than the mean of the completed trials' averages over their first start_step "
            f"values; the median pruner compares with the median of the other trials at the same step"
        )
        return {
            "pruner": "median",
            "settings": {"n_startup_trials": values["min_trials_required"], "n_warmup_steps": values["start_step"]},
        }

    # --------------------------------------------------------------------- budget
    def _budget(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        max_trials = None
        if self.spec.get("maxTrialCount") is not None:
            try:
                max_trials = _int(self.spec["maxTrialCount"])
                if not 1 <= max_trials <= 100_000:
                    raise ValueError(f"must be in [1, 100000], got {max_trials}")
                out["maxTrials"] = max_trials
            except ValueError as err:
                self.miss("spec.maxTrialCount", str(err))
        else:
            self.note(
                "maxTrialCount unset: Katib runs trials until the goal is reached; budget.maxTrials is "
                "left at its default (10)"
            )
        effective_max = max_trials or 10
        parallel = _DEFAULT_PARALLEL
        if self.spec.get("parallelTrialCount") is not None:
            try:
                parallel = _int(self.spec["parallelTrialCount"])
                if parallel < 1:
                    raise ValueError(f"must be >= 1, got {parallel}")
            except ValueError as err:
                self.miss("spec.parallelTrialCount", str(err))
                parallel = 1
        else:
            self.note(f"parallelTrialCount unset: Katib's default {_DEFAULT_PARALLEL}")
        if parallel > effective_max:
            self.note(f"parallelTrialCount {parallel} > maxTrialCount {effective_max}: parallelism {effective_max}")
            parallel = effective_max
        out["parallelism"] = min(parallel, 1000)
        failed = self.spec.get("maxFailedTrialCount")
        if failed is None:
            out["maxFailedTrials"] = effective_max
            self.note(
                "maxFailedTrialCount unset: Katib never fails an experiment for failed trials; "
                f"maxFailedTrials {effective_max} (= maxTrials)"
            )
        else:
            try:
                n = _int(failed)
                if n < 0:
                    raise ValueError(f"must be >= 0, got {n}")
                out["maxFailedTrials"] = max(0, n - 1)
                if n == 0:
                    self.note(
                        "maxFailedTrialCount 0: Katib fails the experiment at its first failed trial, as "
                        "maxFailedTrials 0 does"
                    )
                else:
                    self.note(
                        f"maxFailedTrialCount {n}: Katib fails the experiment when {n} trials have failed, a "
                        f"TuningJob when more than maxFailedTrials have: maxFailedTrials {n - 1}"
                    )
            except ValueError as err:
                self.miss("spec.maxFailedTrialCount", str(err))
        return out

    # --------------------------------------------------------------------- metrics collector
    def _metrics(self) -> dict[str, Any]:
        mc = self.spec.get("metricsCollectorSpec") or {}
        path = "spec.metricsCollectorSpec"
        kind = ((mc.get("collector") or {}).get("kind")) or "StdOut"
        source = mc.get("source") or {}
        out: dict[str, Any] = {}
        collector: dict[str, Any] = {}
        if kind == "StdOut":
            collector["kind"] = "stdout"
            self._filter(source, path, collector)
            if source.get("fileSystemPath"):
                self.note("metricsCollectorSpec.source.fileSystemPath dropped: Katib's StdOut collector ignores it")
            if source.get("httpGet"):
                self.miss(f"{path}.source.httpGet", "only for the PrometheusMetric collector")
        elif kind == "File":
            fsp = source.get("fileSystemPath") or {}
            collector["kind"] = "file"
            if fsp.get("kind", "File") != "File":
                self.miss(
                    f"{path}.source.fileSystemPath.kind", f"{fsp.get('kind')!r}: the file collector reads one file"
                )
            collector["path"] = fsp.get("path") or _DEFAULT_FILE_PATH
            fmt = fsp.get("format") or "TEXT"
            if fmt not in ("TEXT", "JSON"):
                self.miss(f"{path}.source.fileSystemPath.format", f"must be TEXT or JSON, got {fmt!r}")
            else:
                collector["format"] = fmt.lower()
            if fmt == "JSON":
                if (source.get("filter") or {}).get("metricsFormat"):
                    self.miss(f"{path}.source.filter", "a filter does not apply to JSON files")
            else:
                self._filter(source, path, collector)
        elif kind == "PrometheusMetric":
            http = source.get("httpGet") or {}
            collector["kind"] = "prometheus"
            port = http.get("port", _DEFAULT_PROMETHEUS_PORT)
            try:
                collector["port"] = _int(port)
                if not 1 <= collector["port"] <= 65535:
                    raise ValueError
            except ValueError:
                self.miss(
                    f"{path}.source.httpGet.port",
                    f"{port!r}: the prometheus collector needs a port number (named ports are not resolved)",
                )
                collector.pop("port", None)
            collector["metricsPath"] = http.get("path") or "/metrics"
            for k in http:
                if k in ("port", "path"):
                    continue
                if k == "scheme" and str(http[k]).upper() == "HTTP":
                    continue
                self.miss(f"{path}.source.httpGet.{k}", "the prometheus collector reads plain HTTP from the pod itself")
            if collector.get("port") in _OPERATOR_PORTS:
                if collector["port"] == _OPERATOR_PORTS[0]:
                    out["port"] = 9091
                    self.note(
                        "your program's /metrics is on 9090, the trial supervisor's default metrics port: "
                        "spec.metrics.port moved to 9091"
                    )
                else:
                    self.miss(f"{path}.source.httpGet.port", f"{collector['port']} is the Horovod rendezvous port")
        elif kind == "Push":
            collector["kind"] = "push"
            self.note(
                "Push collector: calls to kubeflow.katib's report_metrics() in the trial code must become "
                "openautoglm_trial.report(step, **metrics)"
            )
        else:
            what = {
                "TensorFlowEvent": "TensorFlow event files are not read",
                "Custom": "a custom collector container has no equivalent",
                "None": "the TuningJob needs the trial's metrics",
            }.get(kind, "unknown collector kind")
            self.miss(f"{path}.collector.kind", f"{kind!r}: {what}")
            return out
        extra = set(mc.get("collector") or {}) - {"kind"}
        for k in sorted(extra):
            self.miss(f"{path}.collector.{k}", "only for the Custom collector")
        out["collector"] = collector
        return out

    def _filter(self, source: dict[str, Any], path: str, collector: dict[str, Any]) -> None:
        formats = (source.get("filter") or {}).get("metricsFormat") or []
        if not formats:
            return
        fpath = f"{path}.source.filter.metricsFormat"
        if len(formats) > 1:
            self.miss(
                fpath,
                f"{len(formats)} formats: the collector takes one regex (joining them would "
                "renumber the name and value groups)",
            )
            return
        regex = str(formats[0])
        try:
            groups = re.compile(regex).groups
        except re.error as err:
            self.miss(f"{fpath}[0]", f"not a Python regular expression: {err}")
            return
        if groups < 2:
            self.miss(f"{fpath}[0]", "needs two groups: the metric name and its value")
            return
        collector["filter"] = regex

    # --------------------------------------------------------------------- trial template
    def _trial(self) -> dict[str, Any]:
        tt = self.spec.get("trialTemplate")
        path = "spec.trialTemplate"
        trial: dict[str, Any] = {}
        if not isinstance(tt, dict):
            self.miss(path, "required")
            return trial
        if tt.get("retain"):
            self.note(
                "trialTemplate.retain dropped: the operator deletes a trial's pods when it ends (its result, "
                "metrics and curves stay in the study)"
            )
        self._trial_parameters(tt.get("trialParameters") or [], f"{path}.trialParameters")
        if tt.get("configMap"):
            cm = tt["configMap"]
            self.miss(
                f"{path}.configMap",
                f"the trial template is in ConfigMap {cm.get('configMapNamespace')}/"
                f"{cm.get('configMapName')} ({cm.get('templatePath')}): paste it as "
                "trialSpec and convert again",
            )
            return trial
        ts = tt.get("trialSpec")
        if not isinstance(ts, dict):
            self.miss(f"{path}.trialSpec", "required")
            return trial
        api, kind = ts.get("apiVersion"), ts.get("kind")
        primary = tt.get("primaryContainerName")
        for key in ("successCondition", "failureCondition"):
            value = tt.get(key)
            defaults = _JOB_CONDITIONS.get((api, kind), _KUBEFLOW_CONDITIONS)
            if value and value not in defaults:
                self.note(
                    f"trialTemplate.{key} dropped: a trial succeeds when its program exits 0 and reports the objective"
                )
        if tt.get("primaryPodLabels"):
            self.note("trialTemplate.primaryPodLabels dropped: the objective is read from the trial's rank 0")
        tpath = f"{path}.trialSpec"
        meta = ts.get("metadata") or {}
        pod_meta: dict[str, Any] = {}
        for key in ("labels", "annotations"):
            if meta.get(key):
                pod_meta[key] = dict(meta[key])
                self.note(
                    f"trialSpec.metadata.{key} (of Katib's trial {kind}) put on the trial pods: a TuningJob "
                    f"trial has no {kind} object"
                )
        for key in meta:
            if key not in ("labels", "annotations"):
                self.miss(f"{tpath}.metadata.{key}", "not allowed in a trial template")
        if (api, kind) == ("batch/v1", "Job"):
            self._batch_job(ts, tpath, primary, trial, pod_meta)
        elif kind == "PyTorchJob" and str(api).startswith("kubeflow.org/"):
            self._pytorch_job(ts, tpath, primary, trial, pod_meta)
        elif kind == "MPIJob" and str(api).startswith("kubeflow.org/"):
            self._mpi_job(ts, tpath, primary, trial, pod_meta)
        else:
            self.miss(
                f"{tpath}.kind",
                f"{api}/{kind}: trials are plain pods (batch/v1 Job, PyTorchJob and MPIJob "
                "map; TFJob, XGBoostJob, TrainJob, workflows do not)",
            )
        if "epochs" in self.out_spec:
            trial["epochs"] = self.out_spec["epochs"]
        return _ordered_trial(trial)

    def _trial_parameters(self, items: list[dict[str, Any]], path: str) -> None:
        for i, tp in enumerate(items):
            name, ref = (tp or {}).get("name"), (tp or {}).get("reference")
            if not name or not ref:
                self.miss(f"{path}[{i}]", "needs name and reference")
                continue
            if _META_REF.match(str(ref)):
                hint = (
                    " (a trial's name is in its OPENAUTOGLM_TRIAL_NAME variable)" if ref == "${trialSpec.Name}" else ""
                )
                self.miss(
                    f"{path}[{i}].reference", f"{ref}: Katib's trial metadata substitution has no equivalent{hint}"
                )
                continue
            if ref not in self.params:
                known = {(p or {}).get("name") for p in self.spec.get("parameters") or []}
                if ref in known:
                    continue  # the parameter itself is unmapped, reported above
                self.miss(f"{path}[{i}].reference", f"{ref!r} is not a parameter of spec.parameters")
                continue
            self.trial_params[name] = ref

    # ------------------------------------------------------------------ trial kinds
    def _batch_job(
        self, ts: dict[str, Any], path: str, primary: str | None, trial: dict[str, Any], pod_meta: dict[str, Any]
    ) -> None:
        spec = ts.get("spec") or {}
        for key, value in spec.items():
            if key == "template":
                continue
            if key in ("parallelism", "completions") and value in (1, None):
                continue
            if key == "activeDeadlineSeconds":
                self._timeout(value, f"{path}.spec.{key}", trial)
            elif key == "backoffLimit" and value == 0:
                continue
            elif key == "ttlSecondsAfterFinished":
                self.note("trialSpec.spec.ttlSecondsAfterFinished dropped: the operator deletes trial pods")
            elif key == "backoffLimit":
                self.miss(
                    f"{path}.spec.{key}", f"{value}: a failed trial is not retried; it counts towards maxFailedTrials"
                )
            else:
                self.miss(f"{path}.spec.{key}", "a trial is one pod per worker; this Job field has no equivalent")
        template = spec.get("template")
        if not isinstance(template, dict):
            self.miss(f"{path}.spec.template", "required")
            return
        trial["workers"] = 1
        self._pod(template, f"{path}.spec.template", primary, trial, pod_meta)

    def _pytorch_job(
        self, ts: dict[str, Any], path: str, primary: str | None, trial: dict[str, Any], pod_meta: dict[str, Any]
    ) -> None:
        spec = ts.get("spec") or {}
        rpath = f"{path}.spec.pytorchReplicaSpecs"
        replicas = spec.get("pytorchReplicaSpecs") or {}
        self._run_policy(spec, path, trial, skip={"pytorchReplicaSpecs"})
        master, worker = replicas.get("Master"), replicas.get("Worker")
        for k in replicas:
            if k not in ("Master", "Worker"):
                self.miss(f"{rpath}.{k}", "only Master and Worker replicas map")
        n_master = n_worker = 0
        for role, rs in (("Master", master), ("Worker", worker)):
            if rs is None:
                continue
            count = rs.get("replicas", 1)
            try:
                count = _int(count)
            except ValueError:
                self.miss(f"{rpath}.{role}.replicas", f"not a number: {count!r}")
                count = 1
            if role == "Master":
                if count != 1:
                    self.miss(f"{rpath}.Master.replicas", f"must be 1, got {count}")
                n_master = 1
            else:
                n_worker = count
            self._replica_restart(rs, f"{rpath}.{role}")
            for k in rs:
                if k not in ("replicas", "restartPolicy", "template"):
                    self.miss(f"{rpath}.{role}.{k}", "no equivalent")
        if master is None and worker is None:
            self.miss(rpath, "needs a Master or Worker replica")
            return
        lead_role = "Master" if master is not None else "Worker"
        lead = (master if master is not None else worker) or {}
        if master is not None and worker is not None and n_worker > 0:
            if _comparable(master.get("template")) != _comparable(worker.get("template")):
                self.miss(
                    f"{rpath}.Worker.template",
                    "differs from the Master's: every rank of a TuningJob trial runs the same pod",
                )
        workers = n_master + n_worker
        if not 1 <= workers <= 64:
            self.miss(rpath, f"{workers} replicas: a trial has 1 to 64 workers")
            workers = max(1, min(workers, 64))
        trial["workers"] = workers
        if workers > 1:
            self.note(
                f"PyTorchJob with {workers} replicas: {workers} workers per trial, started with Horovod's "
                f"environment (HOROVOD_RANK, HOROVOD_SIZE, Gloo rendezvous), not torch.distributed's "
                f"(MASTER_ADDR, RANK, WORLD_SIZE): a program that calls init_process_group() must use Horovod"
            )
        template = lead.get("template")
        if not isinstance(template, dict):
            self.miss(f"{rpath}.{lead_role}.template", "required")
            return
        self._pod(template, f"{rpath}.{lead_role}.template", primary, trial, pod_meta)

    def _mpi_job(
        self, ts: dict[str, Any], path: str, primary: str | None, trial: dict[str, Any], pod_meta: dict[str, Any]
    ) -> None:
        spec = ts.get("spec") or {}
        rpath = f"{path}.spec.mpiReplicaSpecs"
        replicas = spec.get("mpiReplicaSpecs") or {}
        self._run_policy(
            spec,
            path,
            trial,
            skip={
                "mpiReplicaSpecs",
                "slotsPerWorker",
                "mpiImplementation",
                "sshAuthMountPath",
                "launcherCreationPolicy",
                "runLauncherAsWorker",
            },
        )
        slots = spec.get("slotsPerWorker", 1)
        if slots not in (1, None):
            self.miss(f"{path}.spec.slotsPerWorker", f"{slots}: a TuningJob worker is one pod with one rank")
        if spec.get("runLauncherAsWorker"):
            self.miss(f"{path}.spec.runLauncherAsWorker", "there is no launcher: every rank is a worker pod")
        for key in ("mpiImplementation", "sshAuthMountPath", "launcherCreationPolicy"):
            if key in spec:
                self.note(f"MPIJob {key} dropped: there is no mpirun and no launcher")
        launcher, worker = replicas.get("Launcher"), replicas.get("Worker")
        for k in replicas:
            if k not in ("Launcher", "Worker"):
                self.miss(f"{rpath}.{k}", "only Launcher and Worker replicas map")
        if not isinstance(launcher, dict) or not isinstance(worker, dict):
            self.miss(rpath, "needs a Launcher and a Worker replica")
            return
        for role, rs in (("Launcher", launcher), ("Worker", worker)):
            self._replica_restart(rs, f"{rpath}.{role}")
            for k in rs:
                if k not in ("replicas", "restartPolicy", "template"):
                    self.miss(f"{rpath}.{role}.{k}", "no equivalent")
        try:
            n = _int(worker.get("replicas", 1))
        except ValueError:
            self.miss(f"{rpath}.Worker.replicas", f"not a number: {worker.get('replicas')!r}")
            n = 1
        if not 1 <= n <= 64:
            self.miss(f"{rpath}.Worker.replicas", f"{n}: a trial has 1 to 64 workers")
            n = max(1, min(n, 64))
        trial["workers"] = n
        # The program: the launcher's primary container, minus mpirun and its options.
        lpath = f"{rpath}.Launcher.template"
        lpod = ((launcher.get("template") or {}).get("spec")) or {}
        lcontainers = lpod.get("containers") or []
        li = _find_container(lcontainers, primary)
        if li is None:
            self.miss(
                f"{lpath}.spec.containers",
                f"no container {primary!r} (trialTemplate.primaryContainerName) in the Launcher",
            )
            return
        lc = lcontainers[li]
        argv = self._argv(lc, f"{lpath}.spec.containers[{li}]")
        if argv is None:
            return
        if posixpath.basename(argv[0]) not in _LAUNCHERS:
            self.miss(
                f"{lpath}.spec.containers[{li}].command",
                f"the Launcher runs {argv[0]!r}, not mpirun/horovodrun: the program of the ranks is unknown",
            )
            return
        program, info, reason = strip_mpi_launcher(argv)
        if program is None:
            self.miss(f"{lpath}.spec.containers[{li}].args", f"cannot strip {info['launcher']}: {reason}")
            return
        stripped = argv[: len(argv) - len(program)]
        self.note(
            f"MPIJob: the Launcher's {' '.join(stripped)!r} removed; the operator starts the {n} ranks itself "
            f"with Horovod's Gloo environment (what horovodrun sets): a Horovod program runs unchanged, a plain "
            f"MPI program does not"
        )
        if info["np"] is not None and info["np"] != n:
            self.note(f"MPIJob: {info['launcher']} -np {info['np']} ignored: a trial has Worker.replicas ({n}) ranks")
        launcher_env = {e.get("name"): e.get("value") for e in lc.get("env") or [] if "value" in e}
        extra_env = dict(info["env"])
        dropped = []
        for name in info["forwarded"]:
            if name in launcher_env:
                extra_env[name] = str(launcher_env[name])
            else:
                dropped.append(name)
        if dropped:
            self.note(f"MPIJob: -x {' -x '.join(dropped)} dropped: the workers keep their own image's values")
        self.note(
            "MPIJob: the Launcher pod is not used except for its command; image, resources and volumes come "
            "from the Worker pod"
        )
        # Everything else: the Worker pod, where the program runs.
        wtemplate = worker.get("template")
        if not isinstance(wtemplate, dict):
            self.miss(f"{rpath}.Worker.template", "required")
            return
        wcontainers = ((wtemplate.get("spec") or {}).get("containers")) or []
        wi = _find_container(wcontainers, primary)
        if wi is None:
            if len(wcontainers) == 1:
                wi = 0
            else:
                same = [i for i, c in enumerate(wcontainers) if c.get("image") == lc.get("image")]
                wi = same[0] if len(same) == 1 else None
        if wi is None:
            self.miss(f"{rpath}.Worker.template.spec.containers", "cannot tell which container runs the program")
            return
        self._pod(
            wtemplate,
            f"{rpath}.Worker.template",
            wcontainers[wi].get("name"),
            trial,
            pod_meta,
            argv=program,
            argv_path=f"{lpath}.spec.containers[{li}]",
            extra_env=extra_env,
        )

    def _run_policy(self, spec: dict[str, Any], path: str, trial: dict[str, Any], skip: set[str]) -> None:
        for key, value in spec.items():
            if key in skip:
                continue
            if key == "cleanPodPolicy":
                self.note("cleanPodPolicy dropped: the operator deletes trial pods")
            elif key == "runPolicy" and isinstance(value, dict):
                for k, v in value.items():
                    if k == "cleanPodPolicy" or k == "ttlSecondsAfterFinished":
                        self.note(f"runPolicy.{k} dropped: the operator deletes trial pods")
                    elif k == "activeDeadlineSeconds":
                        self._timeout(v, f"{path}.spec.runPolicy.{k}", trial)
                    elif k == "backoffLimit" and v == 0:
                        continue
                    else:
                        self.miss(f"{path}.spec.runPolicy.{k}", "no equivalent")
            else:
                self.miss(f"{path}.spec.{key}", "no equivalent")

    def _replica_restart(self, rs: dict[str, Any], path: str) -> None:
        policy = rs.get("restartPolicy")
        if policy not in (None, "Never"):
            self.miss(
                f"{path}.restartPolicy",
                f"{policy}: trial pods are never restarted (the operator owns "
                "restartPolicy; a failed rank fails the trial)",
            )

    def _timeout(self, value: Any, path: str, trial: dict[str, Any]) -> None:
        try:
            seconds = _int(value)
            if seconds < 1:
                raise ValueError(f"must be >= 1, got {value}")
        except ValueError as err:
            self.miss(path, str(err))
            return
        trial["timeoutSeconds"] = min(seconds, trial.get("timeoutSeconds", seconds))

    # ------------------------------------------------------------------ the pod
    def _pod(
        self,
        template: dict[str, Any],
        path: str,
        primary: str | None,
        trial: dict[str, Any],
        pod_meta: dict[str, Any],
        *,
        argv: list[str] | None = None,
        argv_path: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """The trial's pod: the primary container to spec.trial, the rest to spec.trial.podTemplate.

        What the overlay may hold is :mod:`openautoglm.podtemplate`'s decision (owned fields, the
        restricted Pod Security Standard, the Kubernetes schema): its problems become unmapped
        fields at their Katib paths, and --lossy drops them from the overlay.
        """
        meta = template.get("metadata") or {}
        overlay_meta: dict[str, Any] = copy.deepcopy(pod_meta)
        for key in ("labels", "annotations"):
            if meta.get(key):
                overlay_meta.setdefault(key, {}).update(copy.deepcopy(meta[key]))
        for key in meta:
            if key not in ("labels", "annotations"):
                self.miss(f"{path}.metadata.{key}", "only labels and annotations of the trial pods map")
        for p, text in _walk_strings(meta, f"{path}.metadata"):
            if _PLACEHOLDER.search(text):
                self.miss(p, "${trialParameters.*} is only replaced in the trial's command")
        pod = template.get("spec") or {}
        spath = f"{path}.spec"
        containers = pod.get("containers") or []
        ci = _find_container(containers, primary)
        if ci is None and primary is None and len(containers) == 1:
            ci = 0
            self.note(
                f"trialTemplate.primaryContainerName unset: the only container {containers[0].get('name')!r} "
                "is the trial's"
            )
        if ci is None:
            self.miss(f"{spath}.containers", f"no container {primary!r} (trialTemplate.primaryContainerName)")
            return
        worker = self._container(
            containers[ci], f"{spath}.containers[{ci}]", trial, argv=argv, argv_path=argv_path, extra_env=extra_env
        )
        # overlay index -> Katib index, to report the overlay's problems at their Katib path
        container_index: dict[int, int] = {}
        overlay_containers: list[dict[str, Any]] = []
        if len(worker) > 1:
            container_index[0] = ci
            overlay_containers.append(worker)
        for i, c in enumerate(containers):
            if i != ci:
                container_index[len(overlay_containers)] = i
                overlay_containers.append(copy.deepcopy(c))
                self._placeholders(c, f"{spath}.containers[{i}]")
        overlay: dict[str, Any] = {}
        if overlay_containers:
            overlay["containers"] = overlay_containers
        for key, value in pod.items():
            kpath = f"{spath}.{key}"
            if key == "containers":
                continue
            self._placeholders(value, kpath)
            if key == "restartPolicy":
                if value != "Never":
                    self.miss(
                        kpath,
                        f"{value}: trial pods are never restarted (the operator owns restartPolicy; a "
                        "failed rank fails the trial)",
                    )
            elif key == "activeDeadlineSeconds":
                self._timeout(value, kpath, trial)
            elif key == "serviceAccount":
                overlay.setdefault("serviceAccountName", value)
            elif key == "dnsPolicy" and value == "ClusterFirst":
                continue  # the operator's
            elif key in ("terminationGracePeriodSeconds", "enableServiceLinks"):
                self.note(f"{key} dropped: the operator sets it on trial pods")
            else:
                overlay[key] = copy.deepcopy(value)
        result: dict[str, Any] = {}
        if overlay_meta:
            result["metadata"] = overlay_meta
        if overlay:
            result["spec"] = overlay
        result = self._checked_overlay(result, path, pod_meta, container_index, trial)
        if result:
            trial["podTemplate"] = result

    def _checked_overlay(
        self,
        overlay: dict[str, Any],
        path: str,
        pod_meta: dict[str, Any],
        container_index: dict[int, int],
        trial: dict[str, Any],
    ) -> dict[str, Any]:
        """The overlay without what openautoglm.podtemplate refuses; each refusal unmapped at its Katib path."""
        try:
            from openautoglm import podtemplate
        except ImportError:  # pragma: no cover - the module ships with the operator
            return overlay
        taken = [e["name"] for e in trial.get("env") or []]

        def katib_path(rel: str) -> str:
            m = re.match(r"spec\.containers\[(\d+)\](.*)", rel)
            if m and int(m.group(1)) in container_index:
                return f"{path}.spec.containers[{container_index[int(m.group(1))]}]{m.group(2)}"
            m = re.match(r"metadata\.(labels|annotations)\.(.+)", rel)
            if (
                m
                and m.group(2) in (pod_meta.get(m.group(1)) or {})
                and m.group(2) not in (((self._template_meta(path) or {}).get(m.group(1))) or {})
            ):
                return f"spec.trialTemplate.trialSpec.metadata.{m.group(1)}.{m.group(2)}"
            return f"{path}.{rel}" if rel else path

        out = copy.deepcopy(overlay)
        for round_ in range(6):
            found = podtemplate.problems(out or None, taken_env=taken)
            if not found:
                break
            for rel, message in found:
                if round_ == 0:
                    self.miss(katib_path(rel), message)
                # A refused volume source leaves a volume without one: drop the volume (and, next
                # round, the mounts that name it).
                m = re.match(r"(spec\.volumes\[\d+\])\.(?!name$)", rel)
                _delete(out, m.group(1) if m else rel)
            _purge(out)
        else:  # pragma: no cover - deleting what is refused always converges
            return {}
        return {k: v for k, v in out.items() if v}

    def _template_meta(self, path: str) -> dict[str, Any] | None:
        node: Any = self.exp
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
            if part.startswith("["):
                node = node[int(part[1:-1])] if isinstance(node, list) else None
            else:
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                return None
        return node.get("metadata") if isinstance(node, dict) else None

    def _placeholders(self, value: Any, path: str) -> None:
        for p, text in _walk_strings(value, path):
            if _PLACEHOLDER.search(text):
                self.miss(p, "${trialParameters.*} is only replaced in the trial's command (--lossy keeps it as text)")

    def _container(
        self,
        c: dict[str, Any],
        path: str,
        trial: dict[str, Any],
        *,
        argv: list[str] | None,
        argv_path: str | None,
        extra_env: dict[str, str] | None,
    ) -> dict[str, Any]:
        """The trial container: image, command, resources and plain env go to spec.trial; what the
        ``worker`` container of the overlay may carry (env from Secrets, mounts, workingDir ...) is
        returned as that container."""
        worker: dict[str, Any] = {"name": "worker"}
        if argv is None:
            argv = self._argv(c, path)
            argv_path = path
        if argv is not None:
            command = self._rewrite_command(argv, f"{argv_path}.command")
            if command is not None:
                trial["command"] = command
        if c.get("image"):
            trial["image"] = c["image"]
        else:
            self.miss(f"{path}.image", "required")
        env: list[dict[str, str]] = []
        for k, v in (extra_env or {}).items():
            if not ENV_NAME_RE.match(k) or k.startswith(_RESERVED_ENV) or k == "HOME":
                self.miss(f"{argv_path}.args", f"-x {k}: not an environment variable a TuningJob can set")
            else:
                env.append({"name": k, "value": v})
        for key, value in c.items():
            kpath = f"{path}.{key}"
            if key in ("name", "image", "command", "args"):
                continue
            if key == "resources":
                res = self._resources(value or {}, kpath)
                if res:
                    trial["resources"] = res
            elif key == "env":
                for i, e in enumerate(value or []):
                    epath = f"{kpath}[{i}]"
                    name = (e or {}).get("name", "")
                    if not ENV_NAME_RE.match(str(name)):
                        self.miss(f"{epath}.name", f"{name!r} is not a valid environment variable name")
                        continue
                    if str(name).startswith(_RESERVED_ENV) or name == "HOME":
                        self.miss(f"{epath}.name", f"{name}: OPENAUTOGLM_*, HOROVOD_* and HOME are set by the operator")
                        continue
                    if any(_PLACEHOLDER.search(t) for _, t in _walk_strings(e, epath)):
                        self.miss(
                            f"{epath}.value",
                            "${trialParameters.*} is only replaced in the trial's command "
                            "(the trial gets every parameter in OPENAUTOGLM_TRIAL_PARAMS)",
                        )
                        continue
                    if "valueFrom" in e:
                        worker.setdefault("env", []).append(copy.deepcopy(e))
                    else:
                        env = [x for x in env if x["name"] != name]
                        env.append({"name": name, "value": str(e.get("value", ""))})
            elif key == "ports":
                for i, port in enumerate(value or []):
                    if (port or {}).get("hostPort") not in (None, 0):
                        self.miss(
                            f"{kpath}[{i}].hostPort",
                            "must not be set (the restricted Pod Security Standard: no host ports)",
                        )
                self.note("container ports dropped: declaring them is informational; the program can still listen")
            elif key in ("livenessProbe", "readinessProbe", "startupProbe"):
                self.note(f"{key} dropped: the trial supervisor serves the probes (a stalled trial is stopped)")
            elif key in ("terminationMessagePath", "terminationMessagePolicy"):
                self.note(f"{key} dropped: the trial supervisor writes the termination message")
            else:
                self._placeholders(value, kpath)
                worker[key] = copy.deepcopy(value)  # the overlay check decides (owned or allowed)
        if env:
            trial["env"] = env
        if "resources" not in trial:
            self.note(
                "no resources in Katib's trial container (a BestEffort pod there): the trial gets the TuningJob "
                "defaults (requests cpu 1, memory 1Gi; limits cpu 1, memory 2Gi)"
            )
        return worker

    def _resources(self, res: dict[str, Any], path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for part in ("requests", "limits"):
            values = {}
            for k, v in (res.get(part) or {}).items():
                text = str(v)
                if isinstance(v, float) and v == int(v):
                    text = str(int(v))
                if not QUANTITY_RE.match(text):
                    self.miss(f"{path}.{part}.{k}", f"{v!r} is not a quantity the TuningJob accepts")
                    continue
                values[k] = text
            if values:
                out[part] = values
        for k in res:
            if k not in ("requests", "limits"):
                self.miss(f"{path}.{k}", "no equivalent")
        return out

    # ------------------------------------------------------------------ the command
    def _argv(self, c: dict[str, Any], path: str) -> list[str] | None:
        command = [str(x) for x in c.get("command") or []]
        args = [str(x) for x in c.get("args") or []]
        if not command:
            self.miss(
                f"{path}.command",
                "missing: the image's ENTRYPOINT would run"
                + (" with args" if args else "")
                + "; a TuningJob's trial.command must name the program",
            )
            return None
        argv = command + args
        shell = _shell_invocation(argv)
        if shell is None:
            return argv
        script, extra = shell
        where = f"{path}.{'args' if args and script in args else 'command'}"
        if extra:
            self.miss(where, f"{argv[0]} -c with positional arguments {extra}: needs a shell")
            return None
        words, reason = shell_words(script)
        if words is None:
            self.miss(
                where,
                f"the {argv[0]} -c command line has {reason}: a TuningJob runs its command without a "
                "shell (put the line in a script in the image)",
            )
            return None
        if words and words[0] == "exec":
            words = words[1:]
        if not words:
            self.miss(where, "the shell command line runs no program")
            return None
        self.note(f"{argv[0]} -c {script.strip()!r} split into the exec-form command {words}")
        return words

    def _rewrite_command(self, argv: list[str], path: str) -> list[str] | None:
        out: list[str] = []
        ok = True
        for item in argv:
            if _KUBELET_VAR.search(item):
                self.miss(
                    path,
                    f"{item!r}: the kubelet expands $(VAR) in a container command; the trial supervisor "
                    "runs the command without expansion",
                )
                ok = False
                continue

            def _sub(m: re.Match[str]) -> str:
                nonlocal ok
                name = m.group(1)
                if name in self.trial_params:
                    return "${trialParameters." + self.trial_params[name] + "}"
                declared = {
                    (tp or {}).get("name") for tp in (self.spec.get("trialTemplate") or {}).get("trialParameters") or []
                }
                if name not in declared:
                    self.miss(path, f"${{trialParameters.{name}}} is not declared in trialTemplate.trialParameters")
                ok = False  # declared but unmapped: reported with the trial parameter
                return m.group(0)

            out.append(_PLACEHOLDER.sub(_sub, item))
        return out if ok else None

    # --------------------------------------------------------------------- resume policy
    def _resume_policy(self) -> None:
        policy = self.spec.get("resumePolicy")
        if policy in (None, "", "Never"):
            return
        if policy in ("LongRunning", "FromVolume"):
            self.miss(
                "spec.resumePolicy",
                f"{policy}: a finished TuningJob cannot be resumed with a larger budget "
                "(its study survives operator restarts, which needs no policy)",
            )
        else:
            self.miss("spec.resumePolicy", f"unknown policy {policy!r}")


_DELETED: Final = object()


def _delete(node: Any, rel: str) -> None:
    """Remove the field at ``rel`` (``spec.containers[0].securityContext.privileged``) from ``node``;
    a path that does not exist (a required field is missing) removes its parent instead."""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", rel)
    if not parts:
        node.clear()
        return
    parents: list[tuple[Any, Any]] = []
    cur: Any = node
    for part in parts:
        key: Any = int(part[1:-1]) if part.startswith("[") else part
        exists = (isinstance(cur, list) and isinstance(key, int) and key < len(cur)) or (
            isinstance(cur, dict) and not isinstance(key, int) and key in cur
        )
        if not exists:
            break
        parents.append((cur, key))
        cur = cur[key]
    else:
        container, key = parents[-1]
        container[key] = _DELETED
        return
    if parents:
        container, key = parents[-1]
        container[key] = _DELETED


def _purge(node: Any) -> Any:
    """Drop what :func:`_delete` marked (nothing else: an ``emptyDir: {}`` stays)."""
    if isinstance(node, dict):
        for k in [k for k, v in node.items() if v is _DELETED]:
            del node[k]
        for v in node.values():
            _purge(v)
    elif isinstance(node, list):
        node[:] = [v for v in node if v is not _DELETED]
        for v in node:
            _purge(v)
    return node


def _is_number(value: Any, kind: str) -> bool:
    try:
        _int(value) if kind == "int" else _number(value)
        return True
    except ValueError:
        return False


def _find_container(containers: list[dict[str, Any]], name: str | None) -> int | None:
    for i, c in enumerate(containers):
        if name is not None and (c or {}).get("name") == name:
            return i
    return None


def _comparable(template: Any) -> Any:
    """A pod template without what may differ between PyTorchJob replicas without changing the program."""
    t = copy.deepcopy(template) or {}
    (t.get("spec") or {}).pop("restartPolicy", None)
    return t


def _ordered_trial(trial: dict[str, Any]) -> dict[str, Any]:
    order = ["command", "image", "workers", "epochs", "resources", "env", "timeoutSeconds", "podTemplate"]
    return {k: trial[k] for k in order if k in trial} | {k: v for k, v in trial.items() if k not in order}


# ============================================================================= public API
def convert(experiment: dict[str, Any]) -> Conversion:
    """The TuningJob equivalent of a Katib Experiment document (a pure function).

    Raises:
        NotAnExperiment: the document is not a ``kubeflow.org/v1beta1`` Experiment.
    """
    if not isinstance(experiment, dict) or experiment.get("kind") != "Experiment":
        raise NotAnExperiment("not a Katib Experiment (kind: Experiment)")
    if experiment.get("apiVersion") != KATIB_API_VERSION:
        raise NotAnExperiment(
            f"apiVersion {experiment.get('apiVersion')!r}: only {KATIB_API_VERSION} Experiments are read"
        )
    return _Converter(copy.deepcopy(experiment)).run()


def render(conversion: Conversion, source: str | None = None) -> str:
    """The TuningJob as YAML, its notes (and, in lossy use, the dropped fields) as leading comments."""
    meta = conversion.job.get("metadata") or {}
    ident = "/".join(x for x in (meta.get("namespace"), meta.get("name")) if x)
    lines = [
        f"# TuningJob converted from Katib Experiment {ident}"
        + (f" ({source})" if source else "")
        + " by `openautoglm import-katib`."
    ]

    def bullets(title: str, items: list[str]) -> None:
        lines.append(f"# {title}")
        for item in items:
            wrapped = textwrap.wrap(item, width=96, break_on_hyphens=False, break_long_words=False)
            for j, w in enumerate(wrapped):
                lines.append(("#   - " if j == 0 else "#     ") + w)

    if conversion.notes:
        bullets("Approximations and dropped fields:", conversion.notes)
    if conversion.unmapped:
        bullets("NOT converted (dropped by --lossy):", [f"{p}: {r}" for p, r in conversion.unmapped])
    body = yaml.safe_dump(conversion.job, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
    return "\n".join(lines) + "\n" + body


def _load_experiment(path: str) -> dict[str, Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    experiments = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Experiment"]
    if len(experiments) != 1:
        raise NotAnExperiment(f"expected exactly one Katib Experiment in the file, found {len(experiments)}")
    return experiments[0]


def main(args: argparse.Namespace) -> int:
    """``openautoglm import-katib`` (see cli.py for the arguments): 0 converted, 2 not (or invalid)."""
    from openautoglm.validation import InvalidTuningJob, validate_document

    source = args.file
    try:
        conversion = convert(_load_experiment(source))
    except (OSError, yaml.YAMLError, NotAnExperiment) as err:
        print(f"{source}: {err}", file=sys.stderr)
        return 2
    if conversion.unmapped:
        verb = "dropped (--lossy)" if args.lossy else "cannot be mapped to a TuningJob"
        print(
            f"{source}: {len(conversion.unmapped)} field{'s' * (len(conversion.unmapped) != 1)} {verb}:",
            file=sys.stderr,
        )
        for p, reason in conversion.unmapped:
            print(f"  {p}: {reason}", file=sys.stderr)
        if not args.lossy:
            print("Nothing written. --lossy writes the TuningJob without these fields.", file=sys.stderr)
            return 2
    try:
        with warnings.catch_warnings():
            # Optuna's deprecation notices (CmaEsSampler's sigma0 ...) say nothing about the conversion.
            warnings.simplefilter("ignore", FutureWarning)
            validate_document(copy.deepcopy(conversion.job), f"{source} (converted)")
    except InvalidTuningJob as err:
        print(f"{err}\nNothing written: the converted TuningJob is not valid.", file=sys.stderr)
        return 2
    text = render(conversion, source=None if source == "-" else Path(source).name)
    if args.output:
        Path(args.output).write_text(text)
        print(
            f"wrote {args.output}"
            + (f" ({len(conversion.notes)} notes as comments at its top)" if conversion.notes else ""),
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text)
    return 0


__all__ = ["Conversion", "NotAnExperiment", "convert", "main", "render", "shell_words", "strip_mpi_launcher"]
