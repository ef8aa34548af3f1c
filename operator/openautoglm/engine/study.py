"""The Optuna study of a TuningJob: created once, reloaded after any restart."""

from __future__ import annotations

import hashlib
import json
import warnings

import optuna

from openautoglm import pruners, samplers, space
from openautoglm.engine import attrs
from openautoglm.engine.storage import open_storage
from openautoglm.spec import TuningJob, TuningJobSpec, sampler_name, starts_from_defaults


class StudyMismatch(RuntimeError):
    """The stored study was made by a TuningJob with another search space, objective or sampler."""


def _digest(doc: object) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def fingerprints(job: TuningJob) -> dict[str, str]:
    """Hashes of what makes the study's trials comparable, by spec field: the search space,
    the objective (metrics and directions) and the sampler (name and settings). Not the
    budget, the pruner or the trial template, which a user may edit on a live job."""
    spec = job.spec
    return {
        "spec.parameters": _digest([p.model_dump(by_alias=True, exclude_none=True) for p in spec.parameters]),
        "spec.objective": _digest([o.model_dump() for o in spec.objective.objectives]),
        "spec.algorithm": _digest({"sampler": sampler_name(spec), "settings": spec.algorithm.settings}),
        # The workers of a running trial are counted against it: a new count cannot apply to them.
        "spec.trial.workers": _digest(spec.trial.workers),
    }


def fingerprint(job: TuningJob) -> str:
    """One hash of objective and search space (kept in studies made before per-field fingerprints)."""
    spec = job.spec
    return _digest(
        {
            "objective": [o.model_dump() for o in spec.objective.objectives],
            "parameters": [p.model_dump(by_alias=True, exclude_none=True) for p in spec.parameters],
        }
    )


def immutable_differences(old: TuningJob, new: TuningJob) -> list[str]:
    """The spec fields an edit from ``old`` to ``new`` changes that the study depends on."""
    a, b = fingerprints(old), fingerprints(new)
    return [field for field in a if a[field] != b[field]]


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
    _check_fingerprints(job, study, storage_url)
    if not study.user_attrs.get(attrs.STUDY_WARM_STARTED):
        enqueue_starting_points(study, spec)
        study.set_user_attr(attrs.STUDY_WARM_STARTED, True)
    return study


def enqueue_starting_points(study: optuna.Study, spec: TuningJobSpec) -> None:
    """Where a person starts, first: the built-in task's defaults (``startFromDefaults``), then
    the known-good configurations of ``warmStart`` (e.g. today's manual setting). Once, when the
    study is created; the sampler treats them like any other trial."""
    if spec.trial.task is not None and starts_from_defaults(spec):
        from openautoglm_trial.tasks import get as task_spec

        params = space.default_params(spec, task_spec(spec.trial.task).defaults())
        if params:
            study.enqueue_trial(params, user_attrs={attrs.TRIAL_ORIGIN: "defaults"}, skip_if_exists=True)
    for ws in spec.warm_start:
        study.enqueue_trial(dict(ws.params), user_attrs={attrs.TRIAL_ORIGIN: "warmStart"}, skip_if_exists=True)


def _check_fingerprints(job: TuningJob, study: optuna.Study, storage_url: str) -> None:
    """Refuse a spec whose search space, objective or sampler differ from the study's, naming them."""
    mine = fingerprints(job)
    stored = study.user_attrs.get(attrs.STUDY_FINGERPRINTS)
    legacy = study.user_attrs.get(attrs.STUDY_FINGERPRINT)
    if stored is None and legacy is not None and legacy != fingerprint(job):
        changed = ["spec.parameters or spec.objective"]  # a study from before per-field fingerprints
    else:
        changed = [f for f, h in (stored or {}).items() if mine.get(f) != h]
    if "spec.algorithm" in changed and job.spec.algorithm.sampler is None and stored is not None:
        # Made when an unset sampler meant tpe (before "auto"): auto reads the same trials.
        former = _digest({"sampler": "tpe", "settings": job.spec.algorithm.settings})
        if stored["spec.algorithm"] == former and not job.spec.objective.is_multi:
            changed.remove("spec.algorithm")
    if changed:
        raise StudyMismatch(
            f"study {study.study_name!r} in {storage_url} was created with another {', '.join(changed)}: "
            "its trials were sampled from those; delete it (openautoglm tune --fresh) or use another job name"
        )
    if stored != mine:
        study.set_user_attr(attrs.STUDY_FINGERPRINTS, mine)
    if legacy is None:
        study.set_user_attr(attrs.STUDY_FINGERPRINT, fingerprint(job))
