"""Fast tests of the runtime's pure parts: no processes, no torch."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

import openautoglm_trial
from openautoglm_trial import contract, tasks
from openautoglm_trial.environment import ObjectiveMetric, Stopping, TrialSettings
from openautoglm_trial.errors import ParameterError, SettingsError
from openautoglm_trial.result import TrialResult, encode
from openautoglm_trial.server import Health
from openautoglm_trial.watch import DivergenceWatch, Patience, best_values

TRIAL_IMAGE = Path(openautoglm_trial.__file__).resolve().parents[1]


def test_importing_the_task_registry_does_not_import_torch():
    code = (
        "import sys, openautoglm_trial.tasks as t; t.default_search_space('digits'); "
        "print(sorted(m for m in ('torch', 'transformers', 'sklearn', 'horovod') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(TRIAL_IMAGE)}
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("task", sorted(tasks.TASKS))
def test_every_task_has_a_valid_default_search_space(task):
    spec = tasks.get(task)
    space = tasks.default_search_space(task)
    assert space and all(entry["type"] in {"float", "int", "categorical"} for entry in space)
    json.dumps(space)  # plain data
    names = {hp.name for hp in spec.hyperparameters}
    for entry in space:
        assert entry["name"] in names
        for key, value in entry.get("when", {}).items():
            assert (
                key in names
                and value in spec.hyperparameters[[hp.name for hp in spec.hyperparameters].index(key)].choices
            )
    assert spec.resolve_params({}) == {hp.name: hp.default for hp in spec.hyperparameters}
    assert spec.objective.metric in tasks.task_metrics(task)
    assert "train_loss" in tasks.task_metrics(task)


def test_digits_search_space_matches_the_tuningjob_example():
    space = {entry["name"]: entry for entry in tasks.default_search_space("digits")}
    assert space["lr"] == {"name": "lr", "type": "float", "low": 1e-4, "high": 0.3, "log": True}
    assert space["optimizer"] == {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]}
    assert space["beta1"]["when"] == {"optimizer": "adam"}
    assert "tag" not in space


def test_parameters_are_validated_and_coerced():
    spec = tasks.get("digits")
    resolved = spec.resolve_params({"batch_size": 32.0, "lr": 1, "tag": "$(x)"})
    assert resolved["batch_size"] == 32 and isinstance(resolved["batch_size"], int)
    assert resolved["lr"] == 1.0 and resolved["tag"] == "$(x)"
    with pytest.raises(ParameterError, match="unknown hyperparameters 'a', 'b'"):
        spec.resolve_params({"a": 1, "b": 2})
    with pytest.raises(ParameterError, match="must be of type float"):
        spec.resolve_params({"lr": True})
    with pytest.raises(ParameterError, match="must be an integer"):
        spec.resolve_params({"hidden": 12.5})
    with pytest.raises(SettingsError, match="unknown task setting 'modle'"):
        tasks.get("text-lm").resolve_settings({"modle": "/x"})
    with pytest.raises(SettingsError, match="unknown task 'mnist'"):
        tasks.get("mnist")


def test_result_never_contains_nan_and_fits_the_limit():
    result = TrialResult(
        status="completed",
        metrics={"loss": math.nan, "accuracy": 0.5},
        history={"loss": [math.inf] + [0.123456789] * 2000, "accuracy": [0.5] * 2000},
        info={"tag": "x" * 10_000},
    )
    text = encode(result)
    assert len(text.encode()) <= contract.TERMINATION_MESSAGE_LIMIT
    doc = json.loads(text)  # strict JSON: NaN would not even be written
    assert doc["metrics"] == {"loss": None, "accuracy": 0.5}
    # The newest epochs survive the trimming.
    assert doc["history"]["loss"][-1] == 0.123457
    assert len(doc["history"]["loss"]) > 10
    assert doc["info"]["tag"].endswith("...")


def test_small_result_is_kept_whole():
    result = TrialResult(
        status="stopped", reason="diverged", history={"loss": [1.0, 0.5]}, epochs=2, rank=1, seconds=1.23456
    )
    assert json.loads(encode(result)) == {
        "status": "stopped",
        "reason": "diverged",
        "metrics": {},
        "best": {},
        "history": {"loss": [1.0, 0.5]},
        "epochs": 2,
        "rank": 1,
        "seconds": 1.235,
        "info": {},
    }


def test_divergence_watch():
    watch = DivergenceWatch(Stopping(max_grad_norm=10.0))
    assert watch.check_loss(1.0, 1, 1) is None
    assert watch.check_loss(math.nan, 2, 17) == "diverged: loss is nan at epoch 2 step 17"
    assert watch.check_loss(math.inf, 1, 3) == "diverged: loss is inf at epoch 1 step 3"
    assert watch.check_grad_norm(11.0, 1, 4).startswith("diverged: gradient norm 11 exceeds")
    assert DivergenceWatch(Stopping(max_grad_norm=None)).check_grad_norm(1e30, 1, 1) is None
    assert DivergenceWatch(Stopping(divergence_check=False)).check_loss(math.nan, 1, 1) is None


def test_patience_counts_epochs_without_improvement():
    patience = Patience(ObjectiveMetric("loss", "minimize"), patience=2, min_delta=0.1)
    assert patience.update(1.0) is None
    assert patience.update(0.95) is None  # not better by more than min_delta
    assert patience.update(0.5) is None  # better: counter reset
    assert patience.update(0.45) is None
    assert patience.update(0.6) == "early stopping: no improvement in 2 epochs (loss)"
    history = {"accuracy": [0.1, math.nan, 0.9, 0.8], "loss": [3.0, 1.0]}
    assert best_values(history, (ObjectiveMetric("accuracy", "maximize"), ObjectiveMetric("loss", "minimize"))) == {
        "accuracy": 0.9,
        "loss": 1.0,
    }


def _env(**extra: str) -> dict[str, str]:
    return {contract.TASK: "digits", **extra}


def test_settings_from_a_launcher_environment():
    env = _env(
        **{
            contract.TRIAL_STOPPING: json.dumps({"maxGradNorm": None, "patience": 3, "future": 1}),
            contract.OBJECTIVE_METRICS: json.dumps([{"metric": "loss", "direction": "minimize"}]),
            contract.WORKER_HOSTS: "a,b",
            **contract.horovod_env(1, ["a", "b"]),
        }
    )
    settings = TrialSettings.from_env(env)
    assert settings.stopping == Stopping(max_grad_norm=None, patience=3)
    assert settings.objectives == (ObjectiveMetric("loss", "minimize"),)
    assert settings.horovod.rank == 1 and settings.horovod.worker_hosts == ("a", "b")
    assert TrialSettings.from_env(_env()).horovod.standalone
    assert TrialSettings.from_env(_env()).stopping.max_grad_norm == contract.DEFAULT_MAX_GRAD_NORM


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({}, "OPENAUTOGLM_TASK is not set"),
        (_env(**{contract.PARAMS: "{not json"}), "OPENAUTOGLM_TRIAL_PARAMS is not valid JSON"),
        (_env(**{contract.PARAMS: "[1]"}), "must be a JSON dict"),
        (_env(**{contract.EPOCHS: "0"}), "OPENAUTOGLM_EPOCHS must be >= 1"),
        (_env(**{contract.TRIAL_STOPPING: '{"patience": 0}'}), "patience must be an integer >= 1"),
        (_env(**{contract.OBJECTIVE_METRICS: '[{"metric": "a", "direction": "up"}]'}), "must be maximize or minimize"),
        (_env(HOROVOD_SIZE="2"), "needs HOROVOD_GLOO_RENDEZVOUS_ADDR"),
        (
            _env(
                HOROVOD_SIZE="2",
                HOROVOD_RANK="0",
                HOROVOD_GLOO_RENDEZVOUS_ADDR="a",
                HOROVOD_HOSTNAME="a",
                **{contract.WORKER_HOSTS: "a"},
            ),
            "must list the HOROVOD_HOSTNAME of all 2 ranks",
        ),
    ],
)
def test_bad_settings_name_the_variable(env, words):
    with pytest.raises(SettingsError, match=words.replace("(", r"\(")):
        TrialSettings.from_env(env)


@pytest.mark.horovod
def test_host_plan_is_one_slot_per_worker_in_rank_order():
    from openautoglm_trial.environment import HorovodPlacement
    from openautoglm_trial.rendezvous import host_plan

    plan = host_plan(HorovodPlacement(size=3, rendezvous_addr="w0", worker_hosts=("w0", "w1", "w2")))
    assert [(s.hostname, s.rank, s.local_rank, s.local_size, s.cross_rank, s.cross_size) for s in plan] == [
        ("w0", 0, 0, 1, 0, 3),
        ("w1", 1, 0, 1, 1, 3),
        ("w2", 2, 0, 1, 2, 3),
    ]


def test_health_reports_a_stuck_training_loop():
    health = Health(stall_seconds=0.05)
    assert not health.ready and health.live() == (True, "ok")
    health.mark_ready()
    health.start_training()
    assert health.ready and health.live()[0]
    time.sleep(0.1)
    live, why = health.live()
    assert not live and why.startswith("training loop stuck")
    health.beat()
    assert health.live()[0]
