import sys
from pathlib import Path

import pytest

TOY = str(Path(__file__).with_name("toy_trial.py"))


def toy_job(
    name="toy",
    *,
    max_trials=6,
    parallelism=2,
    workers=1,
    epochs=4,
    pruner="none",
    pruner_settings=None,
    parameters=None,
    warm_start=None,
    max_failed=3,
    sampler="tpe",
    **spec_extra,
):
    spec = {
        "objective": {"metric": "score", "direction": "maximize"},
        "budget": {"maxTrials": max_trials, "parallelism": parallelism, "maxFailedTrials": max_failed},
        "algorithm": {"sampler": sampler, "seed": 7},
        "earlyStopping": {"pruner": pruner, "settings": pruner_settings or {}},
        "parameters": parameters
        or [
            {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
            {"name": "mode", "type": "fixed", "value": "ok"},
        ],
        "trial": {"command": [sys.executable, TOY], "epochs": epochs, "workers": workers},
        # The toy speaks the trial contract itself: no supervisor around it.
        "metrics": {"intervalSeconds": 0.5, "collector": {"kind": "native"}},
    }
    if warm_start:
        spec["warmStart"] = [{"params": p} for p in warm_start]
    spec.update(spec_extra)
    return {"apiVersion": "openautoglm.io/v1alpha1", "kind": "TuningJob", "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def toy():
    return toy_job
