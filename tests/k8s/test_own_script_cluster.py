"""examples/own-script through `kubectl apply`: the unchanged script in its image, its data on a
PersistentVolumeClaim mounted by the TuningJob's podTemplate, 2 Horovod worker pods per trial.

The harness's kubelet plays the image's file system (train.py at /app, nothing else) and the
claim (a directory holding digits.npz), each bind-mounted in the pod's own mount namespace: the
trial can only train if the volume the podTemplate asked for is where the program looks.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
import yaml
from test_operator import (  # noqa: F401 (fixtures come from conftest)
    NS,
    apply,
    job_status,
    operator,  # noqa: F401
    trial_pods,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "own-script"


@pytest.mark.slow
def test_own_script_reads_its_data_from_a_mounted_volume(cluster, operator, tmp_path):  # noqa: F811
    doc = yaml.safe_load((EXAMPLE / "tuningjob.yaml").read_text())
    image_root = tmp_path / "image-app"
    image_root.mkdir()
    shutil.copy(EXAMPLE / "train.py", image_root / "train.py")  # the image holds the program only
    cluster.kubelet.image_files[doc["spec"]["trial"]["image"]] = {"/app": str(image_root)}
    run_own_script_job(cluster, tmp_path, image_root)


def run_own_script_job(cluster, tmp_path, image_root: Path | None) -> list[dict]:
    """examples/own-script's job (3 trials) to Succeeded, its data on the claim; returns the
    process log entries of its pods. `image_root`: the directory the kubelet shows at /app (None:
    the pods run in the built own-script image, tests/images/test_cluster_in_images.py)."""
    doc = yaml.safe_load((EXAMPLE / "tuningjob.yaml").read_text())
    image = doc["spec"]["trial"]["image"]
    cluster.kubectl("apply", "-f", str(EXAMPLE / "data-pvc.yaml"))
    cluster.put_in_pvc("digits-data", {"digits.npz": (EXAMPLE / "data" / "digits.npz").read_bytes()})

    spec = doc["spec"]
    good = {"lr": 0.05, "momentum": 0.9, "batch-size": 32, "hidden": 64}
    spec["budget"] = {"maxTrials": 3, "parallelism": 1, "maxFailedTrials": 0}
    spec["warmStart"] = [
        {"params": good},
        {"params": {**good, "lr": 0.1}},
        {"params": {"lr": 0.001, "momentum": 0.0, "batch-size": 64, "hidden": 16}},
    ]
    spec["trial"]["command"] = [a if not a.startswith("--epochs=") else "--epochs=12" for a in spec["trial"]["command"]]
    spec["metrics"]["intervalSeconds"] = 0.5
    t0 = time.monotonic()
    apply(cluster, doc, tmp_path)

    # The pod as the operator built it: the overlay merged under the operator's own fields.
    cluster.wait_for(lambda: trial_pods(cluster, "own-script"), 60, "the first trial's pods")
    pod = sorted(trial_pods(cluster, "own-script"), key=lambda p: p["metadata"]["name"])[0]
    [worker] = [c for c in pod["spec"]["containers"] if c["name"] == "worker"]
    assert worker["command"] == ["python", "-m", "openautoglm_trial"] and worker["image"] == image
    assert worker["workingDir"] == "/app"
    assert {"name": "data", "mountPath": "/app/data", "readOnly": True} in worker["volumeMounts"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "digits-data", "readOnly": True}} in pod["spec"][
        "volumes"
    ]
    # limits only in the template: requests equal them, as the API server would default them
    assert worker["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }

    cluster.wait_for(
        lambda: job_status(cluster, "own-script").get("phase") in ("Succeeded", "Failed"), 400, "the job to finish"
    )
    status = job_status(cluster, "own-script")
    assert status["phase"] == "Succeeded", status
    states = {t["number"]: t["state"] for t in status["recentTrials"]}
    assert states == {0: "Completed", 1: "Completed", 2: "Pruned"}, status["recentTrials"]
    best = status["bestTrial"]
    assert best["value"] > 0.9 and set(best["metrics"]) == {"accuracy", "loss", "train-loss"}
    # every rank of every trial ran in a pod that had the claim at /app/data and the image at /app
    runs = [p for p in cluster.process_log if p["pod"].startswith("own-script-t")]
    assert len({p["pod"] for p in runs}) >= 5
    pvc = str(cluster.pvc_path("digits-data"))
    assert all(p["mounts"].get("/app/data") == pvc for p in runs)
    if image_root is not None:
        assert all(p["mounts"].get("/app") == str(image_root) for p in runs)
    # trial.checkpoint (keep: best): once the job is done (the janitor pod that removes the other
    # trials' runs right after the last trial ends), only the best trial's checkpoint is left on the
    # claim, where the status says, and the janitor pod is gone too.
    claim = spec["trial"]["checkpoint"]["claim"]
    where = f"{NS}/own-script/trial-{best['number']}"
    assert best["checkpoint"] == {"claim": claim, "path": where}, best
    job_dir = cluster.pvc_path(claim, NS) / NS / "own-script"
    kept = [f"trial-{best['number']}"]
    cluster.wait_for(lambda: sorted(d.name for d in job_dir.iterdir()) == kept, 60, f"only {kept} left")
    cluster.wait_for(
        lambda: not [p for p in cluster.pods(NS) if p["metadata"]["name"].startswith("own-script-ckpt-")],
        60,
        "the janitor pod deleted",
    )
    assert (cluster.pvc_path(claim, NS) / where / "checkpoint.pt").is_file()
    for run in runs:  # every rank of every run: its trial's own directory of the claim
        trial = re.match(r"own-script-t(\d+)-", run["pod"]).group(1)
        assert run["mounts"]["/var/lib/openautoglm/checkpoint"] == str(job_dir / f"trial-{trial}"), run["mounts"]
    print(f"\nown-script in the cluster harness: {time.monotonic() - t0:.1f} s")
    return runs
