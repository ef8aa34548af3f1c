"""The Optuna study of a TuningJob: created once, reloaded after any restart."""
from __future__ import annotations

import hashlib
import json
import warnings

import optuna

from openautoglm import pruners, samplers
from openautoglm.spec import TuningJob
from openautoglm.engine.storage import open_storage

#: Study user attributes the engine keeps (the study is the source of truth with the pods).
ATTR_FINGERPRINT = "openautoglm:fingerprint"
ATTR_WARM_STARTED = "openautoglm:warm_started"
ATTR_ELAPSED = "openautoglm:elapsed_seconds"
ATTR_PHASE = "openautoglm:phase"
ATTR_REASON = "openautoglm:reason"
ATTR_MESSAGE = "openautoglm:message"


class StudyMismatch(RuntimeError):
    """The stored study was made by a TuningJob with another search space or objective."""


def fingerprint(job: TuningJob) -> str:
    """Hash of what makes trials comparable: objective and search space (not the budget,
    which a user may raise to continue a finished study)."""
    spec = job.spec
    doc = {
        "objective": [o.model_dump() for o in spec.objective.objectives],
        "parameters": [p.model_dump(by_alias=True, exclude_none=True) for p in spec.parameters],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def study_name(job: TuningJob) -> str:
    ns = job.metadata.namespace
    return f"{ns}/{job.name}" if ns else job.name


def open_study(job: TuningJob, storage_url: str) -> optuna.Study:
    """Create the job's study, or load it (with the job's sampler and pruner) if it exists."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = job.spec
    study = optuna.create_study(
        study_name=study_name(job),
        storage=open_storage(storage_url),
        sampler=samplers.build_sampler(spec),
        pruner=pruners.build_pruner(spec),
        directions=[o.direction for o in spec.objective.objectives],
        load_if_exists=True,
    )
    if not study.metric_names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.metric for o in spec.objective.objectives])  # labels reports and dashboards
    stored = study.user_attrs.get(ATTR_FINGERPRINT)
    mine = fingerprint(job)
    if stored is None:
        study.set_user_attr(ATTR_FINGERPRINT, mine)
    elif stored != mine:
        raise StudyMismatch(
            f"study {study.study_name!r} in {storage_url} was created with another objective or search "
            "space; delete it (openautoglm tune --fresh) or use another job name"
        )
    if not study.user_attrs.get(ATTR_WARM_STARTED):
        # Known-good configurations (e.g. today's manual setting) run first.
        for ws in spec.warm_start:
            study.enqueue_trial(dict(ws.params), skip_if_exists=True)
        study.set_user_attr(ATTR_WARM_STARTED, True)
    return study


def reopen_if_budget_raised(job: TuningJob, study: optuna.Study) -> bool:
    """A job that ended on its budget continues when the user raised that budget
    (as Katib restarts an experiment whose maxTrialCount was increased)."""
    attrs = study.user_attrs
    reason = attrs.get(ATTR_REASON)
    budget = job.spec.budget
    finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    more_trials = reason == "MaxTrialsReached" and finished < budget.max_trials
    more_time = (reason == "Timeout" and budget.timeout_seconds is not None
                 and float(attrs.get(ATTR_ELAPSED, 0.0)) < budget.timeout_seconds)
    if attrs.get(ATTR_PHASE) and (more_trials or more_time):
        for key in (ATTR_PHASE, ATTR_REASON, ATTR_MESSAGE):
            study.set_user_attr(key, None)
        return True
    return False
