"""The trial image (trial_image/Dockerfile) and the own-script image built on it, run from their files.

The 2-rank trial runs as the operator would run it, without the operator: the real builders make
the trial's pods and headless Service, the emulated cluster's kubelet runs each pod in the built
trial image's root file system (tests/k8s/harness/rootfs.py: as uid 10001, read-only root but the
/tmp emptyDir and the termination log, the pod's host name in its own /etc/hosts, on this
machine's network at its own loopback address). A text-lm trial likewise (1 rank, a few steps).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from image_store import IN_JOBS, LIST_DISTRIBUTIONS, ROOT, TIMEOUT, pinned, run

from openautoglm.k8s import builders
from openautoglm.validation import validate_document
from openautoglm_trial import contract

pytestmark = TIMEOUT
NS = "default"
PARAMS = {"lr": 0.01, "batch_size": 64, "dropout": 0.1, "hidden": 64, "optimizer": "adam", "beta1": 0.9, "beta2": 0.999}


def test_the_trial_image_runs_the_trial_runtime_as_uid_10001(images, tmp_path):
    image = images.open("trial")
    assert image.entrypoint == ["python", "-m", "openautoglm_trial"] and not image.cmd
    assert image.user == "10001:10001"
    dists = json.loads(run(images, "trial", tmp_path, command=["python", "-c", LIST_DISTRIBUTIONS]))
    assert dists["torch"] == pinned("torch") and dists["horovod"] == pinned("horovod")
    assert not [d for d in dists if d.startswith("nvidia-")]
    code = "import os, openautoglm_trial, horovod.torch; print(os.getuid(), openautoglm_trial.__file__)"
    uid, path = run(images, "trial", tmp_path, command=["python", "-c", code]).split()
    assert uid == "10001" and path == "/opt/openautoglm/openautoglm_trial/__init__.py"


def test_the_own_script_image_is_the_trial_image_plus_the_program(images):
    trial, own = images.open("trial"), images.open("own-script")
    base = images.layers("trial")
    assert images.layers("own-script")[: len(base)] == base  # FROM openautoglm/trial:0.1, this one
    assert own.entrypoint == trial.entrypoint and own.user == "10001:10001" and own.working_dir == "/app"
    for name in ("train.py", "make_data.py"):
        assert (own.rootfs / "app" / name).read_bytes() == (ROOT / "examples" / "own-script" / name).read_bytes()
    runtime = "opt/openautoglm/openautoglm_trial/__main__.py"
    assert (own.rootfs / runtime).read_bytes() == (trial.rootfs / runtime).read_bytes()
    assert not (trial.rootfs / "app").exists()


def run_trial(
    cluster, doc: dict, params: dict, extra_env: dict[str, str] | None = None
) -> tuple[list[dict], list[dict]]:
    """Trial 0 of `doc` as the operator would start it (its pods and headless Service from the real
    builders), to the end; (its pods, their termination messages), rank by rank."""
    job = validate_document(doc)
    body = {**doc, "metadata": {**doc["metadata"], "namespace": NS, "uid": f"{doc['metadata']['name']}-uid"}}
    pods = [builders.build_worker_pod(job, body, 0, rank, params, NS) for rank in range(job.spec.trial.workers)]
    service = builders.build_trial_service(job, body, 0, NS)
    for obj in [service, *pods]:
        obj["metadata"].pop("ownerReferences")  # no TuningJob here: the garbage collector would take them
    for pod in pods:
        assert pod["spec"]["containers"][0]["image"] == IN_JOBS["trial"]
        pod["spec"]["containers"][0]["env"] += [{"name": k, "value": v} for k, v in (extra_env or {}).items()]
    cluster.create("v1/services", service, NS)
    for pod in pods:
        cluster.create("v1/pods", pod, NS)
    names = [p["metadata"]["name"] for p in pods]

    def ended() -> list[dict]:
        got = [cluster.get("v1/pods", NS, n) or {} for n in names]
        return got if all((p.get("status") or {}).get("phase") in ("Succeeded", "Failed") for p in got) else []

    done = cluster.wait_for(ended, 300, "every rank to end")
    logs = {n: cluster.pod_log(n)[-3000:] for n in names}
    assert [p["status"]["phase"] for p in done] == ["Succeeded"] * len(names), logs
    return done, [json.loads(p["status"]["containerStatuses"][0]["state"]["terminated"]["message"]) for p in done]


@pytest.mark.horovod
def test_a_two_rank_digits_trial_runs_in_two_containers_of_the_trial_image(image_cluster, images):
    doc = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    doc["metadata"]["name"] = "in-image"
    doc["spec"]["trial"]["epochs"] = 4
    # each rank keeps its parameters, to compare them (in the pod's /tmp emptyDir)
    pods, results = run_trial(image_cluster, doc, PARAMS, {contract.SAVE_PARAMS_TO: "/tmp/params.npz"})
    names = [p["metadata"]["name"] for p in pods]
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["status"] == "completed" and r["epochs"] == 4 for r in results), results
    assert results[0]["metrics"] == results[1]["metrics"] and results[0]["metrics"]["accuracy"] > 0.8
    # both ranks end with the very same parameters (Horovod's averaged gradients)
    records = {r["pod"]: r for r in image_cluster.process_log}
    params = [np.load(f"{records[n]['mounts']['/tmp']}/params.npz") for n in names]
    np.testing.assert_array_equal(params[0]["final"], params[1]["final"])
    assert not np.allclose(params[0]["initial"], params[0]["final"])
    # each ran in the image's root file system, read-only, as uid 10001 (what /proc said of it)
    trial = images.open("trial")
    for name in names:
        seen = {k: records[name].get(k) for k in ("image", "root_lowerdir", "root_read_only", "process_uid")}
        assert seen == {
            "image": trial.name,
            "root_lowerdir": str(trial.rootfs),
            "root_read_only": True,
            "process_uid": 10001,
        }


# Found by this tier: the image's OPENAUTOGLM_CACHE_DIR sat on the pod's read-only root (EROFS while
# caching the tokenizer); the worker pod now points it at /tmp (k8s/builders.py).
def test_a_text_lm_trial_runs_in_the_trial_image_with_a_read_only_root(image_cluster):
    doc = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    doc["metadata"]["name"] = "lm-in-image"
    spec = doc["spec"]
    spec["objective"] = {"metric": "loss", "direction": "minimize"}
    spec["parameters"] = [{"name": "lr", "type": "float", "low": 1e-4, "high": 1e-2, "log": True}]
    spec["warmStart"] = []
    spec["trial"].update(task="text-lm", epochs=1, workers=1, taskSettings={"steps_per_epoch": 4, "eval_blocks": 16})
    _, [result] = run_trial(image_cluster, doc, {"lr": 2e-3, "batch_size": 8})
    assert result["status"] == "completed" and result["metrics"]["loss"] > 0, result
