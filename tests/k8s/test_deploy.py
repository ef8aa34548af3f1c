"""deploy/: the kustomize base renders, every object is valid Kubernetes, and it says what we mean.

Rendered with ``kubectl kustomize`` (kubectl 1.33 bundles kustomize; it works offline). Built-in
kinds are validated with kubernetes-validate; TuningJobs with the CRD itself (tests/k8s/harness/admission.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import admission
import kubernetes_validate
import netpol
import pytest
import yaml

from openautoglm import crd
from openautoglm.config import Settings
from openautoglm.k8s import builders

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.33.0"
NAMESPACE = "openautoglm-system"
OPERATOR = "openautoglm-operator"
IMAGE = "openautoglm/operator:0.1"
LEADER_ELECTION = "openautoglm-leader-election"
#: Reading storage Secrets: a ClusterRole bound per namespace only (deploy/storage-secrets).
SECRETS = "openautoglm-operator-secrets"

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not on PATH"
)


@cache
def _render(directory: str) -> tuple[dict[str, Any], ...]:
    proc = subprocess.run(["kubectl", "kustomize", str(REPO / directory)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def _one(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _default() -> tuple[dict[str, Any], ...]:
    return _render("deploy/default")


def _deployment() -> dict[str, Any]:
    return _one(_default(), "Deployment", OPERATOR)


def _container() -> dict[str, Any]:
    [container] = _deployment()["spec"]["template"]["spec"]["containers"]
    return container


# ----------------------------------------------------------------------------- what is rendered
def test_default_renders_the_crd_rbac_and_operator() -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in _default())
    assert kinds == sorted(
        [
            ("CustomResourceDefinition", "tuningjobs.openautoglm.io"),
            ("Namespace", NAMESPACE),
            ("ServiceAccount", OPERATOR),
            ("ClusterRole", OPERATOR),
            ("ClusterRoleBinding", OPERATOR),
            ("ClusterRole", SECRETS),
            ("Role", LEADER_ELECTION),
            ("RoleBinding", LEADER_ELECTION),
            ("ClusterRole", "openautoglm-tuningjob-admin"),
            ("ClusterRole", "openautoglm-tuningjob-editor"),
            ("ClusterRole", "openautoglm-tuningjob-viewer"),
            ("PersistentVolumeClaim", "openautoglm-studies"),
            ("Deployment", OPERATOR),
            ("Service", "openautoglm-operator-metrics"),
            ("NetworkPolicy", OPERATOR),
        ]
    )


def test_namespaced_objects_live_in_the_operator_namespace() -> None:
    cluster_scoped = {"CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding"}
    for o in _default():
        if o["kind"] in cluster_scoped:
            assert "namespace" not in o["metadata"], o["kind"]
        else:
            assert o["metadata"]["namespace"] == NAMESPACE, o["kind"]
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "openautoglm"


def test_the_crd_is_the_committed_one() -> None:
    rendered = _one(_default(), "CustomResourceDefinition", "tuningjobs.openautoglm.io")
    expected = crd.build_crd()
    rendered["metadata"]["labels"].pop("app.kubernetes.io/managed-by")
    assert rendered == expected


#: Every kustomize directory a user applies (also what tests/k8s/test_deploy_checks.py scans).
KUSTOMIZE = [
    "deploy/default",
    "deploy/prometheus",
    "deploy/postgres",
    "deploy/dashboard",
    "deploy/dashboard-postgres",
    "deploy/samples",
    "deploy/namespaced",
    "deploy/storage-secrets",
]


@pytest.mark.parametrize("directory", KUSTOMIZE)
def test_every_object_is_valid(directory: str) -> None:
    checked = 0
    for o in _render(directory):
        group = o["apiVersion"].split("/")[0] if "/" in o["apiVersion"] else ""
        if group == "openautoglm.io":
            assert admission.review(o, strict=True) == [], o["metadata"]["name"]
        elif group == "monitoring.coreos.com":
            continue  # prometheus-operator's CRD: kubernetes-validate has no schema for it
        else:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked


# ----------------------------------------------------------------------------- RBAC
def _triples(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }


#: What the operator does in a namespace where it runs jobs: its API calls (k8s/api.py) and kopf's.
#: No deletecollection (deletes go one by one, each naming its uid), no watch on Services or
#: NetworkPolicies (only pods wake a job).
IN_NAMESPACE = {
    *(("openautoglm.io", "tuningjobs", v) for v in ("get", "list", "watch", "patch", "update")),
    *(("openautoglm.io", "tuningjobs/status", v) for v in ("get", "patch", "update")),
    ("openautoglm.io", "tuningjobs/finalizers", "update"),
    *(("", "pods", v) for v in ("get", "list", "watch", "create", "delete")),
    *(("", "services", v) for v in ("get", "list", "create", "delete")),
    *(("networking.k8s.io", "networkpolicies", v) for v in ("get", "list", "create", "delete")),
    ("", "events", "create"),
    ("", "events", "patch"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
}


def test_operator_role_has_exactly_the_verbs_it_uses() -> None:
    expected = {
        *IN_NAMESPACE,
        # kopf's cluster-wide scanning (what it serves), in cluster-wide mode only
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }
    role = _one(_default(), "ClusterRole", OPERATOR)
    assert _triples(role) == expected
    assert all("resourceNames" not in rule and "nonResourceURLs" not in rule for rule in role["rules"])


def test_secrets_are_readable_only_where_a_namespace_binds_it() -> None:
    """`get secrets` is its own ClusterRole, bound by no ClusterRoleBinding anywhere in deploy/; the
    example binds it with a RoleBinding in one (placeholder) namespace."""
    assert _triples(_one(_default(), "ClusterRole", SECRETS)) == {("", "secrets", "get")}
    for directory in KUSTOMIZE:
        for o in _render(directory):
            if o["kind"] == "ClusterRoleBinding":
                assert o["roleRef"]["name"] != SECRETS, directory
            if o["kind"] == "ClusterRole" and o["metadata"]["name"] != SECRETS:
                assert not any("secrets" in rule.get("resources", []) for rule in o["rules"]), (directory, o)
    [binding] = _render("deploy/storage-secrets")
    assert binding["kind"] == "RoleBinding" and binding["metadata"]["namespace"] == "team-a"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": SECRETS}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]


def test_namespaced_install_grants_roles_in_its_namespaces_only() -> None:
    """deploy/namespaced: the operator watches the namespaces its `--namespace` arguments name,
    holds a Role in each (the in-namespace verbs + get secrets) and nothing cluster-wide."""
    objects = _render("deploy/namespaced")
    [container] = _one(objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "operator"
    namespaces = [args[i + 1] for i, a in enumerate(args) if a == "--namespace"]
    assert namespaces == ["team-a", "team-b"]
    sa = {"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}
    cluster_grants = [o for o in objects if o["kind"] == "ClusterRoleBinding" and sa in (o.get("subjects") or [])]
    assert cluster_grants == []
    assert not [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"].startswith(OPERATOR)]
    roles = {
        o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == OPERATOR
    }
    assert sorted(roles) == namespaces
    for ns, role in roles.items():
        assert _triples(role) == IN_NAMESPACE | {("", "secrets", "get")}, ns
        [binding] = [o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["namespace"] == ns]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR}
        assert binding["subjects"] == [sa]
    # everything else is deploy/default's
    rest = {
        (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
        for o in objects
        if o["kind"] not in ("Role", "RoleBinding")
    }
    default = {
        (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
        for o in _default()
        if o["kind"] not in ("Role", "RoleBinding")
    }
    assert rest == default - {
        ("ClusterRole", OPERATOR, None),
        ("ClusterRoleBinding", OPERATOR, None),
        ("ClusterRole", SECRETS, None),
    }


def test_leader_election_role_reads_and_renews_only_the_operators_lease() -> None:
    role = _one(_default(), "Role", LEADER_ELECTION)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _triples(role) == {("coordination.k8s.io", "leases", v) for v in ("create", "get", "update")}
    named = [rule for rule in role["rules"] if "resourceNames" in rule]
    assert [(r["resourceNames"], sorted(r["verbs"])) for r in named] == [
        ([Settings().leader_election_lease], ["get", "update"])
    ]
    binding = _one(_default(), "RoleBinding", LEADER_ELECTION)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": LEADER_ELECTION}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]


def test_operator_role_is_bound_to_its_service_account() -> None:
    binding = _one(_default(), "ClusterRoleBinding", OPERATOR)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OPERATOR}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    assert _deployment()["spec"]["template"]["spec"]["serviceAccountName"] == OPERATOR


@pytest.mark.parametrize(
    ("name", "aggregate", "verbs"),
    [
        (
            "openautoglm-tuningjob-admin",
            "admin",
            {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"},
        ),
        ("openautoglm-tuningjob-editor", "edit", {"create", "delete", "get", "list", "patch", "update", "watch"}),
        ("openautoglm-tuningjob-viewer", "view", {"get", "list", "watch"}),
    ],
)
def test_user_roles_aggregate_into_the_built_in_ones(name: str, aggregate: str, verbs: set[str]) -> None:
    role = _one(_default(), "ClusterRole", name)
    assert role["metadata"]["labels"][f"rbac.authorization.k8s.io/aggregate-to-{aggregate}"] == "true"
    assert _triples(role) == {("openautoglm.io", "tuningjobs", v) for v in verbs} | {
        ("openautoglm.io", "tuningjobs/status", "get")
    }


# ----------------------------------------------------------------------------- the operator
def test_deployment_runs_two_replicas_on_the_node_of_their_studies_volume() -> None:
    spec = _deployment()["spec"]
    assert spec["replicas"] == 2  # one leads, one stands by (leader election: env below)
    # A rollout never leaves no replica: a new one starts as a standby before an old one stops.
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    labels = spec["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in spec["selector"]["matchLabels"].items())
    # The journals' claim is ReadWriteOnce: the replicas must share its node.
    [term] = spec["template"]["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()
    # No PodDisruptionBudget: with both replicas on one node, it would block that node's drain.
    assert not [o for o in _default() if o["kind"] == "PodDisruptionBudget"]


def test_image_args_env_ports_and_resources() -> None:
    c = _container()
    assert c["image"] == IMAGE
    assert c["args"] == ["operator"] and "command" not in c
    assert {e["name"]: e.get("value") or e["valueFrom"] for e in c["env"]} == {
        "OMP_NUM_THREADS": "1",
        "OPENAUTOGLM_STUDY_DIR": "/var/lib/openautoglm/studies",
        "OPENAUTOGLM_OPERATOR_HEALTH_PORT": "8080",
        "OPENAUTOGLM_OPERATOR_METRICS_PORT": "8000",
        "OPENAUTOGLM_LEADER_ELECTION": "on",
        "OPENAUTOGLM_LEADER_ELECTION_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "OPENAUTOGLM_OPERATOR_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    }
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8080, "metrics": 8000}
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}


def test_env_agrees_with_the_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for e in _container()["env"]:
        monkeypatch.setenv(e["name"], e.get("value") or NAMESPACE)  # the downward API's namespace
    settings = Settings()
    assert settings.study_dir == "/var/lib/openautoglm/studies"
    assert (settings.operator_health_port, settings.operator_metrics_port) == (8080, 8000)
    # The Lease is where the Role lets the operator renew it; client-go's timings.
    assert settings.leader_election and settings.leader_election_namespace == NAMESPACE
    # Trial pods let the operator's pods in to /metrics: its namespace and its pods' labels.
    assert settings.operator_namespace == NAMESPACE
    assert netpol.selects(
        builders.parse_label_selector(settings.operator_pod_labels),
        _deployment()["spec"]["template"]["metadata"]["labels"],
    )
    assert _one(_default(), "Role", LEADER_ELECTION)["metadata"]["namespace"] == NAMESPACE
    lease = (
        settings.leader_election_lease_seconds,
        settings.leader_election_renew_seconds,
        settings.leader_election_retry_seconds,
    )
    assert lease == (15, 10.0, 2.0)


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def test_probes_hit_healthz_on_the_health_port() -> None:
    c = _container()
    for probe in ("livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert _port(c, get["port"]) == 8080


def test_studies_volume_is_a_claim_mounted_above_the_study_dir() -> None:
    pvc = _one(_default(), "PersistentVolumeClaim", "openautoglm-studies")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    pod = _deployment()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in _container()["volumeMounts"]}
    assert volumes[mounts["/var/lib/openautoglm"]]["persistentVolumeClaim"] == {"claimName": "openautoglm-studies"}
    study_dir = next(e["value"] for e in _container()["env"] if e["name"] == "OPENAUTOGLM_STUDY_DIR")
    assert study_dir.startswith("/var/lib/openautoglm/")
    assert "emptyDir" in volumes[mounts["/tmp"]]  # writable scratch beside a read-only root


def test_metrics_service_targets_the_operator_metrics_port() -> None:
    svc = _one(_default(), "Service", "openautoglm-operator-metrics")
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    [port] = svc["spec"]["ports"]
    assert port["name"] == "metrics" and _port(_container(), port["targetPort"]) == 8000


# ----------------------------------------------------------------------------- Pod Security
def _restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The checks of the restricted Pod Security Standard (baseline included), for one pod spec."""
    out = []
    psc = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(key)
    allowed_volumes = {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
    for v in pod.get("volumes", []):
        kinds = set(v) - {"name"}
        if not kinds <= allowed_volumes:
            out.append(f"volume {v['name']}: {kinds - allowed_volumes}")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            out.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: adds capabilities {caps['add']}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{name}: procMount")
    return out


def test_operator_pod_meets_the_restricted_pod_security_standard() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    assert _restricted_violations(pod) == []
    sc = _container()["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsUser"] == pod["securityContext"]["runAsUser"] == 10001


@pytest.mark.parametrize("directory", ["deploy/dashboard", "deploy/dashboard-postgres"])
def test_dashboard_is_read_only_restricted_and_without_api_access(directory: str) -> None:
    objects = _render(directory)
    deployment = _one(objects, "Deployment", "openautoglm-dashboard")
    pod = deployment["spec"]["template"]["spec"]
    assert _restricted_violations(pod) == []
    assert pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    assert container["image"] == IMAGE and container["args"][0] == "dashboard"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    service = _one(objects, "Service", "openautoglm-dashboard")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    if directory == "deploy/dashboard":
        # The operator's studies claim, read-only, beside the operator (ReadWriteOnce).
        study_dir = next(e["value"] for e in _container()["env"] if e["name"] == "OPENAUTOGLM_STUDY_DIR")
        assert container["args"][1] == mounts["studies"]["mountPath"] == study_dir
        assert mounts["studies"]["readOnly"] is True and volumes["studies"]["persistentVolumeClaim"]["readOnly"]
        assert volumes["studies"]["persistentVolumeClaim"]["claimName"] == "openautoglm-studies"
        [term] = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == OPERATOR
    else:
        assert "studies" not in volumes and "affinity" not in pod
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["OPENAUTOGLM_STORAGE_FILE"].startswith(mounts["postgres"]["mountPath"])
        assert volumes["postgres"]["secret"]["secretName"] == "openautoglm-postgres"
        assert len(container["args"]) == 5  # no storage argument: the file's URL is the default


def test_the_pod_security_check_catches_a_root_pod() -> None:
    pod = {
        "containers": [{"name": "c", "securityContext": {"runAsUser": 0}}],
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
    }
    assert len(_restricted_violations(pod)) >= 5


def test_operator_namespace_enforces_restricted() -> None:
    labels = _one(_default(), "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# ----------------------------------------------------------------------------- overlays, samples
def test_prometheus_overlay_adds_a_service_monitor_for_the_metrics_service() -> None:
    objects = _render("deploy/prometheus")
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} - {("ServiceMonitor", OPERATOR)} == {
        (o["kind"], o["metadata"]["name"]) for o in _default()
    }
    monitor = _one(objects, "ServiceMonitor", OPERATOR)
    svc = _one(objects, "Service", "openautoglm-operator-metrics")
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert all(svc["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in svc["spec"]["ports"]]
    assert not any(o["kind"] == "ServiceMonitor" for o in _default()), "the monitor is optional"
    # The operator's namespace/job labels are the TuningJob's: Prometheus must not overwrite them.
    assert all(e.get("honorLabels") is True for e in monitor["spec"]["endpoints"])


def test_postgres_overlay_gives_the_operator_its_storage_from_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = _render("deploy/postgres")
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} == {
        (o["kind"], o["metadata"]["name"]) for o in _default()
    }
    pod = _one(objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env.keys() - {"OPENAUTOGLM_STORAGE_FILE"} == {e["name"] for e in _container()["env"]}
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "postgres"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "postgres"]
    assert volume["secret"]["secretName"] == "openautoglm-postgres" and mount["readOnly"] is True
    [item] = volume["secret"]["items"]
    assert env["OPENAUTOGLM_STORAGE_FILE"] == f"{mount['mountPath']}/{item['path']}"
    # What the operator reads from that file (a Secret's file ends with whatever kubectl stored).
    secret = tmp_path / "url"
    secret.write_text("postgresql://u:p@db:5432/studies\n")
    monkeypatch.delenv("OPENAUTOGLM_STORAGE", raising=False)
    monkeypatch.setenv("OPENAUTOGLM_STORAGE_FILE", str(secret))
    assert Settings().storage == "postgresql://u:p@db:5432/studies"
    monkeypatch.setenv("OPENAUTOGLM_STORAGE_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="OPENAUTOGLM_STORAGE_FILE=.*missing"):
        Settings()


MONITORING = {"kubernetes.io/metadata.name": "monitoring"}


def test_only_the_operators_own_ports_are_open_and_metrics_to_monitoring_only() -> None:
    """Judged by the tests' NetworkPolicy evaluator: health from anywhere (probes), metrics (the
    recent trials' parameters) from the monitoring namespace only, nothing else."""
    policy = _one(_default(), "NetworkPolicy", OPERATOR)
    pod = netpol.Pod.of(
        {
            "metadata": {**_deployment()["spec"]["template"]["metadata"], "namespace": NAMESPACE},
            "spec": _deployment()["spec"]["template"]["spec"],
        }
    )
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    namespaces = {"monitoring": {}, "team-a": {}}
    tenant, prometheus = netpol.Pod("team-a", {"app": "x"}), netpol.Pod("monitoring", {"app": "prometheus"})
    allowed = {
        (who, port): netpol.ingress_allowed([policy], namespaces, src, pod, number)
        for who, src in (("tenant", tenant), ("monitoring", prometheus))
        for port, number in {**ports, "other": 9999}.items()
    }
    assert allowed == {
        ("tenant", "health"): True,
        ("tenant", "metrics"): False,
        ("tenant", "other"): False,
        ("monitoring", "health"): True,
        ("monitoring", "metrics"): True,
        ("monitoring", "other"): False,
    }
    # the same monitoring namespace as the operator's default for trial pods' /metrics
    assert builders.parse_label_selector(Settings().monitoring_namespace_selector) == {"matchLabels": MONITORING}


@pytest.mark.parametrize("directory", ["deploy/dashboard", "deploy/dashboard-postgres"])
def test_the_dashboard_admits_the_monitoring_namespace_only(directory: str) -> None:
    objects = _render(directory)
    policy = _one(objects, "NetworkPolicy", "openautoglm-dashboard")
    template = _one(objects, "Deployment", "openautoglm-dashboard")["spec"]["template"]
    pod = netpol.Pod.of({"metadata": {**template["metadata"], "namespace": NAMESPACE}, "spec": template["spec"]})
    namespaces = {"monitoring": {}, "team-a": {}}
    assert netpol.ingress_allowed([policy], namespaces, netpol.Pod("monitoring", {}), pod, 8080)
    assert not netpol.ingress_allowed([policy], namespaces, netpol.Pod("team-a", {}), pod, 8080)
    assert not netpol.ingress_allowed([policy], namespaces, netpol.Pod(NAMESPACE, {}), pod, 8080)


def test_samples_are_the_examples_and_are_admitted() -> None:
    [sample] = _render("deploy/samples")
    assert sample == yaml.safe_load((REPO / "examples" / "digits.yaml").read_text())
    assert admission.review(sample, strict=True) == []


# ----------------------------------------------------------------------------- the image
def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def _final_stage() -> str:
    return re.split(r"^FROM ", _dockerfile(), flags=re.M)[-1]


def test_dockerfile_builds_a_slim_non_root_operator_image() -> None:
    stages = re.findall(r"^FROM (\S+)", _dockerfile(), flags=re.M)
    assert len(stages) >= 2, "multi-stage"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", _dockerfile(), flags=re.M)
    final = _final_stage()
    instructions = [line.split(None, 1) for line in final.splitlines() if re.match(r"^[A-Z]+ ", line)]
    last = {k: v for k, v in instructions}
    assert last["USER"].split(":")[0] == "10001"
    assert json.loads(last["ENTRYPOINT"]) == ["openautoglm"]
    assert json.loads(last["CMD"]) == _container()["args"]
    assert set(last["EXPOSE"].split()) == {str(p["containerPort"]) for p in _container()["ports"]}
    assert "[operator,postgres,dashboard]" in _dockerfile()
    installs = re.findall(r"pip (?:install|wheel)[^\n]*", _dockerfile())
    # No Horovod and no trial extra; torch only as the pinned CPU build (for the gp sampler).
    assert installs and not any(re.search(r"horovod|\[.*trial.*\]", line) for line in installs)
    torch_lines = [line for line in installs if "torch" in line]
    assert torch_lines and all("TORCH_INDEX_URL" in line and "torch==" in line for line in torch_lines)
    assert re.search(r"^ARG TORCH_INDEX_URL=\S+/whl/cpu$", _dockerfile(), flags=re.M)


def test_operator_entry_does_not_import_torch() -> None:
    code = (
        "import sys, openautoglm.cli, openautoglm_trial.contract, openautoglm_trial.tasks\n"
        "try:\n    import openautoglm.k8s.handlers\nexcept ModuleNotFoundError as e:\n"
        "    if not (e.name or '').startswith('openautoglm.k8s'): raise\n"
        "print(sorted(m for m in ('torch', 'horovod', 'transformers', 'sklearn') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
