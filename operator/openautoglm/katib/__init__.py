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
import sys
import textwrap
from pathlib import Path
from typing import Any, Final

import yaml

from openautoglm.katib import algorithm as algorithm_section
from openautoglm.katib import collector, experiment, lossy, shape, trial
from openautoglm.katib.findings import Conversion, Findings, NotAnExperiment
from openautoglm.katib.shape import MalformedExperiment
from openautoglm.katib.shell import shell_words, strip_mpi_launcher
from openautoglm.spec import API_VERSION, KIND
from openautoglm.validation import InvalidTuningJob

KATIB_API_VERSION: Final = "kubeflow.org/v1beta1"
#: The Experiment's spec fields this converter reads (any other one is unknown to it).
_KNOWN: Final = frozenset(
    {
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
)


def convert(experiment_doc: dict[str, Any]) -> Conversion:
    """The TuningJob equivalent of a Katib Experiment document (a pure function).

    Raises:
        NotAnExperiment: the document is not a ``kubeflow.org/v1beta1`` Experiment.
        MalformedExperiment: (a NotAnExperiment) fields have the wrong type, as Kubernetes would say.
    """
    if not isinstance(experiment_doc, dict) or experiment_doc.get("kind") != "Experiment":
        raise NotAnExperiment("not a Katib Experiment (kind: Experiment)")
    if experiment_doc.get("apiVersion") != KATIB_API_VERSION:
        raise NotAnExperiment(
            f"apiVersion {experiment_doc.get('apiVersion')!r}: only {KATIB_API_VERSION} Experiments are read"
        )
    shape.check(experiment_doc)
    exp = copy.deepcopy(experiment_doc)
    spec: dict[str, Any] = exp.get("spec") or {}
    findings = Findings()
    metadata = experiment.metadata(exp.get("metadata") or {}, findings)
    objective = experiment.objective(spec.get("objective"), findings)
    params = experiment.parameters(spec, findings)
    alg = algorithm_section.algorithm(spec.get("algorithm"), params, findings)
    params = {name: alg.fixed.get(name, p) for name, p in params.items()}
    early = algorithm_section.early_stopping(spec.get("earlyStopping"), alg.pruner, findings)
    budget = experiment.budget(spec, findings)
    metrics = collector.metrics(spec.get("metricsCollectorSpec") or {}, findings)
    trial_spec = trial.trial(spec.get("trialTemplate"), params, spec.get("parameters") or [], alg.epochs, findings)
    if "nasConfig" in spec:
        findings.miss("spec.nasConfig", "not supported (neural architecture search)")
    experiment.resume_policy(spec, findings)
    for k in spec:
        if k not in _KNOWN:
            findings.miss(f"spec.{k}", "unknown Katib Experiment field")
    out: dict[str, Any] = {"objective": objective, "budget": budget, "algorithm": alg.algorithm}
    if early:
        out["earlyStopping"] = early
    out["parameters"] = list(params.values())
    out["trial"] = trial_spec
    out["metrics"] = metrics
    job = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": out}
    return Conversion(job=job, unmapped=findings.unmapped, notes=findings.notes)


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
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except RecursionError:  # PyYAML composes nodes recursively
        raise NotAnExperiment("the YAML is nested too deeply for an Experiment") from None
    experiments = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Experiment"]
    if len(experiments) != 1:
        raise NotAnExperiment(f"expected exactly one Katib Experiment in the file, found {len(experiments)}")
    return experiments[0]


def main(args: argparse.Namespace) -> int:
    """``openautoglm import-katib`` (see cli.py for the arguments): 0 converted, 2 not (or invalid)."""
    source = args.file
    try:
        conversion = convert(_load_experiment(source))
    except MalformedExperiment as err:
        print(f"{source}: {err}\nNothing written.", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError, yaml.YAMLError, NotAnExperiment) as err:
        print(f"{source}: {err}", file=sys.stderr)
        return 2
    found = lossy.problems(conversion.job, f"{source} (converted)")
    if conversion.unmapped:
        verb = "dropped (--lossy)" if args.lossy else "cannot be mapped to a TuningJob"
        print(
            f"{source}: {len(conversion.unmapped)} field{'s' * (len(conversion.unmapped) != 1)} {verb}:",
            file=sys.stderr,
        )
        for p, reason in conversion.unmapped:
            print(f"  {p}: {reason}", file=sys.stderr)
        if not args.lossy:
            hint = lossy.cannot_write(found) if found else "--lossy writes the TuningJob without these fields."
            print(f"Nothing written. {hint}", file=sys.stderr)
            return 2
        if found:
            print(f"{lossy.cannot_write(found)}\nNothing written.", file=sys.stderr)
            return 2
    if found:
        error = InvalidTuningJob(found, f"{source} (converted)")
        print(f"{error}\nNothing written: the converted TuningJob is not valid.", file=sys.stderr)
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


__all__ = [
    "KATIB_API_VERSION",
    "Conversion",
    "MalformedExperiment",
    "NotAnExperiment",
    "convert",
    "main",
    "render",
    "shell_words",
    "strip_mpi_launcher",
]
