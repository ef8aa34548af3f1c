"""An own, unchanged DDP script tuned by `openautoglm tune` with ``trial.launcher: torchrun``.

tests/trial/programs/ddp_script.py calls a plain ``init_process_group("gloo")`` from the
environment, wraps its model in DDP and prints ``epoch=E loss=L accuracy=A`` on rank 0; every
trial runs it on 2 workers under the trial supervisor (stdout collector), two trials at once,
which therefore need MASTER_PORTs of their own on the one machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import yaml

from openautoglm_trial import contract

REPO = Path(__file__).resolve().parents[2]
DDP = REPO / "tests" / "trial" / "programs" / "ddp_script.py"
DIGEST = re.compile(r"rank (\d) of 2: parameters sha256 ([0-9a-f]{64})")


def ddp_job(name: str = "ddp-script", *, max_trials: int = 2, parallelism: int = 2, epochs: int = 3) -> dict:
    """The DDP script on 2 torchrun workers per trial, its learning rate tuned."""
    return {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": name},
        "spec": {
            "objective": {"metric": "accuracy", "direction": "maximize", "additionalMetrics": ["loss"]},
            "budget": {"maxTrials": max_trials, "parallelism": parallelism, "maxFailedTrials": 0},
            "algorithm": {"sampler": "random", "seed": 5},
            "earlyStopping": {"pruner": "none"},
            "parameters": [{"name": "lr", "type": "float", "low": 0.02, "high": 0.1, "log": True}],
            "trial": {
                "launcher": "torchrun",
                "workers": 2,
                "command": [sys.executable, str(DDP), "--lr=${trialParameters.lr}", f"--epochs={epochs}"],
            },
            "metrics": {"intervalSeconds": 0.5, "collector": {"kind": "stdout"}},
        },
    }


def test_own_ddp_script_is_tuned_unchanged_under_torchrun(tmp_path: Path) -> None:
    (tmp_path / "tuningjob.yaml").write_text(yaml.safe_dump(ddp_job(), sort_keys=False))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "openautoglm.cli",
            "tune",
            str(tmp_path / "tuningjob.yaml"),
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(tmp_path / "status.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["phase"] == "Succeeded", status
    work = tmp_path / "work" / "ddp-script"
    study = optuna.load_study(
        study_name="ddp-script",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(work / "study.journal"))),
    )
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        assert t.value > 0.8 and t.value == max(t.intermediate_values.values()), t
        assert sorted(t.intermediate_values) == [1, 2, 3]
        assert set(t.user_attrs["metrics"]) == {"accuracy", "loss"}
        logs = [(work / "trials" / f"t{t.number}" / f"w{rank}" / "output.log").read_text() for rank in (0, 1)]
        # Both ranks joined and ended with the same parameters (rank 1 printed no metric at all).
        digests = [dict(DIGEST.findall(log)) for log in logs]
        assert digests[0].keys() == {"0"} and digests[1].keys() == {"1"}, logs
        assert digests[0]["0"] == digests[1]["1"]
    # The two trials ran at once on one machine: torch's store binds every address, so each
    # needed a MASTER_PORT of its own.
    assert trials[1].datetime_start < trials[0].datetime_complete
    assert contract.master_port("ddp-script", "", 0) != contract.master_port("ddp-script", "", 1)
