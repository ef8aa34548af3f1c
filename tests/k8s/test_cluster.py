"""The test harness itself: real kopf, kubectl and kubernetes client against the emulated cluster."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.watch
import pytest
import yaml
from cluster import Cluster
from kubernetes.client.rest import ApiException

from openautoglm_trial import contract

ROOT = Path(__file__).resolve().parents[2]
NS = "default"
TJ = "openautoglm.io/v1alpha1/tuningjobs"
WIDGETS = "harness.test/v1/widgets"

TUNINGJOB_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "tuningjobs.openautoglm.io"},
    "spec": {
        "group": "openautoglm.io",
        "scope": "Namespaced",
        "names": {
            "kind": "TuningJob",
            "plural": "tuningjobs",
            "singular": "tuningjob",
            "shortNames": ["tj"],
            "listKind": "TuningJobList",
        },
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                "additionalPrinterColumns": [
                    {"name": "Sampler", "type": "string", "jsonPath": ".spec.algorithm.sampler"},
                    {"name": "Max", "type": "integer", "jsonPath": ".spec.budget.maxTrials"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }
        ],
    },
}
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.harness.test"},
    "spec": {
        "group": "harness.test",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wd"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def review(obj: dict[str, Any]) -> list[str]:
    """A stand-in for the CRD's schema/CEL validation: parallelism must be at least 1."""
    parallelism = ((obj.get("spec") or {}).get("budget") or {}).get("parallelism")
    if isinstance(parallelism, int) and parallelism < 1:
        return [
            f"spec.budget.parallelism: Invalid value: {parallelism}: spec.budget.parallelism in body "
            "should be greater than or equal to 1"
        ]
    return []


def apply_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    obj.setdefault("spec", {}).setdefault("algorithm", {}).setdefault("sampler", "tpe")
    return obj


@pytest.fixture
def k8s(tmp_path: Path) -> Iterator[Cluster]:
    crd_file = tmp_path / "crds.yaml"
    crd_file.write_text(yaml.safe_dump_all([TUNINGJOB_CRD, WIDGET_CRD, {"kind": "Kustomization"}]))
    with Cluster(crd_paths=[crd_file], admission=review, defaulter=apply_defaults, workdir=tmp_path / "c") as c:
        yield c


def pod(name: str, code: str, *, env: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "python:3.11",
        "command": ["python", "-c", textwrap.dedent(code)],
        "env": env or [],
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **spec.pop("metadata", {})},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def phase(c: Cluster, name: str, ns: str = NS) -> str | None:
    obj = c.get("v1/pods", ns, name)
    return (obj.get("status") or {}).get("phase") if obj else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def create(c: Cluster, obj: dict[str, Any]) -> None:
    c.kubectl("create", "-f", "-", input=json.dumps(obj))


# -------------------------------------------------------------------------------------------------
# Kubelet


def test_pod_runs_as_a_real_process_and_succeeds_with_its_termination_message(k8s, monkeypatch):
    monkeypatch.setenv("HOROVOD_RANK", "7")  # the test's own environment must not leak into pods
    monkeypatch.setenv("OPENAUTOGLM_SECRET", "x")
    create(
        k8s,
        pod(
            "ok",
            """
        import json, os
        print(json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}))
        with open(os.environ["OPENAUTOGLM_TERMINATION_LOG"], "w") as f:
            f.write(json.dumps({"value": 0.97}))
    """,
            env=[{"name": "GREETING", "value": "hello"}],
        ),
    )
    k8s.wait_for(lambda: phase(k8s, "ok") == "Succeeded", 15, "pod ok to succeed")
    status = k8s.get("v1/pods", NS, "ok")["status"]
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert json.loads(terminated["message"]) == {"value": 0.97}
    assert status["containerStatuses"][0]["ready"] is False
    [entry] = [e for e in k8s.process_log if e["pod"] == "ok"]
    assert entry["pid"] > 0 and entry["exit_code"] == 0 and entry["ip"] == status["podIP"]
    assert entry["argv"][0] == sys.executable
    printed = json.loads(Path(entry["log"]).read_text().splitlines()[0])
    env = printed["env"]
    assert printed["cwd"] == str(Path(entry["log"]).parent) and printed["cwd"].startswith(str(k8s.workdir))
    assert env["GREETING"] == "hello" and env["HOSTNAME"] == "ok"
    assert not [k for k in env if k.startswith(contract.RESERVED_ENV_PREFIXES) and k != contract.TERMINATION_LOG]
    assert "KUBECONFIG" not in env
    assert status["podIP"].startswith(("127.25",)) and status["podIP"] != "127.0.0.1"
    assert k8s.kubectl("logs", "ok").stdout.startswith("{")


def test_failing_pod_reports_exit_code_and_log_tail(k8s):
    create(
        k8s,
        pod(
            "bad",
            """
        import sys
        for i in range(200):
            print(f"line {i}")
        sys.exit(3)
    """,
            container={"terminationMessagePolicy": "FallbackToLogsOnError"},
        ),
    )
    k8s.wait_for(lambda: phase(k8s, "bad") == "Failed", 15, "pod bad to fail")
    terminated = k8s.get("v1/pods", NS, "bad")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    lines = terminated["message"].splitlines()
    assert lines[-1] == "line 199" and len(lines) <= 80 and len(terminated["message"]) <= 2048


def test_env_field_refs_and_expansion(k8s):
    refs = {
        "POD_IP": "status.podIP",
        "HOST_IP": "status.hostIP",
        "POD_NAME": "metadata.name",
        "POD_NS": "metadata.namespace",
        "POD_UID": "metadata.uid",
        "NODE": "spec.nodeName",
    }
    env = [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in refs.items()]
    env += [{"name": "ADDR", "value": "$(POD_IP):1234"}, {"name": "LITERAL", "value": "$(rm -rf /)"}]
    create(
        k8s,
        pod(
            "refs",
            """
        import json, os
        keys = ["POD_IP", "HOST_IP", "POD_NAME", "POD_NS", "POD_UID", "NODE", "ADDR", "LITERAL"]
        open(os.environ["OPENAUTOGLM_TERMINATION_LOG"], "w").write(json.dumps({k: os.environ[k] for k in keys}))
    """,
            env=env,
        ),
    )
    k8s.wait_for(lambda: phase(k8s, "refs") == "Succeeded", 15, "pod refs")
    obj = k8s.get("v1/pods", NS, "refs")
    got = json.loads(obj["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
    assert got == {
        "POD_IP": obj["status"]["podIP"],
        "HOST_IP": "127.0.0.1",
        "POD_NAME": "refs",
        "POD_NS": NS,
        "POD_UID": obj["metadata"]["uid"],
        "NODE": "kmock-node",
        "ADDR": obj["status"]["podIP"] + ":1234",
        "LITERAL": "$(rm -rf /)",
    }


def test_deleting_a_running_pod_terminates_its_process_and_a_new_pod_gets_a_new_one(k8s, tmp_path):
    marker = tmp_path / "sigterm"
    sleeper = f"""
        import signal, sys, time
        def stop(*_):
            open({str(marker)!r}, "a").write("term\\n")
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(60)
    """
    create(k8s, pod("sleeper", sleeper))
    k8s.wait_for(lambda: "ready" in k8s.pod_log("sleeper"), 15, "sleeper to run")
    first = k8s.process_log[-1]
    k8s.kubectl("delete", "pod", "sleeper", "--wait=false")
    k8s.wait_for(lambda: first["exit_code"] is not None, 10, "the process to end")
    assert first["exit_code"] == 0 and marker.read_text() == "term\n" and not alive(first["pid"])
    assert k8s.get("v1/pods", NS, "sleeper") is None

    # Ignoring SIGTERM: killed after the grace period.
    create(
        k8s,
        pod(
            "sleeper",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
            terminationGracePeriodSeconds=1,
        ),
    )
    k8s.wait_for(
        lambda: len([e for e in k8s.process_log if e["pod"] == "sleeper"]) == 2 and "ready" in k8s.pod_log("sleeper"),
        15,
        "sleeper to run again",
    )
    second = [e for e in k8s.process_log if e["pod"] == "sleeper"][-1]
    assert second["pid"] != first["pid"] and second["ip"] != first["ip"]
    k8s.delete("v1/pods", NS, "sleeper")
    k8s.wait_for(lambda: second["exit_code"] is not None, 10, "SIGKILL after the grace period")
    assert second["exit_code"] == 128 + signal.SIGKILL


def test_readiness_probe_sets_ready(k8s):
    create(
        k8s,
        pod(
            "web",
            """
        import http.server, os, time
        time.sleep(1)
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if self.path == "/readyz" else 404); self.end_headers()
        http.server.HTTPServer((os.environ["POD_IP"], 8080), H).serve_forever()
    """,
            env=[{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            container={
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
            },
        ),
    )
    k8s.wait_for(lambda: phase(k8s, "web") == "Running", 15, "web to run")
    assert not k8s.get("v1/pods", NS, "web")["status"]["containerStatuses"][0]["ready"]

    def ready() -> bool:
        conditions = {c["type"]: c["status"] for c in k8s.get("v1/pods", NS, "web")["status"]["conditions"]}
        return conditions.get("Ready") == "True"

    k8s.wait_for(ready, 15, "web to be ready")
    assert "1/1" in k8s.kubectl("get", "pod", "web").stdout


def test_pod_dns_names_resolve_through_etc_hosts(k8s):
    name = "w0.trial.default.svc"
    create(
        k8s,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "trial"},
            "spec": {
                "clusterIP": "None",
                "selector": {"job": "dns"},
                "publishNotReadyAddresses": True,
                "ports": [{"port": 1234}],
            },
        },
    )
    create(
        k8s,
        pod(
            "dns-w0",
            "import time; time.sleep(60)",
            hostname="w0",
            subdomain="trial",
            metadata={"labels": {"job": "dns"}},
        ),
    )
    k8s.wait_for(lambda: phase(k8s, "dns-w0") == "Running", 15, "dns-w0 to run")
    ip = k8s.get("v1/pods", NS, "dns-w0")["status"]["podIP"]
    for host in (name, "w0.trial", "w0.trial.default", "w0.trial.default.svc.cluster.local", "trial.default.svc"):
        assert {a[4][0] for a in socket.getaddrinfo(host, None, socket.AF_INET)} == {ip}, host
    k8s.kubectl("delete", "pod", "dns-w0")
    k8s.wait_for(lambda: k8s.process_log[-1]["exit_code"] is not None, 10, "dns-w0 to stop")
    k8s.wait_for(lambda: name not in Path("/etc/hosts").read_text(), 5, "the record to go")
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo(name, None)


def test_dns_from_inside_a_pod_and_cleanup_on_exit(tmp_path):
    with Cluster(workdir=tmp_path) as c:
        create(
            c,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "grp"},
                "spec": {"clusterIP": "None", "selector": {"app": "a"}, "publishNotReadyAddresses": True},
            },
        )
        create(
            c,
            pod(
                "self",
                """
            import os, socket
            ip = socket.getaddrinfo("h.grp", None, socket.AF_INET)[0][4][0]  # at once: no retry needed
            open(os.environ["OPENAUTOGLM_TERMINATION_LOG"], "w").write(ip)
        """,
                hostname="h",
                subdomain="grp",
                metadata={"labels": {"app": "a"}},
            ),
        )
        c.wait_for(lambda: phase(c, "self") in ("Succeeded", "Failed"), 15, "pod self")
        obj = c.get("v1/pods", NS, "self")
        assert obj["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == obj["status"]["podIP"]
        tag = c.kubelet.hosts.tag
    assert tag not in Path("/etc/hosts").read_text()


# -------------------------------------------------------------------------------------------------
# API semantics


def test_garbage_collection_of_owned_pods(k8s):
    widget = k8s.create(
        WIDGETS, {"metadata": {"name": "owner", "namespace": NS, "finalizers": ["test/hold"]}, "spec": {}}
    )
    owner_ref = {
        "apiVersion": "harness.test/v1",
        "kind": "Widget",
        "name": "owner",
        "uid": widget["metadata"]["uid"],
        "controller": True,
    }
    create(k8s, pod("owned", "import time; time.sleep(60)", metadata={"ownerReferences": [owner_ref]}))
    create(
        k8s,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "owned-cm", "ownerReferences": [owner_ref]},
            "data": {},
        },
    )
    k8s.wait_for(lambda: phase(k8s, "owned") == "Running", 15, "owned pod to run")
    proc = k8s.process_log[-1]
    k8s.kubectl("delete", "widget", "owner", "--wait=false")
    time.sleep(0.3)
    held = k8s.get(WIDGETS, NS, "owner")
    assert held["metadata"]["deletionTimestamp"] and phase(k8s, "owned") == "Running"  # the finalizer holds it
    k8s.kubectl("patch", "widget", "owner", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    k8s.wait_for(lambda: k8s.get(WIDGETS, NS, "owner") is None, 5, "the owner to go")
    k8s.wait_for(lambda: not k8s.pods() and k8s.get("v1/configmaps", NS, "owned-cm") is None, 5, "the dependents")
    k8s.wait_for(lambda: proc["exit_code"] is not None, 10, "the owned process to end")


def test_label_selectors_filter_list_and_watch(k8s):
    core = kubernetes.client.CoreV1Api(k8s.api_client())

    def cm(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": labels}, "data": {}}

    for name, labels in (
        ("a", {"app": "x", "tier": "web"}),
        ("b", {"app": "x", "tier": "db"}),
        ("c", {"app": "y"}),
        ("d", {}),
    ):
        core.create_namespaced_config_map(NS, cm(name, labels))

    def names(selector: str) -> list[str]:
        return sorted(i.metadata.name for i in core.list_namespaced_config_map(NS, label_selector=selector).items)

    assert names("app=x") == ["a", "b"]
    assert names("app==x,tier!=db") == ["a"]
    assert names("app in (x, y),tier notin (web)") == ["b", "c"]
    assert names("tier") == ["a", "b"] and names("!app") == ["d"]
    assert names("app!=x") == ["c", "d"]

    events: list[tuple[str, str]] = []
    rv = core.list_namespaced_config_map(NS).metadata.resource_version

    def watch() -> None:
        w = kubernetes.watch.Watch()
        for ev in w.stream(
            core.list_namespaced_config_map, NS, label_selector="app=x", resource_version=rv, timeout_seconds=2
        ):
            events.append((ev["type"], ev["object"].metadata.name))

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.3)
    core.create_namespaced_config_map(NS, cm("e", {"app": "x"}))
    core.create_namespaced_config_map(NS, cm("f", {"app": "z"}))
    core.patch_namespaced_config_map("c", NS, {"metadata": {"labels": {"app": "x"}}})  # starts matching
    core.patch_namespaced_config_map("a", NS, {"metadata": {"labels": {"app": "gone"}}})  # stops matching
    core.delete_namespaced_config_map("b", NS)
    thread.join(10)
    assert events == [("ADDED", "e"), ("ADDED", "c"), ("DELETED", "a"), ("DELETED", "b")]


def test_resource_version_generation_and_status_subresource(k8s):
    api = kubernetes.client.CustomObjectsApi(k8s.api_client())
    obj = api.create_namespaced_custom_object(
        "openautoglm.io",
        "v1alpha1",
        NS,
        "tuningjobs",
        {
            "apiVersion": "openautoglm.io/v1alpha1",
            "kind": "TuningJob",
            "metadata": {"generateName": "job-"},
            "spec": {"budget": {"maxTrials": 2}},
            "status": {"phase": "Ignored"},
        },
    )
    name, rv0 = obj["metadata"]["name"], int(obj["metadata"]["resourceVersion"])
    assert (
        name.startswith("job-") and len(name) == 9 and obj["metadata"]["uid"] and obj["metadata"]["creationTimestamp"]
    )
    assert obj["metadata"]["generation"] == 1 and "status" not in obj  # status is not set on create
    assert obj["spec"]["algorithm"]["sampler"] == "tpe"  # the defaulter ran

    def patch(body: Any, status: bool = False) -> dict[str, Any]:
        fn = api.patch_namespaced_custom_object_status if status else api.patch_namespaced_custom_object
        kind = "application/json-patch+json" if isinstance(body, list) else "application/merge-patch+json"
        return fn("openautoglm.io", "v1alpha1", NS, "tuningjobs", name, body, _content_type=kind)

    labelled = patch({"metadata": {"labels": {"a": "b"}}})
    assert int(labelled["metadata"]["resourceVersion"]) > rv0 and labelled["metadata"]["generation"] == 1
    same = patch({"metadata": {"labels": {"a": "b"}}})
    assert same["metadata"]["resourceVersion"] == labelled["metadata"]["resourceVersion"]  # no-op: no new revision
    spec = patch({"spec": {"budget": {"maxTrials": 3}}, "status": {"phase": "Sneaky"}})
    assert spec["metadata"]["generation"] == 2 and "status" not in spec  # main resource ignores status
    status = patch({"status": {"phase": "Running"}, "spec": {"budget": {"maxTrials": 99}}}, status=True)
    assert status["status"] == {"phase": "Running"} and status["spec"]["budget"]["maxTrials"] == 3
    assert status["metadata"]["generation"] == 2
    assert int(status["metadata"]["resourceVersion"]) > int(spec["metadata"]["resourceVersion"])
    # kopf's optimistic JSON patch: a stale resourceVersion test fails with 422
    with pytest.raises(ApiException) as err:
        patch(
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": str(rv0)},
                {"op": "add", "path": "/metadata/labels/x", "value": "y"},
            ]
        )
    assert err.value.status == 422
    ok = patch(
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": status["metadata"]["resourceVersion"]},
            {"op": "add", "path": "/metadata/labels/x", "value": "y"},
        ]
    )
    assert ok["metadata"]["labels"] == {"a": "b", "x": "y"}


def test_admission_rejects_invalid_custom_objects_with_422(k8s, tmp_path):
    api = kubernetes.client.CustomObjectsApi(k8s.api_client())
    body = {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": "bad"},
        "spec": {"budget": {"parallelism": 0}},
    }
    with pytest.raises(ApiException) as err:
        api.create_namespaced_custom_object("openautoglm.io", "v1alpha1", NS, "tuningjobs", body)
    status = json.loads(err.value.body)
    assert err.value.status == 422 and status["reason"] == "Invalid"
    assert status["message"] == (
        'TuningJob.openautoglm.io "bad" is invalid: spec.budget.parallelism: Invalid value: '
        "0: spec.budget.parallelism in body should be greater than or equal to 1"
    )
    assert k8s.get(TJ, NS, "bad") is None
    body["spec"]["budget"]["parallelism"] = 2
    api.create_namespaced_custom_object("openautoglm.io", "v1alpha1", NS, "tuningjobs", body)
    # an update that breaks the rule is rejected too, and the stored object is unchanged
    path = tmp_path / "bad.yaml"
    body["spec"]["budget"]["parallelism"] = -1
    path.write_text(yaml.safe_dump(body))
    result = k8s.kubectl("apply", "-f", str(path), check=False)
    assert result.returncode != 0 and "spec.budget.parallelism: Invalid value: -1" in result.stderr
    assert k8s.get(TJ, NS, "bad")["spec"]["budget"]["parallelism"] == 2


@pytest.mark.parametrize("metadata", ["[]", ["a"], 7])
def test_a_body_whose_metadata_is_not_an_object_is_a_bad_request(k8s, metadata):
    # Found by tests/k8s/test_fuzz.py: the emulator answered 500 (a Python AttributeError); the API
    # server decodes metadata into ObjectMeta first, so a request like this is malformed (400).
    api = kubernetes.client.CustomObjectsApi(k8s.api_client())
    body = {"apiVersion": "openautoglm.io/v1alpha1", "kind": "TuningJob", "metadata": metadata, "spec": {}}
    with pytest.raises(ApiException) as err:
        api.create_namespaced_custom_object("openautoglm.io", "v1alpha1", NS, "tuningjobs", body)
    assert err.value.status == 400 and json.loads(err.value.body)["reason"] == "BadRequest"


def test_kubectl_create_apply_and_get_with_printer_columns(k8s, tmp_path):
    k8s.kubectl("apply", "-f", str(ROOT / "examples" / "digits.yaml"))
    table = k8s.kubectl("get", "tj").stdout.splitlines()
    assert table[0].split() == ["NAME", "SAMPLER", "MAX", "PHASE", "AGE"]
    row = table[1].split()
    assert row[:3] == ["digits-mlp", "tpe", "16"] and row[3].endswith("s")  # no phase yet: a blank cell
    listed = json.loads(k8s.kubectl("get", "tuningjobs", "-o", "json").stdout)
    [item] = listed["items"]
    assert item["kind"] == "TuningJob" and item["spec"]["budget"]["maxTrials"] == 16
    doc = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    doc["spec"]["budget"]["maxTrials"] = 20
    changed = tmp_path / "digits.yaml"
    changed.write_text(yaml.safe_dump(doc))
    assert "configured" in k8s.kubectl("apply", "-f", str(changed)).stdout
    assert "unchanged" in k8s.kubectl("apply", "-f", str(changed)).stdout
    obj = k8s.get(TJ, NS, "digits-mlp")
    assert obj["spec"]["budget"]["maxTrials"] == 20 and obj["metadata"]["generation"] == 2
    k8s.kubectl(
        "patch", "tj", "digits-mlp", "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Running"}}'
    )
    assert k8s.kubectl("get", "tj", "digits-mlp").stdout.splitlines()[1].split()[3] == "Running"
    # built-in kinds: create, then client-side apply (strategic merge patch) of a change
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "labels": {"a": "1"}},
        "data": {"k": "v"},
    }
    k8s.kubectl("apply", "-f", "-", input=json.dumps(cm))
    cm["data"] = {"k2": "v2"}
    k8s.kubectl("apply", "-f", "-", input=json.dumps(cm))
    assert k8s.get("v1/configmaps", NS, "cfg")["data"] == {"k2": "v2"}
    assert "cfg" in k8s.kubectl("get", "cm").stdout
    k8s.kubectl("delete", "tj", "digits-mlp")  # waits for the object to go (a watch with fieldSelector)
    assert k8s.get(TJ, NS, "digits-mlp") is None


def test_watch_resumes_from_resource_version_and_namespaces_are_observable(k8s):
    core = kubernetes.client.CoreV1Api(k8s.api_client())
    assert {"default", "kube-system"} <= {n.metadata.name for n in core.list_namespace().items}
    core.create_namespace({"metadata": {"name": "extra"}})
    rv = core.list_namespace().metadata.resource_version
    core.create_namespaced_config_map("extra", {"metadata": {"name": "one"}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "two"}})
    seen = [
        (e["type"], e["object"].metadata.name)
        for e in kubernetes.watch.Watch().stream(
            core.list_config_map_for_all_namespaces, resource_version=rv, timeout_seconds=1
        )
    ]
    assert seen == [("ADDED", "one"), ("ADDED", "two")]
    core.delete_namespace("extra")
    k8s.wait_for(lambda: k8s.get("v1/configmaps", "extra", "one") is None, 5, "namespace contents to go")
    # events of both APIs can be posted (kopf posts core/v1 ones)
    ref = {"kind": "ConfigMap", "namespace": NS, "name": "two", "apiVersion": "v1"}
    core.create_namespaced_event(
        NS,
        {
            "metadata": {"generateName": "two-"},
            "involvedObject": ref,
            "reason": "Test",
            "message": "core",
            "type": "Normal",
        },
    )
    kubernetes.client.EventsV1Api(k8s.api_client()).create_namespaced_event(
        NS,
        {
            "metadata": {"generateName": "two-"},
            "regarding": ref,
            "reason": "Test",
            "note": "events.k8s.io",
            "type": "Normal",
            "action": "Tested",
            "eventTime": "2024-01-01T00:00:00.000000Z",
            "reportingController": "test",
            "reportingInstance": "test",
        },
    )
    assert len(k8s.list("v1/events", NS)) == 1 and len(k8s.list("events.k8s.io/v1/events", NS)) == 1


# -------------------------------------------------------------------------------------------------
# kopf in a separate process

OPERATOR = """
import os
import kopf

@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.watching.server_timeout = 30

@kopf.on.create("harness.test", "v1", "widgets")
def widget_create(body, spec, status, patch, **_):
    with open(os.environ["CALLS_FILE"], "a") as f:
        f.write("create\\n")
    kopf.info(body, reason="Created", message="widget created")
    patch.status["created"] = (status or {}).get("created", 0) + 1
    return {"size": spec.get("size")}
"""


def test_kopf_operator_in_a_subprocess_handles_a_created_object_exactly_once(k8s, tmp_path):
    (tmp_path / "op.py").write_text(OPERATOR)
    calls = tmp_path / "calls"
    calls.write_text("")

    def start(*scope: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / "kopf.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "kopf", "run", "--standalone", *scope, str(tmp_path / "op.py")],
                env=k8s.env(CALLS_FILE=str(calls)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def created(name: str) -> int:
        return ((k8s.get(WIDGETS, NS, name) or {}).get("status") or {}).get("created", 0)

    operator = start("--all-namespaces")
    try:
        k8s.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(
                {"apiVersion": "harness.test/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}
            ),
        )
        k8s.wait_for(lambda: created("w1"), 20, "kopf to handle w1")
        time.sleep(1.5)  # any second run of the handler would happen now
        status = k8s.get(WIDGETS, NS, "w1")["status"]
        assert status["created"] == 1 and status["widget_create"] == {"size": 3}
        assert calls.read_text() == "create\n"
        # kopf's events were accepted
        events = json.loads(k8s.kubectl("get", "events", "-o", "json").stdout)["items"]
        assert any(e["involvedObject"]["name"] == "w1" and e["reason"] == "Created" for e in events)

        # Killed and restarted -- now serving namespaces by a glob, so through kopf's namespace
        # observer (GET/watch /api/v1/namespaces) -- it handles the new object and not the old one.
        operator.send_signal(signal.SIGKILL)
        operator.wait(10)
        operator = start("--namespace=def*")
        k8s.create(
            WIDGETS,
            {"apiVersion": "harness.test/v1", "kind": "Widget", "metadata": {"name": "w2"}, "spec": {"size": 5}},
            NS,
        )
        k8s.wait_for(lambda: created("w2"), 20, "the restarted kopf to handle w2")
        time.sleep(1.5)
        log = (tmp_path / "kopf.log").read_text()[-3000:]
        assert calls.read_text() == "create\ncreate\n" and created("w1") == 1 and created("w2") == 1, log
        assert operator.poll() is None, log
    finally:
        operator.send_signal(signal.SIGTERM)
        try:
            operator.wait(10)
        except subprocess.TimeoutExpired:
            operator.kill()


def test_cluster_fixture_serves_the_project_crd_with_its_admission(cluster):
    crds = [
        d
        for p in sorted((ROOT / "crds").glob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
        if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"
    ]
    if not crds:
        pytest.skip("no CRDs in crds/ yet")
    [version] = [v for v in crds[0]["spec"]["versions"] if v.get("storage")]
    cluster.kubectl("apply", "-f", str(ROOT / "examples" / "digits.yaml"))
    header = cluster.kubectl("get", "tj").stdout.splitlines()[0].split()
    assert header == ["NAME"] + [c["name"].upper() for c in version.get("additionalPrinterColumns") or []]
    assert "spec" in cluster.kubectl("explain", "tj").stdout


# -------------------------------------------------------------------------------------------------
# The pure helpers


def test_patch_selector_and_jsonpath_helpers():
    import apimachinery as am

    assert am.merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3}, "l": [2]}) == {
        "a": {"c": 2, "d": 3},
        "l": [2],
    }
    spec = {
        "containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]}, {"name": "b"}],
        "finalizers": ["f1"],
    }
    patched = am.strategic_merge_patch(
        spec,
        {
            "containers": [{"name": "a", "env": [{"name": "B", "value": "2"}]}, {"name": "b", "$patch": "delete"}],
            "$setElementOrder/containers": [{"name": "a"}],
            "finalizers": ["f2"],
        },
    )
    assert patched == {
        "containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}],
        "finalizers": ["f1", "f2"],
    }
    doc = {"metadata": {"resourceVersion": "5", "finalizers": ["a", "b"]}}
    assert am.json_patch(
        doc,
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": "5"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ],
    ) == {"metadata": {"resourceVersion": "5", "finalizers": ["b"]}}
    with pytest.raises(am.PatchError):
        am.json_patch(doc, [{"op": "test", "path": "/metadata/resourceVersion", "value": "4"}])
    obj = {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Done", "status": "False"}]}}
    assert am.jsonpath(obj, '.status.conditions[?(@.type=="Done")].status') == ["False"]
    assert am.jsonpath(obj, ".status.conditions[0].type") == ["Ready"]
    assert am.jsonpath(obj, ".status.missing") == []
    assert am.human_duration(59) == "59s" and am.human_duration(150) == "2m30s" and am.human_duration(7200) == "120m"
    assert sorted(["v1alpha1", "v2", "v1", "v1beta1"], key=am.version_priority) == ["v2", "v1", "v1beta1", "v1alpha1"]
