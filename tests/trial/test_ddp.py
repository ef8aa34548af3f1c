"""The built-in tasks on torch.distributed: DDP over Gloo, ZeRO-1, checkpoints, the settings.

Real processes throughout: both ranks of a digits trial as the engine starts them under
``trial.launcher: torchrun`` (conftest.worker_envs), real ``init_process_group`` over Gloo on
loopback, real ``DistributedDataParallel`` and ``ZeroRedundancyOptimizer``, a real SIGKILL.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from openautoglm_trial import contract, tasks
from openautoglm_trial.builtin import distributed
from openautoglm_trial.builtin.checkpoint import FILE
from openautoglm_trial.environment import TrialSettings
from openautoglm_trial.errors import SettingsError

#: Adam on a 64-64-10 MLP: its six tensors split between two ranks as 4096+640 | 4096+64+64+10
#: elements (ZeRO gives each parameter, largest first, to the rank holding the fewest elements),
#: 53% and 47% of the state. Dropout on: the per-rank reseeding is part of what must match.
PARAMS = {"lr": 0.003, "hidden": 64, "layers": 2, "optimizer": "adam", "dropout": 0.1}
EPOCHS = 6


def ddp_trial(launch, tmp_path: Path, label: str, *, zero: bool = False, epochs: int = EPOCHS, **kwargs: Any):
    """Start both ranks of a digits trial under torchrun, saving their parameters."""
    extra = {contract.SAVE_PARAMS_TO: str(tmp_path / f"{label}-{{rank}}.npz"), **kwargs.pop("extra", {})}
    return launch(
        2,
        launcher=contract.LAUNCHER_TORCHRUN,
        epochs=epochs,
        params=PARAMS,
        settings={"zero": True} if zero else {},
        extra=extra,
        **kwargs,
    )


def saved(tmp_path: Path, label: str) -> list[Any]:
    return [np.load(tmp_path / f"{label}-{rank}.npz") for rank in (0, 1)]


def finished(trial) -> list[dict[str, Any]]:
    """Every rank's result once all exited 0 (read at once: the next trial of a test reuses the files)."""
    assert trial.wait(timeout=120) == [0] * len(trial.workers), trial.logs()
    return trial.results()


def test_ddp_ranks_end_identical_and_zero_holds_half_the_optimizer_state_each(launch, tmp_path):
    plain = finished(ddp_trial(launch, tmp_path, "plain"))
    sharded_trial = ddp_trial(launch, tmp_path, "zero", zero=True)
    sharded = finished(sharded_trial)
    assert "joined torch.distributed (gloo) as rank 1 of 2, ZeRO-1" in sharded_trial.workers[1].log()

    for results, zero in ((plain, False), (sharded, True)):
        first, second = results
        assert (first["rank"], second["rank"]) == (0, 1)
        for result in (first, second):
            assert result["status"] == "completed" and result["epochs"] == EPOCHS
            assert result["info"]["distributed"] == "ddp" and result["info"]["zero"] is zero
            assert result["info"]["device"] == "cpu"
        # Allreduced evaluation: the very same numbers on both ranks; different shards trained.
        assert first["metrics"] == second["metrics"] and first["metrics"]["accuracy"] > 0.9
        assert first["info"]["samples_digest"] != second["info"]["samples_digest"]

    # DDP's broadcast and averaged gradients (and, with ZeRO, each rank's broadcast of the
    # parameters it updated) keep the replicas identical to the last bit.
    for label in ("plain", "zero"):
        params = saved(tmp_path, label)
        np.testing.assert_array_equal(params[0]["initial"], params[1]["initial"])
        np.testing.assert_array_equal(params[0]["final"], params[1]["final"])
        assert not np.allclose(params[0]["initial"], params[0]["final"])

    # Each rank holds the optimizer state of its share only: together exactly the whole state.
    whole = [r["info"]["optimizer_state_bytes"] for r in plain]
    shares = [r["info"]["optimizer_state_bytes"] for r in sharded]
    assert whole[0] == whole[1] > 0
    assert sum(shares) == whole[0]
    assert all(0.4 * whole[0] < share < 0.6 * whole[0] for share in shares), (shares, whole)

    # The same arithmetic, only split: every parameter gets the same Adam update from the same
    # averaged gradient (the same single-tensor kernel on the CPU), and the broadcast copies
    # bits. So the run ends where the unsharded one does, to the last bit here; the stated
    # tolerance, 1e-6 relative, is what a different kernel grouping (foreach on a GPU) may cost.
    ours, theirs = sharded[0], plain[0]
    for metric in ("accuracy", "loss", "train_loss"):
        assert ours["metrics"][metric] == pytest.approx(theirs["metrics"][metric], rel=1e-6)
    np.testing.assert_allclose(saved(tmp_path, "zero")[0]["final"], saved(tmp_path, "plain")[0]["final"], rtol=1e-6)


def test_a_zero_trial_that_lost_rank_1_resumes_from_its_checkpoint_exactly(launch, tmp_path):
    # batch 16: ~45 steps per rank and epoch, long enough to kill the ranks between two epochs.
    ckpt, epochs, k = tmp_path / "ckpt", 8, 4
    params = {**PARAMS, "batch_size": 16}
    env = {contract.CHECKPOINT_DIR: str(ckpt)}
    common = {"launcher": contract.LAUNCHER_TORCHRUN, "epochs": epochs, "params": params, "settings": {"zero": True}}
    first = launch(2, **common, extra={**env, contract.RUN: "0"})
    deadline = time.monotonic() + 90
    while _checkpoint_epoch(ckpt) < k:
        assert time.monotonic() < deadline, f"no checkpoint of epoch {k} within 90 s\n{first.logs()}"
        assert all(w.process.poll() is None for w in first.workers), first.logs()
        time.sleep(0.02)
    first.workers[1].process.kill()
    first.workers[0].process.kill()
    first.wait(timeout=10)
    at = _checkpoint_epoch(ckpt)
    assert k <= at < epochs, first.logs()
    # Rank 0 saved the whole optimizer state, both ranks' shares (Adam: two moments per parameter).
    state = torch.load(ckpt / FILE, weights_only=True)
    assert len(state["optimizer"]["state"]) == len(state["model"]) == 6

    second = launch(2, **common, extra={**env, contract.RUN: "1"})
    resumed = finished(second)
    for result in resumed:
        assert result["status"] == "completed" and result["info"]["resumed_from_epoch"] == at
        assert f"resuming from the checkpoint of epoch {at}" in second.workers[result["rank"]].log()
    uninterrupted = finished(launch(2, **common))  # the same trial, never interrupted, no checkpoints
    # Each rank took its share of the whole state back: the same bytes as a run that never stopped.
    assert [r["info"]["optimizer_state_bytes"] for r in resumed] == [
        r["info"]["optimizer_state_bytes"] for r in uninterrupted
    ]
    # Exact: per-epoch reseeding and data order, the saved state whole, a 2-rank sum order-free.
    assert resumed[0]["metrics"] == uninterrupted[0]["metrics"]
    assert resumed[0]["history"] == uninterrupted[0]["history"]


def _checkpoint_epoch(directory: Path) -> int:
    try:
        return int(torch.load(directory / FILE, weights_only=True)["epoch"])
    except (OSError, EOFError, RuntimeError, KeyError):
        return 0


def test_a_one_rank_ddp_trial_trains_in_a_group_of_its_own(launch):
    trial = launch(1, launcher=contract.LAUNCHER_TORCHRUN, epochs=1, params=PARAMS, settings={"zero": True})
    (result,) = finished(trial)
    assert result["status"] == "completed" and result["info"]["distributed"] == "ddp"
    # All of it, one rank holding every share: 8,970 parameters x 2 Adam moments x 4 bytes + 6 steps.
    assert result["info"]["optimizer_state_bytes"] == 8_970 * 2 * 4 + 6 * 4
    assert "joined torch.distributed (gloo) as rank 0 of 1, ZeRO-1" in trial.workers[0].log()


def test_a_bad_distributed_setting_fails_the_trial_naming_it(launch):
    trial = launch(1, launcher=contract.LAUNCHER_TORCHRUN, settings={"distributed": "horovod", "zero": True})
    assert trial.wait(timeout=60) == [1], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "failed"
    assert "task setting 'zero': ZeRO shards the optimizer state with torch.distributed" in result["reason"]


# ----------------------------------------------------------------------------- the settings
def test_every_task_accepts_distributed_and_zero_and_refuses_bad_values():
    for name, spec in tasks.TASKS.items():
        assert spec.settings["distributed"] is None and spec.settings["zero"] is False, name
        assert spec.resolve_settings({"distributed": "ddp", "zero": True})["zero"] is True
    spec = tasks.get("digits")
    for settings, words in [
        ({"distributed": "mpi"}, "'distributed': must be horovod or ddp"),
        ({"zero": "yes"}, "'zero': must be true or false, got 'yes'"),
        ({"distributed": "horovod", "zero": True}, "'zero': ZeRO shards the optimizer state"),
    ]:
        with pytest.raises(SettingsError, match=words):
            spec.resolve_settings(settings)
    # validate knows the launcher: an unset distributed is what it gives.
    assert spec.setting_problems({"zero": True}, "torchrun") == []
    assert [k for k, _ in spec.setting_problems({"zero": True}, "horovod")] == ["zero"]
    assert [k for k, _ in spec.setting_problems({"distributed": 1, "zero": 0})] == ["distributed", "zero"]


def _settings(launcher: str, size: int = 2) -> TrialSettings:
    hosts = [f"127.0.0.{rank + 1}" for rank in range(size)]
    env = {contract.TASK: "digits", contract.LAUNCHER: launcher}
    if launcher == contract.LAUNCHER_TORCHRUN:
        env |= contract.torchrun_env(1, hosts, 23456) if size > 1 else {}
    elif size > 1:
        env |= {**contract.horovod_env(1, hosts), contract.WORKER_HOSTS: ",".join(hosts)}
    return TrialSettings.from_env(env)


def test_distributed_follows_the_launcher_and_a_multi_rank_mismatch_is_refused():
    assert distributed.choose(_settings("horovod"), {"distributed": None}) == "horovod"
    assert distributed.choose(_settings("torchrun"), {"distributed": None}) == "ddp"
    assert distributed.choose(_settings("torchrun"), {"distributed": "ddp", "zero": True}) == "ddp"
    with pytest.raises(SettingsError, match="'distributed': ddp needs trial.launcher torchrun"):
        distributed.choose(_settings("horovod"), {"distributed": "ddp"})
    with pytest.raises(SettingsError, match="'distributed': horovod needs trial.launcher horovod"):
        distributed.choose(_settings("torchrun"), {"distributed": "horovod"})
    with pytest.raises(SettingsError, match="'zero': ZeRO"):
        distributed.choose(_settings("horovod"), {"zero": True})
    # A lone worker has no launcher's variables to miss: either kind runs on its own.
    assert distributed.choose(_settings("horovod", size=1), {"distributed": "ddp"}) == "ddp"
    assert distributed.choose(_settings("torchrun", size=1), {"distributed": "horovod"}) == "horovod"
