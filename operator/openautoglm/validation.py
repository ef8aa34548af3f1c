"""Load and validate TuningJobs, reporting every problem at once with its field path.

Validation is a pure function that returns problems; callers decide how to fail
(the CLI exits non-zero, the operator turns them into a permanent error).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from openautoglm.spec import Parameter, TuningJob, TuningJobSpec
from openautoglm.specbase import SpecProblems


@dataclasses.dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidTuningJob(ValueError):
    def __init__(self, problems: list[Problem], source: str = "TuningJob"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} is invalid ({len(problems)} problem{'s' * (len(problems) != 1)}):\n{lines}")


def _join(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def _from_pydantic(err: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for e in err.errors(include_url=False):
        loc = list(e["loc"])
        # Model validators raised SpecProblems: expand each named field into its own problem.
        exc = (e.get("ctx") or {}).get("error")
        if isinstance(exc, SpecProblems):
            for field, msg in exc.problems:
                problems.append(Problem(_join(loc) + ("." + field if field else "") if loc else field, msg))
            continue
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; fields are camelCase)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] in ("literal_error", "enum"):
            msg = f"{msg}, got {e.get('input')!r}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        problems.append(Problem(_join(loc), msg))
    return problems


def plugin_problems(job: TuningJob) -> list[Problem]:
    """Checks that need the plugin registries (samplers, pruners, tasks)."""
    from openautoglm import pruners, samplers
    from openautoglm_trial.tasks import TASKS

    problems: list[Problem] = []
    spec = job.spec
    for path, msg in samplers.check(spec):
        problems.append(Problem(f"spec.algorithm.{path}", msg))
    for path, msg in pruners.check(spec):
        problems.append(Problem(f"spec.earlyStopping.{path}", msg))
    task = spec.trial.task
    if task is not None and task not in TASKS:
        problems.append(Problem("spec.trial.task", f"unknown task {task!r}; built-in tasks: {sorted(TASKS)}"))
    elif task is not None:
        # Catch a typo here rather than as N failed trials.
        known = {h.name for h in TASKS[task].hyperparameters}
        for i, p in enumerate(spec.parameters):
            if p.name not in known:
                problems.append(
                    Problem(
                        f"spec.parameters[{i}].name",
                        f"{p.name!r} is not a hyperparameter of the {task} task; known: {sorted(known)}",
                    )
                )
        for k in spec.trial.task_settings:
            if k not in TASKS[task].settings:
                problems.append(
                    Problem(
                        f"spec.trial.taskSettings.{k}",
                        f"unknown setting of the {task} task; known: {sorted(TASKS[task].settings)}",
                    )
                )
        for k, msg in TASKS[task].setting_problems(spec.trial.task_settings, spec.trial.launcher):
            problems.append(Problem(f"spec.trial.taskSettings.{k}", msg))  # distributed, zero
        problems += _task_problems(spec, TASKS[task])
    from openautoglm import podtemplate  # the pod template's schema, owned fields and Pod Security

    for path, msg in podtemplate.problems(spec.trial.pod_template, taken_env=[e.name for e in spec.trial.env]):
        problems.append(Problem(f"spec.trial.podTemplate.{path}".rstrip("."), msg))
    return problems


def _task_problems(spec: TuningJobSpec, task: Any) -> list[Problem]:
    """What a built-in task would refuse when its first trial starts: caught at validate time."""
    problems: list[Problem] = []
    reported = list(task.metrics)
    objective = spec.objective
    wanted = (
        [(f"spec.objective.metrics[{i}].metric", o.metric) for i, o in enumerate(objective.metrics)]
        if objective.metrics is not None
        else [("spec.objective.metric", objective.metric)]
    )
    wanted += [(f"spec.objective.additionalMetrics[{i}]", m) for i, m in enumerate(objective.additional_metrics)]
    for path, name in wanted:
        if name not in reported:
            problems.append(Problem(path, f"the {task.name} task never reports {name!r}; it reports {reported}"))
    bounds = {h.name: h for h in task.hyperparameters}
    for i, p in enumerate(spec.parameters):
        h = bounds.get(p.name)
        if h is None:
            continue
        where = f"spec.parameters[{i}]"
        if (h.kind == "int" and p.type == "float") or (h.kind == "str" and p.type in ("float", "int")):
            problems.append(
                Problem(
                    f"{where}.type",
                    f"{p.name!r} is {'an' if h.kind == 'int' else 'a'} {h.kind} hyperparameter of the {task.name} "
                    f"task; a {p.type} range would give it values it refuses",
                )
            )
            continue
        for field, value in _values(p):
            problem = _out_of_bounds(h, value)
            if problem:
                problems.append(Problem(f"{where}.{field}", f"{problem} (the {task.name} task's bounds)"))
    return problems


def _values(p: Parameter) -> list[tuple[str, Any]]:
    """(field, value) pairs of a parameter that a trial could receive at the extremes."""
    if p.type in ("float", "int"):
        return [("low", p.low), ("high", p.high)]
    if p.type == "categorical":
        return [(f"choices[{i}]", c) for i, c in enumerate(p.choices or [])]
    return [("value", p.value)]


def _out_of_bounds(h: Any, value: Any) -> str | None:
    from openautoglm_trial.errors import ParameterError

    try:
        h.coerce(value)
    except ParameterError as err:
        return str(err)
    return None


def validate_document(doc: Any, source: str = "TuningJob") -> TuningJob:
    """Return the TuningJob with defaults filled in, or raise InvalidTuningJob listing every problem."""
    if not isinstance(doc, dict):
        raise InvalidTuningJob(
            [Problem("(document)", f"must be a mapping (a TuningJob), got {type(doc).__name__}")], source
        )
    try:
        # Strict, as the API server's schema: `maxTrials: "12"` is a string there, not a number.
        job = TuningJob.model_validate(doc, strict=True)
    except ValidationError as err:
        raise InvalidTuningJob(_from_pydantic(err), source) from None
    problems = plugin_problems(job)
    if problems:
        raise InvalidTuningJob(problems, source)
    return job


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading numbers as kubectl does: YAML 1.1 (PyYAML) wants a dot in a
    float, so ``low: 1e-4`` would be the string "1e-4" here and the number 0.0001 to kubectl
    (go-yaml); strict validation would then refuse what the API server accepts."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+|[0-9]+\.[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_documents(path: str | Path) -> list[Any]:
    text = Path(path).read_text()
    try:
        return [d for d in yaml.load_all(text, Loader=_YamlLoader) if d is not None]  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as err:
        raise InvalidTuningJob([Problem("(document)", f"not valid YAML: {err}")], str(path)) from None


def load_tuning_job(path: str | Path) -> TuningJob:
    """Load the single TuningJob of a YAML file."""
    docs = load_documents(path)
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "TuningJob"]
    if len(docs) == 1:
        return validate_document(docs[0], str(path))
    if len(jobs) != 1:
        raise InvalidTuningJob(
            [Problem("(document)", f"expected exactly one TuningJob in the file, found {len(jobs)}")], str(path)
        )
    return validate_document(jobs[0], str(path))
