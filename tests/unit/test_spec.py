"""TuningJob validation: every example loads; every malformed job (tests/malformed_jobs.py) is refused at its path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from helpers import digits_job, mutate
from malformed_jobs import MALFORMED, MULTI, Malformed

from openautoglm import samplers
from openautoglm.spec import TuningJob, sampler_name
from openautoglm.validation import InvalidTuningJob, load_tuning_job, validate_document

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (REPO / "examples").rglob("*.yaml") if "kind: TuningJob" in p.read_text())


def _problems(doc: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidTuningJob) as info:
        validate_document(doc)
    return [(p.path, p.message) for p in info.value.problems]


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_loads(example: Path) -> None:
    job = load_tuning_job(example)
    assert job.kind == "TuningJob"
    assert job.spec.parameters


def test_there_are_examples() -> None:
    assert EXAMPLES, "examples/*.yaml is empty"


def test_base_job_is_valid() -> None:
    job = validate_document(digits_job())
    assert job.name == "digits-test"
    assert [p.name for p in job.spec.parameters] == ["lr", "batch_size", "hidden", "optimizer", "beta1", "momentum"]


def test_enough_malformed_cases() -> None:
    assert len(MALFORMED) >= 35
    assert len({case.id for case in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize("case", MALFORMED, ids=[c.id for c in MALFORMED])
def test_malformed_job_is_rejected_with_its_path(case: Malformed) -> None:
    if case.validate is None:  # only the CRD refuses it (tests/malformed_jobs.py says why)
        validate_document(case.job())
        return
    path, fragment = case.validate
    problems = _problems(case.job())
    messages = [m for p, m in problems if p == path]
    assert messages, f"no problem at {path}; got {problems}"
    assert any(fragment in m for m in messages), f"{fragment!r} not in the messages at {path}: {messages}"


@pytest.mark.parametrize("doc", [None, "digits", [digits_job()], 42], ids=["null", "string", "list", "number"])
def test_non_mapping_document_is_rejected(doc: Any) -> None:
    problems = _problems(doc)
    assert problems[0][0] == "(document)"
    assert "must be a mapping" in problems[0][1]


def test_invalid_yaml_file_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("apiVersion: openautoglm.io/v1alpha1\nkind: TuningJob\nspec:\n  objective: {metric: accuracy\n")
    with pytest.raises(InvalidTuningJob) as info:
        load_tuning_job(f)
    assert [p.path for p in info.value.problems] == ["(document)"]
    assert "not valid YAML" in info.value.problems[0].message
    assert str(f) in str(info.value)


def test_file_with_other_documents_yields_its_tuning_job(tmp_path: Path) -> None:
    f = tmp_path / "bundle.yaml"
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "corpus"}}
    f.write_text(yaml.safe_dump_all([other, digits_job(name="bundled")]))
    assert load_tuning_job(f).name == "bundled"


def test_every_problem_is_reported_at_once() -> None:
    doc = digits_job()
    for path, value in [
        ("apiVersion", "v1"),
        ("metadata.name", "Digits_MLP"),
        ("spec.budget.parallelism", 9),
        ("spec.parameters[0].high", 1.0e-4),
        ("spec.trial.workers", 0),
        ("spec.trial.resources.requests.memory", "lots"),
        ("spec.budjet", {}),
    ]:
        mutate(doc, path, value)
    paths = {p for p, _ in _problems(doc)}
    assert {
        "apiVersion",
        "metadata.name",
        "spec.budget.parallelism",
        "spec.parameters[0].high",
        "spec.trial.workers",
        "spec.trial.resources.requests.memory",
        "spec.budjet",
    } <= paths


def test_several_rule_problems_in_one_parameter_are_all_reported() -> None:
    doc = mutate(
        digits_job(),
        "spec.parameters[2]",
        {"name": "hidden", "type": "int", "low": 0.5, "high": 0.25, "log": True, "step": 2},
    )
    paths = [p for p, _ in _problems(doc)]
    assert {"spec.parameters[2].low", "spec.parameters[2].high", "spec.parameters[2].step"} <= set(paths)


def test_defaults_are_filled() -> None:
    doc = digits_job()
    doc["spec"] = {
        "objective": {"metric": "accuracy", "direction": "maximize"},
        "parameters": [{"name": "lr", "type": "float", "low": 1.0e-3, "high": 0.1, "log": True}],
        "trial": {"task": "digits"},
    }
    spec = validate_document(doc).spec
    assert spec.budget.parallelism == 1
    assert spec.budget.max_trials >= 1
    assert spec.algorithm.sampler is None and sampler_name(spec) == "auto"
    assert spec.early_stopping.pruner == "none"
    assert spec.trial.workers == 1
    assert spec.trial.epochs >= 1
    assert spec.metrics.port == 9090
    assert spec.metrics.source == "scrape"
    assert spec.warm_start == []


def test_several_objectives_default_to_nsga2() -> None:
    doc = digits_job(objective={"metrics": MULTI}, earlyStopping={"pruner": "none"})
    doc["spec"]["algorithm"].pop("sampler")
    spec = validate_document(doc).spec
    assert sampler_name(spec) == "nsga2"
    assert type(samplers.build_sampler(spec)).__name__ == "NSGAIISampler"


def test_several_objectives_are_an_object_with_metrics() -> None:
    with pytest.raises(InvalidTuningJob) as bare:
        validate_document(digits_job(objective=MULTI, earlyStopping={"pruner": "none"}))
    assert any(p.path == "spec.objective" and "{metrics: [" in p.message for p in bare.value.problems)
    job = validate_document(digits_job(objective={"metrics": MULTI}, earlyStopping={"pruner": "none"}))
    assert job.spec.objective.is_multi
    assert [(o.metric, o.direction) for o in job.spec.objective.objectives] == [
        ("accuracy", "maximize"),
        ("loss", "minimize"),
    ]


def test_validated_job_round_trips_through_its_yaml_names() -> None:
    job = validate_document(digits_job())
    dumped = job.model_dump(by_alias=True, exclude_none=True)
    assert "earlyStopping" in dumped["spec"] and "maxTrials" in dumped["spec"]["budget"]
    assert TuningJob.model_validate(dumped) == job


def test_job_is_immutable() -> None:
    job = validate_document(digits_job())
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        job.spec.budget.max_trials = 100  # type: ignore[misc]


# ----------------------------------------------------------------------------- the CLI
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openautoglm.cli", *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_cli_validate_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    doc = digits_job()
    mutate(doc, "spec.budget.parallelism", 9)
    mutate(doc, "spec.parameters[0].high", 1.0e-4)
    mutate(doc, "spec.trial.workers", 65)
    mutate(doc, "spec.budjet", {})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    proc = _cli("validate", str(bad))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    for path in ("spec.budget.parallelism", "spec.parameters[0].high", "spec.trial.workers", "spec.budjet"):
        assert f"{path}:" in out, out
    assert str(bad) in out


def test_cli_validate_plugin_problem_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad-sampler.yaml"
    bad.write_text(yaml.safe_dump(digits_job(algorithm={"sampler": "bayes"})))
    proc = _cli("validate", str(bad))
    assert proc.returncode == 2
    assert "spec.algorithm.sampler: unknown sampler 'bayes'" in proc.stdout + proc.stderr


@pytest.mark.skipif(not EXAMPLES, reason="no examples")
def test_cli_validate_accepts_the_examples() -> None:
    proc = _cli("validate", *map(str, EXAMPLES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is valid" in proc.stdout


@pytest.mark.parametrize(
    "section,settings,path",
    [
        (
            "algorithm",
            {"sampler": "tpe", "settings": {"n_ei_candidates": "x"}},
            "spec.algorithm.settings.n_ei_candidates",
        ),
        ("algorithm", {"sampler": "tpe", "settings": {"multivariate": 1}}, "spec.algorithm.settings.multivariate"),
        (
            "algorithm",
            {"sampler": "policy-gradient", "settings": {"learning_rate": "fast"}},
            "spec.algorithm.settings.learning_rate",
        ),
        (
            "earlyStopping",
            {"pruner": "median", "settings": {"n_startup_trials": 2.5}},
            "spec.earlyStopping.settings.n_startup_trials",
        ),
    ],
)
def test_plugin_settings_of_the_wrong_type_are_refused_before_any_trial(section, settings, path) -> None:
    with pytest.raises(InvalidTuningJob) as err:
        validate_document(digits_job(**{section: settings}))
    assert any(p.path == path and "must be" in p.message for p in err.value.problems), err.value.problems


def test_start_from_defaults_is_on_for_built_in_tasks_and_refused_for_programs():
    from openautoglm.spec import starts_from_defaults

    task = TuningJob.model_validate(digits_job())
    assert task.spec.algorithm.start_from_defaults is None and starts_from_defaults(task.spec)
    grid = TuningJob.model_validate(digits_job(algorithm={"sampler": "grid"}))
    assert not starts_from_defaults(grid.spec)
    off = TuningJob.model_validate(digits_job(algorithm={"startFromDefaults": False}))
    assert not starts_from_defaults(off.spec)
    doc = digits_job(algorithm={"startFromDefaults": True})
    doc["spec"]["trial"] = {"command": ["python", "train.py"], "epochs": 2, "workers": 1}
    with pytest.raises(InvalidTuningJob) as err:
        validate_document(doc)
    assert any(p.path == "spec.algorithm.startFromDefaults" and "warmStart" in p.message for p in err.value.problems)


def test_defaults_are_projected_onto_the_search_space():
    from openautoglm import space

    doc = digits_job()
    doc["spec"]["parameters"] = [
        {"name": "lr", "type": "float", "low": 0.01, "high": 0.3, "log": True},  # default 0.001: outside
        {"name": "hidden", "type": "int", "low": 32, "high": 256, "step": 32},  # 128: on the step
        {"name": "layers", "type": "int", "low": 1, "high": 3, "step": 2},  # 2: off the step (1, 3)
        {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]},
        {"name": "beta1", "type": "float", "low": 0.8, "high": 0.99, "when": {"optimizer": "adam"}},
        {"name": "momentum", "type": "float", "low": 0.0, "high": 0.99, "when": {"optimizer": "sgd"}},
        {"name": "dropout", "type": "fixed", "value": 0.3},
    ]
    spec = TuningJob.model_validate(doc).spec
    defaults = {"lr": 0.001, "hidden": 128, "layers": 2, "optimizer": "adam", "beta1": 0.9, "momentum": 0.9}
    assert space.default_params(spec, defaults) == {"hidden": 128, "optimizer": "adam", "beta1": 0.9}
    # With no default for the condition's parent, its children are left to the sampler too.
    assert space.default_params(spec, {"beta1": 0.9}) == {}


def test_null_is_absent_as_for_the_api_server() -> None:
    """A null field (YAML `budget:` with every line commented out) gets its default, and a null in a
    map of requests is dropped, as the API server stores them (found by tests/k8s/test_fuzz.py:
    kubectl admitted these, validate refused them); maxGradNorm's null still switches the check off."""
    doc = digits_job(budget=None, metrics=None)
    doc["spec"]["trial"]["epochs"] = None
    doc["spec"]["trial"]["resources"] = {"requests": {"cpu": None}, "limits": {"cpu": "2"}}
    doc["spec"]["earlyStopping"]["maxGradNorm"] = None
    spec = validate_document(doc).spec
    assert (spec.budget.max_trials, spec.metrics.port, spec.trial.epochs) == (10, 9090, 10)
    assert spec.trial.resources.effective() == ({"cpu": "2"}, {"cpu": "2"})
    assert spec.early_stopping.max_grad_norm is None
    with pytest.raises(InvalidTuningJob, match="spec.trial: required field is missing"):
        validate_document(digits_job(trial=None))


def test_a_quantity_with_a_huge_exponent_is_judged_not_raised():
    """Found by tests/k8s/test_fuzz.py: `0e1000000` overflowed Python's decimal context inside the
    requests <= limits check and raised out of validation instead of being judged."""
    doc = digits_job()
    doc["spec"]["trial"]["resources"] = {"requests": {"cpu": "1"}, "limits": {"cpu": "0e1000000"}}
    with pytest.raises(InvalidTuningJob) as err:
        validate_document(doc)
    assert [p.path for p in err.value.problems] == ["spec.trial.resources.limits.cpu"]
    doc["spec"]["trial"]["resources"] = {"limits": {"cpu": "1e1000000"}}
    assert validate_document(doc).spec.trial.resources.limits == {"cpu": "1e1000000"}
