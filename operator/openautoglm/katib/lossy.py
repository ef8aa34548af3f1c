"""What ``--lossy`` could not write, in a Katib user's terms.

``--lossy`` drops the fields that do not map. When what remains is no TuningJob (no trial command
is left, no objective metric, no parameter), the TuningJob's validation speaks of its own fields
(``spec.trial.task: give exactly one of task or command``); this says which part of the
Experiment is missing instead, so that the hint after a refusal is true.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Final

from openautoglm.validation import InvalidTuningJob, Problem, validate_document

#: A TuningJob field validation finds missing -> what the Experiment lacks once --lossy dropped fields.
_GAPS: Final = {
    "spec.trial.task": "trial command (the primary container's command in spec.trialTemplate.trialSpec)",
    "spec.trial.command": "trial command (the primary container's command in spec.trialTemplate.trialSpec)",
    "spec.objective": "objective metric (spec.objective.objectiveMetricName)",
    "spec.objective.metric": "objective metric (spec.objective.objectiveMetricName)",
    "spec.objective.direction": "objective type (spec.objective.type)",
    "spec.parameters": "parameter (spec.parameters)",
    "metadata.name": "name (metadata.name)",
}


def problems(job: dict[str, Any], source: str) -> list[Problem]:
    """The converted TuningJob's validation problems ([] when it is valid)."""
    try:
        with warnings.catch_warnings():
            # Optuna's deprecation notices (CmaEsSampler's sigma0 ...) say nothing about the conversion.
            warnings.simplefilter("ignore", FutureWarning)
            validate_document(copy.deepcopy(job), source)
    except InvalidTuningJob as err:
        return err.problems
    return []


def cannot_write(found: list[Problem]) -> str:
    """Why --lossy writes nothing: the parts of the Experiment it has no equivalent left for."""
    gaps = list(dict.fromkeys(_GAPS[p.path] for p in found if p.path in _GAPS))
    others = [p for p in found if p.path not in _GAPS]
    text = "--lossy cannot write a TuningJob"
    if gaps:
        text += ": it would have no " + ", no ".join(gaps)
    if others:
        text += (":" if not gaps else "; and") + " the converted TuningJob would be invalid:\n"
        text += "\n".join(f"  - {p}" for p in others)
    return text
