"""The kubelet simulator's volumes: a pod reads a pre-filled PVC and a Secret, through real mounts."""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

import pytest
from test_cluster import NS, create, k8s, phase, pod  # noqa: F401  (k8s: the fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root (as /etc/hosts does)")

READER = """
    import json, os
    out = {"cwd": os.getcwd(), "token": os.environ["TOKEN"], "model": os.environ["MODEL"],
           "corpus": open("train.txt").read(), "secret_file": open(os.environ["BASE"] + "/creds/token").read(),
           "settings": sorted(os.listdir(os.environ["BASE"] + "/settings"))}
    try:
        open("new.txt", "w")
        out["data_writable"] = True
    except OSError as err:
        out["data_writable"] = err.strerror
    open(os.environ["BASE"] + "/results/metrics.json", "w").write('{"accuracy": 0.9}')
    open("/tmp/private", "w").write("only in this pod's emptyDir")
    open(os.environ["OPENAUTOGLM_TERMINATION_LOG"], "w").write(json.dumps(out))
"""


def secret(name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def test_pod_reads_a_prefilled_pvc_and_a_secret_through_mounts(k8s, tmp_path):  # noqa: F811
    base = f"/kmock-volumes-{uuid.uuid4().hex[:8]}"  # mount points missing on this machine
    create(k8s, secret("hf", token="s3cret"))
    create(
        k8s,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "models"},
            "data": {"base": "tiny-gpt", "other": "x"},
        },
    )
    k8s.put_in_pvc("corpus", {"train.txt": "hello from the PVC\n"})
    mounts = [
        {"name": "data", "mountPath": f"{base}/data", "readOnly": True},
        {"name": "results", "mountPath": f"{base}/results"},
        {"name": "creds", "mountPath": f"{base}/creds"},
        {"name": "settings", "mountPath": f"{base}/settings"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]  # hides the pod's directory: it must stay reachable
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "corpus"}},
        {"name": "results", "persistentVolumeClaim": {"claimName": "results"}},
        {"name": "creds", "secret": {"secretName": "hf"}},
        {"name": "settings", "configMap": {"name": "models", "items": [{"key": "base", "path": "model.txt"}]}},
        {"name": "tmp", "emptyDir": {}},
    ]
    env = [
        {"name": "BASE", "value": base},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        {"name": "MODEL", "valueFrom": {"configMapKeyRef": {"name": "models", "key": "base"}}},
    ]
    create(
        k8s,
        pod(
            "reader", READER, env=env, volumes=volumes, container={"volumeMounts": mounts, "workingDir": f"{base}/data"}
        ),
    )
    k8s.wait_for(lambda: phase(k8s, "reader") in ("Succeeded", "Failed"), 20, "pod reader to end")
    status = k8s.get("v1/pods", NS, "reader")["status"]
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert status["phase"] == "Succeeded", k8s.pod_log("reader")
    got = json.loads(terminated["message"])
    assert got["cwd"] == f"{base}/data" and got["corpus"] == "hello from the PVC\n"
    assert got["token"] == "s3cret" and got["model"] == "tiny-gpt" and got["secret_file"] == "s3cret"
    assert got["settings"] == ["model.txt"] and got["data_writable"] == "Read-only file system"
    # What the pod wrote to a claim stays there for the next pod (and the test).
    assert json.loads((k8s.pvc_path("results") / "metrics.json").read_text()) == {"accuracy": 0.9}
    # Nothing leaked to this machine: no mounts, the mount points it created are gone.
    assert not Path("/tmp/private").exists()
    assert not Path(base).exists()
    assert base not in Path("/proc/self/mountinfo").read_text()


def test_a_missing_secret_keeps_the_pod_waiting_until_it_exists(k8s):  # noqa: F811
    create(
        k8s,
        pod(
            "waiter",
            "print('started')",
            volumes=[{"name": "s", "secret": {"secretName": "late"}}],
            container={"volumeMounts": [{"name": "s", "mountPath": "/run/kmock-late"}]},
        ),
    )

    def waiting():
        statuses = (k8s.get("v1/pods", NS, "waiter") or {}).get("status", {}).get("containerStatuses")
        return (statuses or [{}])[0].get("state", {}).get("waiting", {})

    k8s.wait_for(lambda: "late" in waiting().get("message", ""), 10, "a FailedMount-like wait")
    assert waiting()["reason"] == "ContainerCreating"
    create(k8s, secret("late", k="v"))
    k8s.wait_for(lambda: phase(k8s, "waiter") == "Succeeded", 15, "pod waiter to run once the secret exists")
