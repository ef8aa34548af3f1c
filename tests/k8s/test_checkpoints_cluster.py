"""Trial checkpoints through the real operator (issue 24, "Resume, not restart" and "Kept").

Real 2-rank Horovod digits trials in pods of the emulated cluster, their checkpoint directory on
a PersistentVolumeClaim (the harness keeps a claim's files under ``cluster.pvc_path``, shared by
every pod mounting it, with the pod's ``subPath``); a real SIGKILL of rank 1 once the trial's
checkpoint holds epoch 6; the checkpoint janitor a real pod. The same cases locally:
tests/engine/test_checkpoints.py.
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch
from test_operator import NS, Operator, apply, digits_job, job_status, study_trials, trial_pods

CLAIM = "checkpoints"
#: What the built-in tasks save in the trial's directory.
FILE = "checkpoint.pt"
#: The optuna journal's op code of Trial.report (JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE).
SET_INTERMEDIATE = 7
#: Where a trial pod sees its directory (contract.CHECKPOINT_MOUNT_PATH).
MOUNT = "/var/lib/openautoglm/checkpoint"
#: dropout on, so only per-epoch reseeding makes a resumed run equal an uninterrupted one;
#: batch 16: ~45 steps per rank and epoch, long enough to kill rank 1 between two epochs.
RESUME_PARAMS = {"lr": 0.003, "batch_size": 16, "dropout": 0.2, "hidden": 64, "optimizer": "adam"}
EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) \(")


def checkpoint_job(name: str, *, epochs: int, workers: int, params: list[dict], retries: int = 0) -> dict:
    """Digits trials of the given parameter sets, one at a time in order, no pruning, their
    checkpoints on CLAIM (keep: best, the default)."""
    doc = digits_job(name, max_trials=len(params))
    spec = doc["spec"]
    spec["budget"] = {"maxTrials": len(params), "parallelism": 1, "maxFailedTrials": 0}
    spec["algorithm"] = {"sampler": "random", "seed": 11, "startFromDefaults": False}
    spec["earlyStopping"] = {"pruner": "none"}
    names = sorted({k for p in params for k in p})
    spec["parameters"] = [
        {"name": n, "type": "categorical", "choices": sorted({p[n] for p in params if n in p}, key=str)} for n in names
    ]
    spec["warmStart"] = [{"params": p} for p in params]
    spec["trial"].update(epochs=epochs, workers=workers, retries=retries, checkpoint={"claim": CLAIM})
    return doc


def checkpoint_epoch(directory: Path) -> int:
    try:
        return int(torch.load(directory / FILE, weights_only=True)["epoch"])
    except (OSError, EOFError, RuntimeError, KeyError):
        return 0


def reports_per_step(operator: Operator, name: str, trial_id: int) -> dict[int, int]:
    """How often each step of the trial was written to the study (Optuna keeps one per step)."""
    (journal,) = glob.glob(str(operator.study_dir / NS / f"{name}-*.journal"))
    counts: dict[int, int] = {}
    for line in Path(journal).read_text().splitlines():
        op = json.loads(line)
        if op.get("op_code") == SET_INTERMEDIATE and op.get("trial_id") == trial_id:
            counts[op["step"]] = counts.get(op["step"], 0) + 1
    return counts


def ended(cluster, *names: str) -> bool:
    return all(job_status(cluster, n).get("phase") in ("Succeeded", "Failed") for n in names)


def nothing_left(cluster, name: str) -> None:
    cluster.wait_for(lambda: not trial_pods(cluster, name), 30, f"no pod of {name} left")


@pytest.mark.slow
@pytest.mark.horovod
def test_a_retried_trial_resumes_from_its_checkpoint_on_the_claim(cluster, tmp_path):
    """10 epochs on 2 ranks, retries: 1; rank 1's process SIGKILLed once epoch 6 is on the claim.
    The retry's pods resume at the epoch after it, the study holds epochs 1-10 once each, and
    the trial equals the same trial run whole (a second job in the same cluster, at once)."""
    epochs, after = 10, 6
    operator = Operator(cluster, tmp_path)
    operator.start()
    try:
        for name in ("resumed", "whole"):
            apply(cluster, checkpoint_job(name, epochs=epochs, workers=2, params=[RESUME_PARAMS], retries=1), tmp_path)
        ckpt = cluster.pvc_path(CLAIM, NS) / NS / "resumed" / "trial-0"
        cluster.wait_for(lambda: checkpoint_epoch(ckpt) >= after, 240, f"the checkpoint of epoch {after}")
        rank1 = next(p for p in cluster.process_log if p["pod"] == "resumed-t0-w1")
        os.kill(rank1["pid"], signal.SIGKILL)
        saved = checkpoint_epoch(ckpt)
        cluster.wait_for(lambda: ended(cluster, "resumed", "whole"), 300, "both jobs to end")
        check_resumed(cluster, operator, ckpt, saved, epochs, after)
        for name in ("resumed", "whole"):  # the operator deletes them: still running here
            nothing_left(cluster, name)
    finally:
        operator.stop()


def check_resumed(cluster, operator: Operator, ckpt: Path, saved: int, epochs: int, after: int) -> None:
    assert after <= saved < epochs, f"killed after epoch {saved}: kill it earlier"

    status = job_status(cluster, "resumed")
    assert status["phase"] == "Succeeded" and status["trials"]["retried"] == 1, status
    (t,), (w,) = study_trials(operator, "resumed"), study_trials(operator, "whole")
    assert t.state.name == w.state.name == "COMPLETE"
    assert t.user_attrs["retried_because"][0].startswith("worker 1:"), t.user_attrs

    # The retry's ranks resumed from the checkpoint on the claim and reported from the epoch after.
    for rank in (0, 1):
        log = cluster.pod_log(f"resumed-t0-a1-w{rank}", NS)
        assert f"resuming from the checkpoint of epoch {saved} in {MOUNT}" in log, log[-3000:]
        assert [int(m.group(1)) for m in EPOCH_LINE.finditer(log)] == list(range(saved + 1, epochs + 1)), log[-3000:]

    # One curve, every epoch written once; the same curve and value as the uninterrupted trial's
    # (an epoch read from /metrics carries 6 digits, one filled from the result all: 1e-6).
    assert sorted(t.intermediate_values) == list(range(1, epochs + 1))
    assert reports_per_step(operator, "resumed", t._trial_id) == {e: 1 for e in range(1, epochs + 1)}
    assert t.intermediate_values == pytest.approx(w.intermediate_values, abs=1e-6, rel=0)
    assert t.value == w.value and t.user_attrs["metrics"] == w.user_attrs["metrics"]

    # The best model: named in the status, there on the claim, holding the last epoch.
    assert status["bestTrial"]["checkpoint"] == {"claim": CLAIM, "path": f"{NS}/resumed/trial-0"}
    assert checkpoint_epoch(ckpt) == epochs


@pytest.mark.slow
@pytest.mark.horovod
def test_keep_best_leaves_only_the_best_trials_directory_on_the_claim(cluster, tmp_path):
    """Four short trials in order, keep: best: trial 0 learns little (the best when it ends),
    trial 1 well (the new best), trial 2 diverges (stopped, PRUNED), trial 3 is not the best.
    Afterwards only trial 1's directory is left under <ns>/<job>/ on the claim; the janitor pods
    that removed the others ran and are gone with every other pod of the job."""
    weak = {"lr": 0.0003, "optimizer": "sgd", "batch_size": 64, "hidden": 32}
    good = {"lr": 0.01, "optimizer": "adam", "batch_size": 32, "hidden": 64}
    diverging = {"lr": 80.0, "optimizer": "sgd", "batch_size": 64, "hidden": 32}
    middling = {"lr": 0.001, "optimizer": "sgd", "batch_size": 64, "hidden": 32}
    operator = Operator(cluster, tmp_path)
    operator.start()
    try:
        apply(cluster, checkpoint_job("kept", epochs=3, workers=1, params=[weak, good, diverging, middling]), tmp_path)
        cluster.wait_for(lambda: ended(cluster, "kept"), 300, "the job to end")
        # The job is over once its pods are gone: the janitor of its last removal among them.
        nothing_left(cluster, "kept")
        check_kept(cluster, operator)
    finally:
        operator.stop()


def check_kept(cluster, operator: Operator) -> None:
    status = job_status(cluster, "kept")
    trials = study_trials(operator, "kept")
    assert status["phase"] == "Succeeded", status
    assert [x.state.name for x in trials] == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]
    assert trials[0].value < trials[1].value, "trial 1 must be a new best for this test"
    best = max((x for x in trials if x.state.name == "COMPLETE"), key=lambda x: x.value)
    assert status["bestTrial"]["number"] == best.number != 0

    job_dir = cluster.pvc_path(CLAIM, NS) / NS / "kept"
    assert sorted(p.name for p in job_dir.iterdir()) == [f"trial-{best.number}"]
    assert checkpoint_epoch(job_dir / f"trial-{best.number}") == 3
    assert status["bestTrial"]["checkpoint"] == {"claim": CLAIM, "path": f"{NS}/kept/trial-{best.number}"}

    janitors = [p for p in cluster.process_log if p["pod"].startswith("kept-ckpt-")]
    assert janitors and all(p["exit_code"] == 0 for p in janitors), janitors
