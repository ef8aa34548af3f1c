"""A real study: 6 digits trials, each trained by 2 Horovod workers, with pruning and divergence."""

import json
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState

from openautoglm.config import Settings
from openautoglm.local.runner import run_local
from openautoglm.validation import validate_document

FAST = Settings(workdir=None, storage=None, local_tick_seconds=0.2, elapsed_save_seconds=5, log_level="WARNING")


@pytest.mark.slow
def test_six_trial_study_prunes_stops_divergence_and_reports_best(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "canary").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))  # `; rm -rf ~` would hit this home, not the real one
    pwned = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    evil = [f"$(touch {pwned})", "; rm -rf ~", "`touch " + str(pwned) + "`"]
    doc = {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": "digits-e2e"},
        "spec": {
            "objective": {"metric": "accuracy", "direction": "maximize"},
            "budget": {"maxTrials": 6, "parallelism": 2, "maxFailedTrials": 0},
            # The warmStart trials below are numbered 0-3 (no defaults trial before them).
            "algorithm": {"sampler": "tpe", "seed": 3, "startFromDefaults": False},
            "earlyStopping": {"pruner": "median", "settings": {"n_startup_trials": 1, "n_warmup_steps": 1}},
            "parameters": [
                {"name": "lr", "type": "float", "low": 1e-4, "high": 100.0, "log": True},
                {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]},
                {"name": "momentum", "type": "float", "low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
                {"name": "hidden", "type": "int", "low": 32, "high": 128, "step": 32},
                {"name": "batch_size", "type": "categorical", "choices": [16, 64]},
                {"name": "tag", "type": "categorical", "choices": evil},
            ],
            "warmStart": [
                {"params": {"lr": 0.01, "optimizer": "adam", "hidden": 128, "batch_size": 64, "tag": evil[0]}},
                {"params": {"lr": 0.003, "optimizer": "adam", "hidden": 96, "batch_size": 64, "tag": evil[1]}},
                # diverges: plain SGD with an absurd step
                {
                    "params": {
                        "lr": 80.0,
                        "optimizer": "sgd",
                        "momentum": 0.9,
                        "hidden": 64,
                        "batch_size": 64,
                        "tag": evil[2],
                    }
                },
                # learns almost nothing: its curve stays far below the others
                # (small batches: its epochs last long enough for the engine to read each one)
                {
                    "params": {
                        "lr": 0.0001,
                        "optimizer": "sgd",
                        "momentum": 0.0,
                        "hidden": 32,
                        "batch_size": 16,
                        "tag": evil[0],
                    }
                },
            ],
            "trial": {"task": "digits", "epochs": 8, "workers": 2},
            "metrics": {"intervalSeconds": 0.5},
        },
    }
    job = validate_document(doc)
    result = run_local(job, workdir=tmp_path / "work", settings=FAST)
    trials = result.study.get_trials()
    by_number = {t.number: t for t in trials}

    assert result.status.phase == "Succeeded", (result.status.reason, result.status.message)
    assert sorted(by_number) == list(range(6))
    # the diverging trial stopped itself early, with its reason recorded
    diverged = by_number[2]
    assert diverged.state == TrialState.PRUNED
    assert "diverged" in diverged.user_attrs["stop_reason"], diverged.user_attrs
    # the hopeless curve was pruned by the pruner, before its last epoch
    slow = by_number[3]
    assert slow.state == TrialState.PRUNED and "pruned by median" in slow.user_attrs["stop_reason"]
    assert max(slow.intermediate_values) < 8
    # the best trial is reported with its parameters and value
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value)
    assert result.status.best["number"] == best.number and result.best_value == best.value
    assert best.value > 0.9
    assert result.best_params["lr"] == best.params["lr"]
    # hyperparameters travelled as data: the trial saw the literal strings, no shell ran them
    for t in complete:
        msg = json.loads((result.workdir / "trials" / f"t{t.number}" / "w0" / "termination-log").read_text())
        assert msg["info"]["tag"] == t.params["tag"]
    assert not pwned.exists()
    assert (home / "canary").exists()
