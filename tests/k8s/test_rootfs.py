"""harness/rootfs.py: a process in an image's root file system, and the kubelet running pods that way.

This machine's own / stands in for an image here (the image tier, tests/images, runs the built
ones): an overlay of it is the container's root, so nothing the container does reaches it.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
import rootfs
from rootfs import Container, Image
from test_cluster import NS, create, k8s, phase  # noqa: F401  (k8s: the fixture)
from volumes import Mount

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces, chroot and setuid need root")

HOST_AS_IMAGE = "example.org/host-as-image:1"

#: Prints what the process sees of itself as JSON (on stdout, and into the termination log).
PROBE = r"""
import json, os, socket, sys
out = {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()), "cwd": os.getcwd(),
       "hostname": socket.gethostname(), "env": dict(os.environ), "writable": {}}
out["own_address"] = socket.gethostbyname(socket.gethostname())
for name in sys.argv[1:]:
    out.setdefault("resolves", {})[name] = socket.gethostbyname(name)
for path in ("/rootfs-test-file", "/tmp/ok", "/data/new", "/etc/hosts"):
    try:
        with open(path, "a") as f:
            f.write("x")
        out["writable"][path] = True
    except OSError as err:
        out["writable"][path] = err.strerror
out["data"] = open("/data/f").read() if os.path.exists("/data/f") else None
with open(os.environ.get("TERMINATION_PATH", "/dev/termination-log"), "w") as f:
    f.write(json.dumps({"hostname": out["hostname"], "uid": out["uid"]}))
print(json.dumps(out))
import time; time.sleep(float(os.environ.get("LINGER", "0")))
"""


def host_image(**config) -> Image:
    return Image(name=HOST_AS_IMAGE, rootfs=Path("/"), env={"IMAGE_VAR": "from-the-image"}, **config)


def test_a_process_runs_in_the_image_as_its_user_with_a_read_only_root(tmp_path):
    tmp, data = tmp_path / "tmp", tmp_path / "data"
    tmp.mkdir(mode=0o777)
    tmp.chmod(0o777)
    data.mkdir()
    (data / "f").write_text("from a read-only volume")
    termination = tmp_path / "termination-log"
    termination.touch(mode=0o666)
    termination.chmod(0o666)
    hosts = tmp_path / "hosts"
    hosts.write_text(
        rootfs.hosts_text("127.250.9.9", ["w0.trial.ns.svc.cluster.local", "w0"], [("127.250.9.8", ["w1"])])
    )
    container = Container(
        rootfs=Path("/"),
        layer=tmp_path / "c",
        argv=["python3", "-I", "-c", PROBE, "w1"],
        env={"PATH": rootfs.DEFAULT_PATH, "ONLY": "this"},
        cwd="/made/for/the/container",
        uid=10001,
        gid=10002,
        groups=[10002, 3000],
        hostname="w0",
        mounts=[
            Mount(str(tmp), "/tmp", False, False),
            Mount(str(data), "/data", True, False),
            Mount(str(hosts), "/etc/hosts", False, True),
            Mount(str(termination), "/dev/termination-log", False, True),
        ],
    )
    done = container.run()
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["uid"], out["gid"], out["groups"]) == (10001, 10002, [3000, 10002])
    assert out["cwd"] == "/made/for/the/container" and not Path("/made").exists()
    # exactly the environment given (LC_CTYPE: Python's own C-locale coercion, PEP 538)
    assert {k: v for k, v in out["env"].items() if k != "LC_CTYPE"} == {"PATH": rootfs.DEFAULT_PATH, "ONLY": "this"}
    # its host name resolves to its own address through its own /etc/hosts, as Gloo needs
    assert out["hostname"] == "w0" and out["own_address"] == "127.250.9.9"
    assert out["resolves"] == {"w1": "127.250.9.8"}
    assert out["writable"] == {
        "/rootfs-test-file": "Read-only file system",
        "/tmp/ok": True,
        "/data/new": "Read-only file system",
        "/etc/hosts": "Permission denied",  # root's file, bound read-write as the kubelet does
    }
    assert out["data"] == "from a read-only volume" and (tmp / "ok").read_text() == "x"
    assert json.loads(termination.read_text()) == {"hostname": "w0", "uid": 10001}
    assert not Path("/rootfs-test-file").exists() and os.uname().nodename != "w0"


def test_a_writable_root_keeps_the_writes_in_the_container(tmp_path):
    marker = f"/rootfs-test-{uuid.uuid4().hex[:8]}"
    container = Container(
        rootfs=Path("/"),
        layer=tmp_path / "c",
        argv=["sh", "-c", f"echo written > {marker} && cat {marker} && id -u"],
        env={"PATH": rootfs.DEFAULT_PATH},
        cwd="/",
        uid=0,
        gid=0,
        groups=[0],
        hostname="rw",
        read_only_root=False,
    )
    done = container.run()
    assert (done.returncode, done.stdout) == (0, "written\n0\n"), done.stderr
    assert not Path(marker).exists()


def test_start_errors_are_reported_as_a_runtime_would(tmp_path):
    def run(**changes) -> tuple[int, str]:
        fields = {
            "rootfs": Path("/"),
            "layer": tmp_path / uuid.uuid4().hex[:8],
            "argv": ["true"],
            "env": {"PATH": rootfs.DEFAULT_PATH},
            "cwd": "/",
            "uid": 10001,
            "gid": 10001,
            "groups": [10001],
            "hostname": "x",
        }
        done = Container(**{**fields, **changes}).run()
        return done.returncode, done.stderr

    assert run() == (0, "")
    code, err = run(argv=["no-such-program"])
    assert code == 127 and "rootfs: exec: 'no-such-program'" in err
    code, err = run(cwd="/root")  # the working directory is there, but not the user's to enter
    assert code == 128 and "chdir to cwd ('/root')" in err
    code, err = run(rootfs=tmp_path / "missing")
    assert code == 128 and "rootfs: mount" in err


def test_the_user_comes_from_the_pod_or_the_image(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\ntrial:x:10001:10005::/home/trial:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\ntrial:x:10005:\nstaff:x:50:\n")

    def image(user: str) -> Image:
        return Image(name="i", rootfs=tmp_path, user=user)

    assert rootfs.resolve_user(image("")) == (0, 0)
    assert rootfs.resolve_user(image("10001:10001")) == (10001, 10001)
    assert rootfs.resolve_user(image("trial")) == (10001, 10005)
    assert rootfs.resolve_user(image("10001")) == (10001, 10005)  # primary group from passwd
    assert rootfs.resolve_user(image("trial:staff")) == (10001, 50)
    assert rootfs.resolve_user(image("trial"), run_as_user=20000, run_as_group=7) == (20000, 7)
    assert rootfs.resolve_user(image("4242")) == (4242, 0)
    assert rootfs.home_of(image("trial"), 10001) == "/home/trial"
    with pytest.raises(rootfs.ConfigError, match="unable to find user nobody-here"):
        rootfs.resolve_user(image("nobody-here"))
    assert Image(name="i", rootfs=tmp_path, entrypoint=["python", "-m", "x"], cmd=["--a"]).argv(None, None) == [
        "python",
        "-m",
        "x",
        "--a",
    ]
    assert Image(name="i", rootfs=tmp_path, entrypoint=["e"], cmd=["c"]).argv(["cmd"], None) == ["cmd"]
    assert Image(name="i", rootfs=tmp_path, entrypoint=["e"], cmd=["c"]).argv(None, ["a"]) == ["e", "a"]


def test_the_kubelet_runs_a_pod_in_its_image(k8s):  # noqa: F811
    """A restricted pod as the operator writes them (uid 10001, read-only root, an emptyDir at
    /tmp), in its image: its env, user, host name, DNS, volumes and termination message."""
    k8s.kubelet.rootfs_images[HOST_AS_IMAGE] = host_image(user="10001:10001")
    create(
        k8s,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "trial"},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {"app": "rootfs-test"}},
        },
    )
    create(
        k8s,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "in-image", "labels": {"app": "rootfs-test"}},
            "spec": {
                "hostname": "w0",
                "subdomain": "trial",
                "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": True, "fsGroup": 10001},
                "containers": [
                    {
                        "name": "main",
                        "image": HOST_AS_IMAGE,
                        "command": ["python3", "-I", "-c", PROBE, f"w0.trial.{NS}.svc", f"trial.{NS}.svc"],
                        "env": [
                            {"name": "LINGER", "value": "1.5"},
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        ],
                        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }
                ],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        },
    )
    k8s.wait_for(lambda: phase(k8s, "in-image") in ("Succeeded", "Failed"), 60, "the pod to end")
    pod = k8s.get("v1/pods", NS, "in-image")
    assert phase(k8s, "in-image") == "Succeeded", (pod["status"], k8s.pod_log("in-image"))
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert json.loads(terminated["message"]) == {"hostname": "w0", "uid": 10001}
    out = json.loads(k8s.pod_log("in-image").splitlines()[0])
    ip = pod["status"]["podIP"]
    assert (out["uid"], out["gid"], out["groups"]) == (10001, 10001, [10001])
    assert out["own_address"] == ip and out["resolves"] == {f"w0.trial.{NS}.svc": ip, f"trial.{NS}.svc": ip}
    # the image's Env and the pod's, nothing of this machine's (no KUBECONFIG, no PYTHONPATH...)
    env = out["env"]
    assert env["IMAGE_VAR"] == "from-the-image" and env["POD_IP"] == ip and env["HOSTNAME"] == "w0"
    assert env["HOME"] == "/" and "OPENAUTOGLM_TERMINATION_LOG" not in env and env["PATH"] == rootfs.DEFAULT_PATH
    assert set(env) <= {"IMAGE_VAR", "LINGER", "POD_IP", "HOSTNAME", "HOME", "PATH", "LC_CTYPE"}
    assert out["writable"]["/rootfs-test-file"] == "Read-only file system" and out["writable"]["/tmp/ok"] is True
    # what /proc said of the running process: its root the image's overlay, read-only, uid 10001
    [record] = [r for r in k8s.process_log if r["pod"] == "in-image"]
    assert record["image"] == HOST_AS_IMAGE and record["rootfs"] == "/"
    assert (record["root_lowerdir"], record["root_read_only"], record["process_uid"]) == ("/", True, 10001)


def test_a_root_image_is_refused_for_a_non_root_pod(k8s):  # noqa: F811
    k8s.kubelet.rootfs_images[HOST_AS_IMAGE] = host_image()  # USER unset: root
    create(
        k8s,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "root-image"},
            "spec": {
                "securityContext": {"runAsNonRoot": True},
                "containers": [{"name": "main", "image": HOST_AS_IMAGE, "command": ["true"]}],
            },
        },
    )

    def waiting() -> dict:
        statuses = ((k8s.get("v1/pods", NS, "root-image") or {}).get("status") or {}).get("containerStatuses") or [{}]
        return (statuses[0].get("state") or {}).get("waiting") or {}

    state = k8s.wait_for(lambda: waiting().get("reason") == "CreateContainerConfigError" and waiting(), 30, "refusal")
    assert state["message"] == "container has runAsNonRoot and image will run as root"
    assert not [r for r in k8s.process_log if r["pod"] == "root-image"]
