"""Katib's own example Experiments, converted by import-katib, run to Succeeded locally.

The container's program (kubeflow's pytorch-mnist image, not available here) is swapped for
examples/own-script/train.py, which takes the same flags (`--lr`, `--momentum`, `--epochs`,
`--batch-size`) and prints `loss=...` as Katib's StdOut collector expects; everything else —
objective, algorithm and settings, early stopping, budget semantics, collector — is what the
converter produced.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from openautoglm.config import Settings
from openautoglm.katib import convert
from openautoglm.local.runner import run_local
from openautoglm.validation import validate_document

REPO = Path(__file__).resolve().parents[2]
KATIB = REPO / "tests" / "data" / "katib"
OWN_SCRIPT = REPO / "examples" / "own-script"
FAST = Settings(workdir=None, storage=None, local_tick_seconds=0.1, elapsed_save_seconds=5, log_level="WARNING")


def _converted(path: Path, max_trials: int) -> dict:
    experiment = next(d for d in yaml.safe_load_all(path.read_text()) if d)
    conversion = convert(experiment)
    assert conversion.unmapped == []
    job = conversion.job
    command = job["spec"]["trial"]["command"]
    assert command[:2] == ["python3", "/opt/pytorch-mnist/mnist.py"]
    # The program the image would hold, with the flags Katib's template passes, unchanged.
    job["spec"]["trial"]["command"] = [
        sys.executable,
        str(OWN_SCRIPT / "train.py"),
        *command[2:],
        f"--data-dir={OWN_SCRIPT / 'data'}",
    ]
    job["spec"]["budget"]["maxTrials"] = max_trials  # the examples ask for 12-15 trials
    job["spec"]["budget"]["parallelism"] = min(job["spec"]["budget"]["parallelism"], 2)
    job["metadata"].pop("namespace")
    return job


@pytest.mark.slow
@pytest.mark.parametrize(
    ("example", "sampler", "pruner"),
    [
        ("hp-tuning/tpe.yaml", "tpe", "none"),
        ("early-stopping/median-stop.yaml", "random", "median"),
    ],
)
def test_converted_katib_example_runs_to_succeeded(tmp_path: Path, example: str, sampler: str, pruner: str) -> None:
    doc = _converted(KATIB / example, max_trials=3)
    job = validate_document(doc)
    assert (job.spec.algorithm.sampler, job.spec.early_stopping.pruner) == (sampler, pruner)
    result = run_local(job, workdir=tmp_path / job.name, settings=FAST, base_dir=tmp_path)
    assert result.status.phase == "Succeeded", result.status
    trials = result.study.get_trials()
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    # The objective is Katib's: the loss the script printed, at its best epoch (min).
    assert all(0 < t.value < 3 for t in trials)
    assert result.status.best["params"].keys() == {"lr", "momentum"}


@pytest.mark.slow
def test_converted_pytorchjob_example_runs_to_succeeded_with_torchrun(tmp_path: Path) -> None:
    """issue 25: Katib's PyTorchJob example (Master + 1 Worker) converts to 2 torchrun workers; a
    stand-in for its program (a plain init_process_group() + DDP script taking the same flags) runs
    unchanged: every trial Succeeded, the loss read from rank 0's stdout."""
    experiment = yaml.safe_load((KATIB / "kubeflow-training-operator/pytorchjob-mnist.yaml").read_text())
    conversion = convert(experiment)
    assert conversion.unmapped == []
    doc = conversion.job
    trial = doc["spec"]["trial"]
    assert (trial["launcher"], trial["workers"]) == ("torchrun", 2)
    assert trial["command"][:2] == ["python3", "/opt/pytorch-mnist/mnist.py"]
    trial["command"] = [
        sys.executable,
        str(Path(__file__).with_name("katib_mnist_ddp.py")),
        *trial["command"][2:],
        f"--data-dir={OWN_SCRIPT / 'data'}",
    ]
    doc["spec"]["budget"]["maxTrials"] = 2
    doc["spec"]["budget"]["parallelism"] = 2
    doc["metadata"].pop("namespace")
    job = validate_document(doc)
    assert job.spec.trial.launcher == "torchrun"
    result = run_local(job, workdir=tmp_path / job.name, settings=FAST, base_dir=tmp_path)
    assert result.status.phase == "Succeeded", result.status
    trials = result.study.get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(0 < t.value < 3 for t in trials)
    # Both ranks of each trial joined one process group of 2 (init_process_group from torchrun's env).
    for number in range(2):
        for rank in range(2):
            log = (tmp_path / job.name / "trials" / f"t{number}" / f"w{rank}" / "output.log").read_text()
            assert f"gloo backend: rank {rank} of 2" in log and "Traceback" not in log, log
