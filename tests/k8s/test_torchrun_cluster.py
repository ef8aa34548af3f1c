"""An own DDP script under ``trial.launcher: torchrun`` through `kubectl apply` in the harness.

tests/trial/programs/ddp_script.py (plain ``init_process_group()``, DDP, ``epoch=E loss=L
accuracy=A`` on rank 0) is the image's only file, at /app. Every rank is a pod; MASTER_ADDR is
rank 0's DNS name (the headless Service's record), which the other ranks' programs must resolve
to join. A rank whose container dies mid-training is retried like a Horovod one (test_retries.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from test_operator import NS, Operator, apply, job_status, study_trials

ROOT = Path(__file__).resolve().parents[2]
DDP = ROOT / "tests" / "trial" / "programs" / "ddp_script.py"
IMAGE = "registry.example.com/ddp-script:1"
DIGEST = re.compile(r"rank (\d) of 2: parameters sha256 ([0-9a-f]{64})")


def _ddp_job(name: str, *, max_trials: int, retries: int, epochs: int, epoch_seconds: float = 0.0) -> dict:
    return {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": name},
        "spec": {
            "objective": {"metric": "accuracy", "direction": "maximize", "additionalMetrics": ["loss"]},
            "budget": {"maxTrials": max_trials, "parallelism": 1, "maxFailedTrials": 0},
            "algorithm": {"sampler": "random", "seed": 5},
            "earlyStopping": {"pruner": "none"},
            "parameters": [{"name": "lr", "type": "float", "low": 0.02, "high": 0.1, "log": True}],
            "trial": {
                "launcher": "torchrun",
                "workers": 2,
                "retries": retries,
                "image": IMAGE,
                "command": [
                    "python",
                    "/app/ddp_script.py",
                    "--lr=${trialParameters.lr}",
                    f"--epochs={epochs}",
                    f"--epoch-seconds={epoch_seconds}",
                ],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            },
            "metrics": {"intervalSeconds": 0.5, "collector": {"kind": "stdout"}},
        },
    }


def _image(cluster, tmp_path: Path) -> None:
    root = tmp_path / "image-app"
    root.mkdir(exist_ok=True)
    shutil.copy(DDP, root / "ddp_script.py")  # the image holds the program only
    cluster.kubelet.image_files[IMAGE] = {"/app": str(root)}


def _env(cluster, pod: str) -> dict[str, str]:
    obj = cluster.get("v1/pods", NS, pod) or {}
    env = obj.get("spec", {}).get("containers", [{}])[0].get("env", [])
    return {e["name"]: e.get("value") for e in env}


def _digests(cluster, pods: list[str]) -> list[dict[str, str]]:
    return [dict(DIGEST.findall(cluster.pod_log(pod))) for pod in pods]


def test_own_ddp_script_runs_in_pods_joined_through_rank_0s_dns_name(cluster, tmp_path):
    _image(cluster, tmp_path)
    pods = ["ddp-pods-t0-w0", "ddp-pods-t0-w1"]
    operator = Operator(cluster, tmp_path)
    operator.start()
    try:
        apply(cluster, _ddp_job("ddp-pods", max_trials=1, retries=0, epochs=3), tmp_path)
        # (read while the pods exist: the operator removes them once the trial ends)
        envs = [cluster.wait_for(lambda p=p: _env(cluster, p), 60, f"pod {p}") for p in pods]
        cluster.wait_for(lambda: job_status(cluster, "ddp-pods").get("phase") in ("Succeeded", "Failed"), 240, "end")
    finally:
        operator.stop()
    status = job_status(cluster, "ddp-pods")
    assert status["phase"] == "Succeeded", status
    assert status["bestTrial"]["value"] > 0.8, status
    for rank, env in enumerate(envs):
        assert env["MASTER_ADDR"] == f"{pods[0]}.ddp-pods-t0.{NS}.svc"
        assert (env["RANK"], env["WORLD_SIZE"], env["OPENAUTOGLM_LAUNCHER"]) == (str(rank), "2", "torchrun")
        assert not [k for k in env if k.startswith("HOROVOD_")]
    # Both ranks joined (rank 1 through the DNS name) and ended with the same parameters.
    first, second = _digests(cluster, pods)
    assert first.keys() == {"0"} and second.keys() == {"1"}, [cluster.pod_log(p)[-2000:] for p in pods]
    assert first["0"] == second["1"]


def _kill_container(pid: int) -> None:
    """SIGKILL a pod's process and the program it runs, as a container's death ends them all."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    program = [int(c) for c in children.read_text().split()] if children.exists() else []
    for victim in [pid, *program]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_a_killed_torchrun_rank_is_retried_like_a_horovod_one(cluster, tmp_path):
    _image(cluster, tmp_path)
    operator = Operator(cluster, tmp_path)
    operator.start()
    name = "ddp-retried"
    try:
        apply(cluster, _ddp_job(name, max_trials=1, retries=1, epochs=20, epoch_seconds=0.3), tmp_path)
        cluster.wait_for(
            lambda: any(t.number == 0 and t.intermediate_values for t in study_trials(operator, name)),
            180,
            "trial 0 training",
        )
        first = _env(cluster, f"{name}-t0-w1")
        entry = next(p for p in cluster.process_log if p["pod"] == f"{name}-t0-w1")
        _kill_container(entry["pid"])
        killed = time.time()
        retry = cluster.wait_for(lambda: _env(cluster, f"{name}-t0-a1-w1"), 60, "the retry's pods")
        rank0 = cluster.wait_for(
            lambda: next((p for p in cluster.process_log if p["pod"] == f"{name}-t0-w0" and p["finished"]), None),
            60,
            "rank 0 of the broken run stopped",
        )
        cluster.wait_for(lambda: job_status(cluster, name).get("phase") in ("Succeeded", "Failed"), 300, "the end")
        done_after = time.time() - killed
    finally:
        operator.stop()
    print(f"\nrank 0 stopped {rank0['finished'] - killed:.1f} s after rank 1 was killed; done {done_after:.1f} s after")
    assert rank0["finished"] - killed < 20  # stopped, not left waiting for its dead peer
    status = job_status(cluster, name)
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["completed"] == 1 and status["trials"]["retried"] == 1, status["trials"]
    (t,) = [t for t in study_trials(operator, name) if t.state.name != "WAITING"]
    assert t.number == 0 and t.state.name == "COMPLETE"
    assert t.user_attrs["retried_because"][0].startswith("worker 1:"), t.user_attrs
    started = sorted(p["pod"] for p in cluster.process_log if p["pod"].startswith(f"{name}-t"))
    assert started == [f"{name}-t0-a1-w0", f"{name}-t0-a1-w1", f"{name}-t0-w0", f"{name}-t0-w1"]
    # The retry is a new run on new pods: rank 0's new DNS name, the trial's MASTER_PORT again.
    assert first["MASTER_ADDR"] == f"{name}-t0-w0.{name}-t0.{NS}.svc"
    assert retry["MASTER_ADDR"] == f"{name}-t0-a1-w0.{name}-t0.{NS}.svc"
    assert retry["MASTER_PORT"] == first["MASTER_PORT"]
    at0, at1 = _digests(cluster, [f"{name}-t0-a1-w0", f"{name}-t0-a1-w1"])
    assert at0.keys() == {"0"} and at1.keys() == {"1"} and at0["0"] == at1["1"]
