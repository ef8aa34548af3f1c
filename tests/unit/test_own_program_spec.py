"""A user's own program in the TuningJob: command placeholders, collectors, metric strategies,
resources with Kubernetes semantics, Katib-style settings — and the environment it gets."""

from __future__ import annotations

import json
from typing import Any

import optuna
import pytest

from openautoglm.engine.worker import build_worker_env, worker_command
from openautoglm.samplers import build_sampler
from openautoglm.space import suggest
from openautoglm.spec import DEFAULT_REQUESTS, Resources
from openautoglm.validation import InvalidTuningJob, validate_document
from openautoglm_trial import contract as c


def own_job(**spec: Any) -> dict[str, Any]:
    doc = {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": "own"},
        "spec": {
            "objective": {"metric": "Validation-accuracy", "direction": "maximize"},
            "parameters": [
                {"name": "lr", "type": "float", "low": 0.001, "high": 0.1, "log": True},
                {"name": "num-layers", "type": "int", "low": 1, "high": 4},
            ],
            "trial": {
                "command": [
                    "python",
                    "train.py",
                    "--lr=${trialParameters.lr}",
                    "--num-layers=${trialParameters.num-layers}",
                ]
            },
        },
    }
    doc["spec"].update(spec)
    return doc


def problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidTuningJob) as info:
        validate_document(doc)
    return [(p.path, p.message) for p in info.value.problems]


def test_katib_names_and_placeholders_are_accepted() -> None:
    job = validate_document(own_job())
    assert [p.name for p in job.spec.parameters] == ["lr", "num-layers"]
    assert job.spec.metrics.effective_collector.kind == "stdout"  # Katib's default collector


def test_a_placeholder_must_name_a_parameter() -> None:
    doc = own_job()
    doc["spec"]["trial"]["command"].append("--depth=${trialParameters.depth}")
    [(path, msg)] = problems(doc)
    assert path == "spec.trial.command[4]" and "names no parameter" in msg and "num-layers" in msg


def test_the_native_collector_cannot_substitute_placeholders() -> None:
    [(path, msg)] = problems(own_job(metrics={"collector": {"kind": "native"}}))
    assert path == "spec.trial.command" and "supervisor" in msg


@pytest.mark.parametrize(
    ("collector", "path", "fragment"),
    [
        ({"kind": "file"}, "spec.metrics.collector.path", "required for the file collector"),
        ({"kind": "prometheus"}, "spec.metrics.collector.port", "required for the prometheus collector"),
        ({"kind": "prometheus", "port": 9090}, "spec.metrics.collector.port", "taken by the trial supervisor"),
        ({"kind": "stdout", "filter": "([a-z]+"}, "spec.metrics.collector.filter", "not a valid regular expression"),
        ({"kind": "stdout", "filter": r"(\w+)=\d+"}, "spec.metrics.collector.filter", "two groups"),
        (
            {"kind": "file", "path": "/m.json", "format": "json", "filter": r"(\w+)=(\d+)"},
            "spec.metrics.collector.filter",
            "only for the stdout collector and text files",
        ),
        ({"kind": "push", "port": 8000}, "spec.metrics.collector.port", "only for the prometheus collector"),
        ({"kind": "tensorboard"}, "spec.metrics.collector.kind", "'stdout', 'file', 'prometheus', 'push' or 'native'"),
    ],
)
def test_bad_collectors_are_rejected_with_their_path(collector: dict, path: str, fragment: str) -> None:
    found = problems(own_job(metrics={"collector": collector}))
    assert any(p == path and fragment in m for p, m in found), found


def test_metric_strategies_default_like_katib_and_can_be_set() -> None:
    job = validate_document(
        own_job(
            objective={
                "metric": "loss",
                "direction": "minimize",
                "additionalMetrics": ["accuracy", "Train-loss"],
                "metricStrategies": {"accuracy": "max"},
            }
        )
    )
    assert job.spec.objective.strategies() == {"loss": "min", "accuracy": "max", "Train-loss": "latest"}
    latest = validate_document(own_job(objective={"metric": "loss", "direction": "minimize", "strategy": "latest"}))
    assert latest.spec.objective.strategies() == {"loss": "latest"}


def test_resources_follow_the_api_servers_rules() -> None:
    assert Resources().effective()[0] == DEFAULT_REQUESTS
    # Katib's examples give limits only: requests default to them, not to our 1 CPU / 1Gi.
    assert Resources(limits={"cpu": "500m", "memory": "128Mi"}).effective() == (
        {"cpu": "500m", "memory": "128Mi"},
        {"cpu": "500m", "memory": "128Mi"},
    )
    gpu = Resources(requests={"cpu": "2"}, limits={"nvidia.com/gpu": "1", "cpu": "4"}).effective()
    assert gpu == ({"cpu": "2", "nvidia.com/gpu": "1"}, {"nvidia.com/gpu": "1", "cpu": "4"})
    found = problems(
        own_job(
            trial={
                "command": ["python", "t.py"],
                "resources": {
                    "requests": {"cpu": "2", "memory": "1Gi"},
                    "limits": {"cpu": "1500m", "memory": "1024Mi"},
                },
            }
        )
    )
    assert found == [("spec.trial.resources.limits.cpu", "must be >= requests.cpu (2), got 1500m")]


def test_katib_tpe_settings_validate_and_sample() -> None:
    # Katib's tpe is Optuna's TPESampler with multivariate off; group then has to be off too.
    job = validate_document(
        own_job(algorithm={"sampler": "tpe", "seed": 1, "settings": {"multivariate": False, "constant_liar": True}})
    )
    study = optuna.create_study(direction="maximize", sampler=build_sampler(job.spec))
    for _ in range(6):
        trial = study.ask()
        study.tell(trial, -abs(suggest(trial, job.spec)["lr"] - 0.01))
    assert len(study.trials) == 6


def test_a_supervised_program_gets_its_command_and_collector_through_the_environment() -> None:
    job = validate_document(
        own_job(
            objective={"metric": "accuracy", "direction": "maximize", "additionalMetrics": ["loss"]},
            metrics={"collector": {"kind": "file", "path": "/var/log/metrics.log"}},
        )
    )
    env = build_worker_env(job, 3, 0, {"lr": 0.01, "num-layers": 2}, ["h0"], bind_address="127.0.0.1")
    assert worker_command(job) == ["python", "-m", "openautoglm_trial"]
    assert json.loads(env[c.COMMAND]) == job.spec.trial.command  # placeholders for the supervisor
    collector = json.loads(env[c.COLLECTOR])
    assert collector["kind"] == "file" and collector["path"] == "/var/log/metrics.log"
    assert collector["filter"]  # the widened Katib filter, resolved here so both sides agree
    assert json.loads(env[c.METRIC_STRATEGIES]) == {"accuracy": "max", "loss": "latest"}
    assert json.loads(env[c.ADDITIONAL_METRICS]) == ["loss"]
    assert json.loads(env[c.PARAMS]) == {"lr": 0.01, "num-layers": 2}


def test_a_native_program_runs_as_it_is() -> None:
    doc = own_job(metrics={"collector": {"kind": "native"}})
    doc["spec"]["trial"]["command"] = ["python", "my_contract_speaker.py"]
    job = validate_document(doc)
    env = build_worker_env(job, 0, 0, {"lr": 0.01}, ["h0"], bind_address="127.0.0.1")
    assert worker_command(job) == ["python", "my_contract_speaker.py"] and c.COMMAND not in env
