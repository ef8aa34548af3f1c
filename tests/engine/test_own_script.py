"""examples/own-script: an unchanged Horovod + PyTorch script tuned by `openautoglm tune`.

The script imports nothing of ours and prints Katib-style `epoch=3 accuracy=0.91 loss=0.30`
lines; every trial runs it on 2 Horovod workers under the trial supervisor (stdout collector).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "own-script"


def _job_dir(tmp_path: Path, budget: dict, warm_start: list[dict], epochs: int) -> Path:
    """The example's TuningJob beside the unchanged script and its data, with a test budget."""
    doc = yaml.safe_load((EXAMPLE / "tuningjob.yaml").read_text())
    spec = doc["spec"]
    spec["budget"] = budget
    spec["warmStart"] = [{"params": p} for p in warm_start]
    spec["trial"]["command"] = [
        a if not a.startswith("--epochs=") else f"--epochs={epochs}" for a in spec["trial"]["command"]
    ]
    spec["metrics"]["intervalSeconds"] = 0.5
    (tmp_path / "train.py").symlink_to(EXAMPLE / "train.py")
    (tmp_path / "data").symlink_to(EXAMPLE / "data")
    (tmp_path / "tuningjob.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return tmp_path


@pytest.mark.slow
def test_own_script_is_tuned_unchanged_and_a_bad_trial_is_pruned_on_both_ranks(tmp_path: Path) -> None:
    good = {"lr": 0.05, "momentum": 0.9, "batch-size": 32, "hidden": 64}
    slow = {"lr": 0.001, "momentum": 0.0, "batch-size": 64, "hidden": 16}  # learns next to nothing
    job_dir = _job_dir(
        tmp_path, {"maxTrials": 3, "parallelism": 1, "maxFailedTrials": 0}, [good, {**good, "lr": 0.1}, slow], epochs=12
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "openautoglm.cli",
            "tune",
            str(job_dir / "tuningjob.yaml"),
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
    # A local run says which podTemplate fields it cannot honour.
    assert "spec.trial.podTemplate.spec.volumes" in proc.stderr

    status = json.loads((tmp_path / "status.json").read_text())
    assert status["phase"] == "Succeeded"
    study = optuna.load_study(
        study_name="own-script",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "work" / "own-script" / "study.journal"))
        ),
    )
    trials = {t.number: t for t in study.get_trials()}
    assert [trials[n].state.name for n in range(3)] == ["COMPLETE", "COMPLETE", "PRUNED"]
    # The value is the best epoch's accuracy (strategy max); the additional metrics are recorded
    # per their strategies: loss min, train-loss latest.
    t0 = trials[0]
    final = t0.user_attrs["metrics"]
    assert t0.value == max(t0.intermediate_values.values()) > 0.9
    assert set(final) >= {"accuracy", "loss", "train-loss"}
    run0 = tmp_path / "work" / "own-script" / "trials" / "t0" / "w0"
    result = json.loads((run0 / "termination-log").read_text())
    assert final["loss"] == min(result["history"]["loss"])
    assert final["train-loss"] == result["history"]["train-loss"][-1]
    assert status["best"]["metrics"]["loss"] == pytest.approx(
        trials[status["best"]["number"]].user_attrs["metrics"]["loss"]
    )
    # The hyperparameters reached the unchanged script as its own flags, one argv item each.
    assert "--batch-size=32" in (run0 / "output.log").read_text()

    pruned = trials[2]
    assert "pruned by median" in pruned.user_attrs["stop_reason"]
    assert len(pruned.intermediate_values) < 12
    for rank in (0, 1):  # both ranks were stopped, not left to finish
        msg = json.loads(
            (tmp_path / "work" / "own-script" / "trials" / "t2" / f"w{rank}" / "termination-log").read_text()
        )
        assert msg["reason"] == "terminated", (rank, msg)
