"""``spec.trialTemplate``: the trial parameters, the conditions, and the trialSpec by its kind.

Katib substitutes ``${trialParameters.X}`` anywhere in a trial's manifest; a TuningJob substitutes
the parameter's value in ``trial.command`` only, under the parameter's own name (X's reference).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from openautoglm.katib.context import TrialContext
from openautoglm.katib.findings import Findings
from openautoglm.katib.kinds import batch_job, mpi_job, pytorch_job

#: Katib's trial metadata substitutions: ``${trialSpec.Name}``, ``${trialSpec.Labels[k]}`` ...
_META_REF: Final = re.compile(r"^\$\{trialSpec\.(.+)\}$")
#: The conditions Katib uses by default, per trial kind (a Job's, a training-operator job's).
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
_ORDER: Final = (
    "command",
    "image",
    "workers",
    "epochs",
    "resources",
    "env",
    "timeoutSeconds",
    "retries",
    "podTemplate",
)


def trial(
    tt: Any, params: Mapping[str, dict[str, Any]], katib_params: list[Any], epochs: int | None, findings: Findings
) -> dict[str, Any]:
    """``spec.trial`` from the trial template, given the parameters that map (Katib name -> ours),
    every name in ``spec.parameters`` and hyperband's ``epochs``."""
    path = "spec.trialTemplate"
    out: dict[str, Any] = {}
    if not isinstance(tt, dict):
        findings.miss(path, "required")
        return out
    if tt.get("retain"):
        findings.note(
            "trialTemplate.retain dropped: the operator deletes a trial's pods when it ends (its result, "
            "metrics and curves stay in the study)"
        )
    items = tt.get("trialParameters") or []
    references, unconverted = trial_parameters(items, f"{path}.trialParameters", params, katib_params, findings)
    if tt.get("configMap"):
        cm = tt["configMap"]
        findings.miss(
            f"{path}.configMap",
            f"the trial template is in ConfigMap {cm.get('configMapNamespace')}/"
            f"{cm.get('configMapName')} ({cm.get('templatePath')}): paste it as "
            "trialSpec and convert again",
        )
        return out
    ts = tt.get("trialSpec")
    if not isinstance(ts, dict):
        findings.miss(f"{path}.trialSpec", "required")
        return out
    api, kind = ts.get("apiVersion"), ts.get("kind")
    _conditions(tt, api, kind, findings)
    if tt.get("primaryPodLabels"):
        findings.note("trialTemplate.primaryPodLabels dropped: the objective is read from the trial's rank 0")
    tpath = f"{path}.trialSpec"
    ctx = TrialContext(
        findings,
        references,
        frozenset((tp or {}).get("name") for tp in items),
        unconverted,
        tt.get("primaryContainerName"),
        _pod_meta(ts.get("metadata") or {}, tpath, kind, findings),
    )
    if (api, kind) == ("batch/v1", "Job"):
        batch_job(ts, tpath, out, ctx)
    elif kind == "PyTorchJob" and str(api).startswith("kubeflow.org/"):
        pytorch_job(ts, tpath, out, ctx)
    elif kind == "MPIJob" and str(api).startswith("kubeflow.org/"):
        mpi_job(ts, tpath, out, ctx)
    else:
        findings.miss(
            f"{tpath}.kind",
            f"{api}/{kind}: trials are plain pods (batch/v1 Job, PyTorchJob and MPIJob "
            "map; TFJob, XGBoostJob, TrainJob, workflows do not)",
        )
    if epochs is not None:
        out["epochs"] = epochs
    return {k: out[k] for k in _ORDER if k in out} | {k: v for k, v in out.items() if k not in _ORDER}


def trial_parameters(
    items: list[Any], path: str, params: Mapping[str, dict[str, Any]], katib_params: list[Any], findings: Findings
) -> tuple[dict[str, str], dict[Any, str]]:
    """``(references, unconverted)``: trialParameters name -> the Katib parameter it references, for
    those that map; and -> where the reason is reported, for the others (a command using one of
    them cannot be written)."""
    references: dict[str, str] = {}
    unconverted: dict[Any, str] = {}
    for i, tp in enumerate(items):
        name, ref = (tp or {}).get("name"), (tp or {}).get("reference")
        if not name or not ref:
            findings.miss(f"{path}[{i}]", "needs name and reference")
            if name:
                unconverted[name] = f"{path}[{i}]"
            continue
        if _META_REF.match(str(ref)):
            hint = " (a trial's name is in its OPENAUTOGLM_TRIAL_NAME variable)" if ref == "${trialSpec.Name}" else ""
            findings.miss(
                f"{path}[{i}].reference", f"{ref}: Katib's trial metadata substitution has no equivalent{hint}"
            )
            unconverted[name] = f"{path}[{i}].reference"
            continue
        if ref not in params:
            indices = [j for j, p in enumerate(katib_params) if (p or {}).get("name") == ref]
            if indices:  # the parameter itself is unmapped, reported with it
                unconverted[name] = f"parameter {ref!r}, spec.parameters[{indices[0]}]"
                continue
            findings.miss(f"{path}[{i}].reference", f"{ref!r} is not a parameter of spec.parameters")
            unconverted[name] = f"{path}[{i}].reference"
            continue
        references[name] = ref
    return references, unconverted


def _conditions(tt: dict[str, Any], api: Any, kind: Any, findings: Findings) -> None:
    for key in ("successCondition", "failureCondition"):
        value = tt.get(key)
        if value and value not in _JOB_CONDITIONS.get((api, kind), _KUBEFLOW_CONDITIONS):
            findings.note(
                f"trialTemplate.{key} dropped: a trial succeeds when its program exits 0 and reports the objective"
            )


def _pod_meta(meta: dict[str, Any], tpath: str, kind: Any, findings: Findings) -> dict[str, Any]:
    """trialSpec.metadata's labels and annotations, for the trial pods (a TuningJob trial has no Job)."""
    out: dict[str, Any] = {}
    for key in ("labels", "annotations"):
        if meta.get(key):
            out[key] = dict(meta[key])
            findings.note(
                f"trialSpec.metadata.{key} (of Katib's trial {kind}) put on the trial pods: a TuningJob "
                f"trial has no {kind} object"
            )
    for key in meta:
        if key not in ("labels", "annotations"):
            findings.miss(f"{tpath}.metadata.{key}", "not allowed in a trial template")
    return out
