"""Trial checkpoints (``OPENAUTOGLM_CHECKPOINT_DIR``): a run that lost a rank resumes, not restarts.

Real processes throughout: both ranks of a digits trial as the backends start them (conftest),
real Horovod over Gloo, a real SIGKILL; the own-script example as its own process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import openautoglm_trial
from openautoglm_trial import contract
from openautoglm_trial.builtin.checkpoint import FILE
from openautoglm_trial.environment import TrialSettings, read_checkpoint_dir, read_run
from openautoglm_trial.supervisor import command

REPO = Path(__file__).resolve().parents[2]
OWN_SCRIPT = REPO / "examples" / "own-script"
#: dropout on, so the per-epoch reseeding is what makes a resumed run equal an uninterrupted one;
#: batch 16: ~45 steps per rank and epoch, long enough to kill rank 1 between two epochs
PARAMS = {"lr": 0.003, "batch_size": 16, "dropout": 0.2}
EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) \(")


def checkpoint_epoch(directory: Path) -> int:
    """The epoch the trial's checkpoint holds (0: none yet)."""
    try:
        return int(torch.load(directory / FILE, weights_only=True)["epoch"])
    except (OSError, EOFError, RuntimeError, KeyError):
        return 0


def epochs_logged(log: str) -> list[int]:
    return [int(m.group(1)) for m in EPOCH_LINE.finditer(log)]


# ------------------------------------------------------------------------- the built-in task
@pytest.mark.horovod
def test_a_run_that_lost_rank_1_resumes_after_its_checkpoint_and_ends_as_an_uninterrupted_one(launch, tmp_path):
    ckpt, epochs, k = tmp_path / "checkpoints" / "trial-3", 10, 6
    env = {contract.CHECKPOINT_DIR: str(ckpt)}
    first = launch(2, epochs=epochs, params=PARAMS, extra={**env, contract.RUN: "0"})
    deadline = time.monotonic() + 90
    while checkpoint_epoch(ckpt) < k:
        assert time.monotonic() < deadline, f"no checkpoint of epoch {k} within 90 s\n{first.logs()}"
        assert all(w.process.poll() is None for w in first.workers), first.logs()
        time.sleep(0.02)
    # A lost node: rank 1 dies at once, then its peer is stopped the same way.
    first.workers[1].process.kill()
    first.workers[0].process.kill()
    first.wait(timeout=10)
    saved = checkpoint_epoch(ckpt)
    assert k <= saved < epochs, f"the first run got to epoch {saved}: kill it earlier\n{first.logs()}"
    assert not (ckpt / (FILE + ".tmp")).exists() or (ckpt / FILE).exists()
    assert f"checkpoint of epoch {saved}: " in first.workers[0].log()

    second = launch(2, epochs=epochs, params=PARAMS, extra={**env, contract.RUN: "1"})
    assert second.wait(timeout=90) == [0, 0], second.logs()
    for worker in second.workers:
        log = worker.log()
        assert f"resuming from the checkpoint of epoch {saved} in {ckpt}" in log
        # The first report of the resumed run is the epoch after its checkpoint, and each later once.
        assert epochs_logged(log) == list(range(saved + 1, epochs + 1)), log
        assert f"from epoch {saved + 1} (run 1)" in log
    resumed = second.results()
    for result in resumed:
        assert result["status"] == "completed" and result["epochs"] == epochs
        assert result["info"]["resumed_from_epoch"] == saved
        # The whole curve, every epoch once.
        assert all(len(values) == epochs for values in result["history"].values())
    assert resumed[0]["info"]["checkpoint_seconds"] > 0 and resumed[0]["info"]["checkpoint_bytes"] > 0
    assert "checkpoint_seconds" not in resumed[1]["info"]  # only rank 0 saves
    assert checkpoint_epoch(ckpt) == epochs

    # The same trial without checkpoints, never interrupted: the same numbers, to the last bit
    # (per-epoch data order and reseeding, the exact saved state; a 2-rank sum is order-free).
    whole = launch(2, epochs=epochs, params=PARAMS)
    assert whole.wait(timeout=90) == [0, 0], whole.logs()
    uninterrupted = whole.results()[0]
    assert "resumed_from_epoch" not in uninterrupted["info"]
    assert resumed[0]["metrics"] == uninterrupted["metrics"]
    assert resumed[0]["history"] == uninterrupted["history"]
    assert resumed[0]["info"]["samples_seen"] == uninterrupted["info"]["samples_seen"]
    assert resumed[0]["info"]["samples_digest"] == uninterrupted["info"]["samples_digest"]


@pytest.mark.horovod
def test_a_checkpoint_of_other_params_is_ignored_and_a_finished_one_leaves_nothing_to_train(launch, tmp_path):
    ckpt = tmp_path / "ckpt"
    env = {contract.CHECKPOINT_DIR: str(ckpt)}
    other = launch(1, epochs=2, params={"lr": 0.01}, extra=env)
    assert other.wait(timeout=60) == [0], other.logs()

    ours = launch(1, epochs=2, params={"lr": 0.002}, extra=env)
    assert ours.wait(timeout=60) == [0], ours.logs()
    log = ours.workers[0].log()
    assert "ignoring checkpoint" in log and "another trial configuration" in log and "params" in log
    assert epochs_logged(log) == [1, 2]
    fresh = ours.results()[0]
    assert fresh["info"]["resumed_from_epoch"] == 0
    saved = torch.load(ckpt / FILE, weights_only=True)
    assert json.loads(saved["identity"]["params"]) == {"lr": 0.002}  # overwritten by ours

    # A retry of a run that finished but died before its result was read: nothing left to train.
    again = launch(1, epochs=2, params={"lr": 0.002}, extra=env)
    assert again.wait(timeout=60) == [0], again.logs()
    assert epochs_logged(again.workers[0].log()) == []
    done = again.results()[0]
    assert done["status"] == "completed" and done["epochs"] == 2
    assert done["metrics"] == fresh["metrics"] and done["history"] == fresh["history"]
    assert done["info"]["resumed_from_epoch"] == 2


@pytest.mark.horovod
def test_a_checkpoint_directory_that_cannot_be_written_does_not_stop_training(launch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    trial = launch(1, epochs=2, extra={contract.CHECKPOINT_DIR: str(blocker / "ckpt")})
    assert trial.wait(timeout=60) == [0], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "completed" and result["epochs"] == 2
    assert "could not save the checkpoint of epoch 1" in trial.workers[0].log()


# ------------------------------------------------------------------------- the contract pieces
def test_settings_read_the_checkpoint_dir_and_run_and_never_fail_on_garbage(caplog):
    base = {contract.TASK: "digits"}
    settings = TrialSettings.from_env({**base, contract.CHECKPOINT_DIR: "/ck/job/trial-3", contract.RUN: "2"})
    assert settings.checkpoint_dir == Path("/ck/job/trial-3") and settings.run == 2
    assert TrialSettings.from_env(base).checkpoint_dir is None and TrialSettings.from_env(base).run == 0
    for blank in ("", "   "):
        assert read_checkpoint_dir({contract.CHECKPOINT_DIR: blank}) is None
    assert read_checkpoint_dir({contract.CHECKPOINT_DIR: "/x" * 3000}) is None
    for garbage in ("-1", "two", "1e3", "9" * 400, str(2**31)):
        assert read_run({contract.RUN: garbage}) == 0
    assert "not a run number" in caplog.text


def test_checkpoint_dir_in_the_client(monkeypatch):
    monkeypatch.delenv(contract.CHECKPOINT_DIR, raising=False)
    assert openautoglm_trial.checkpoint_dir() is None
    monkeypatch.setenv(contract.CHECKPOINT_DIR, "/var/lib/openautoglm/checkpoint")
    assert openautoglm_trial.checkpoint_dir() == Path(contract.CHECKPOINT_MOUNT_PATH)
    monkeypatch.setenv(contract.CHECKPOINT_DIR, "")
    assert openautoglm_trial.checkpoint_dir() is None


def test_the_checkpoint_placeholder_fills_its_item_or_drops_it():
    argv = [
        "python",
        "train.py",
        "--checkpoint-dir=${trial.checkpointDir}",
        "${trial.checkpointDir}/model.pt",
        "--lr=${trialParameters.lr}",
        "--tag=${trialParameters.tag}",
    ]
    # A value is inserted once, never searched again: a tag spelling the placeholder stays text.
    params = {"lr": 0.01, "tag": "${trial.checkpointDir}"}
    assert command.render(argv, params, "/ck/a b\\1") == [
        "python",
        "train.py",
        "--checkpoint-dir=/ck/a b\\1",
        "/ck/a b\\1/model.pt",
        "--lr=0.01",
        "--tag=${trial.checkpointDir}",
    ]
    assert command.render(argv, params) == ["python", "train.py", "--lr=0.01", "--tag=${trial.checkpointDir}"]
    # Both kinds in one item: dropped when either is missing.
    assert command.render(["run", "--out=${trial.checkpointDir}/${trialParameters.beta1}"], {}, "/ck") == ["run"]


# ------------------------------------------------------------------------- examples/own-script
def _own_script(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(OWN_SCRIPT / "train.py"), "--data-dir", str(OWN_SCRIPT / "data"), *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _epoch_lines(out: str) -> dict[int, str]:
    """epoch -> its metric line, without the wall-clock ``seconds=``."""
    return {
        int(m.group(1)): re.sub(r" seconds=\S+", "", m.group(0)) for m in re.finditer(r"^epoch=(\d+) .*$", out, re.M)
    }


@pytest.mark.horovod
def test_the_own_script_example_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    args = ["--epochs", "6", "--dropout", "0.2", "--batch-size", "16"]
    ckpt = tmp_path / "ckpt"
    env: dict[str, Any] = {contract.CHECKPOINT_DIR: str(ckpt)}
    first = _own_script(args, env)
    assert first.stdout is not None
    seen = ""
    for line in first.stdout:
        seen += line
        if line.startswith("epoch=3 "):
            first.kill()  # after its third epoch's checkpoint: it prints once saved
            break
    first.wait(10)
    assert _epoch_lines(seen).keys() == {1, 2, 3}, seen
    second = _own_script(args, env)
    resumed, _ = second.communicate(timeout=120)
    assert second.returncode == 0, resumed
    # It was killed after its third epoch's line (printed once that epoch is saved); a fourth
    # may have been saved before the signal landed.
    match = re.search(r"resuming after epoch (\d+)", resumed)
    assert match and int(match.group(1)) in (3, 4), resumed
    saved = int(match.group(1))
    assert list(_epoch_lines(resumed)) == list(range(saved + 1, 7)), resumed

    # The same run without a checkpoint directory, never interrupted: the very same lines.
    whole = _own_script(args, {})
    out, _ = whole.communicate(timeout=120)
    assert whole.returncode == 0, out
    uninterrupted = _epoch_lines(out)
    assert list(uninterrupted) == [1, 2, 3, 4, 5, 6]
    assert _epoch_lines(resumed) == {e: line for e, line in uninterrupted.items() if e > saved}
    assert _epoch_lines(seen) == {e: line for e, line in uninterrupted.items() if e <= 3}
