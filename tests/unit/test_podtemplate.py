"""spec.trial.podTemplate: a rich overlay becomes a valid, restricted pod; every bad overlay is refused
with its path by the model (openautoglm validate, the operator) and, where a schema or CEL can say
it, by the CRD (tests/k8s/harness/admission.py applies the committed CRD file as the API server does)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from helpers import digits_job, mutate
from test_k8s_builders import BODY, K8S_VERSION, assert_restricted

from openautoglm import podtemplate
from openautoglm.k8s import builders
from openautoglm.spec import TuningJob
from openautoglm.validation import InvalidTuningJob, validate_document

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "k8s" / "harness"))
import admission  # noqa: E402  (tests/k8s/harness/admission.py: the CRD as the API server applies it)

TEMPLATE = "spec.trial.podTemplate"
GPU_RESOURCES = {"limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}}

#: What a real trial pod asks of a cluster: data on a PVC, a token from a Secret, GPUs on tainted
#: nodes in one zone, a service account, a private registry, a fetch step and two sidecars.
RICH: dict[str, Any] = {
    "metadata": {
        "labels": {"team": "nlp", "example.com/cost-center": "ml-42"},
        "annotations": {
            "example.com/owner": "alice",
            "container.apparmor.security.beta.kubernetes.io/worker": "runtime/default",
        },
    },
    "spec": {
        "containers": [
            {
                "name": "worker",
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data", "readOnly": True},
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "vault-token", "mountPath": "/var/run/secrets/vault"},
                ],
                "env": [
                    {"name": "DATA_DIR", "value": "/data"},
                    {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
                    {"name": "MODEL", "valueFrom": {"configMapKeyRef": {"name": "models", "key": "base"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                ],
                "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "APP_"}],
                "workingDir": "/data",
                "securityContext": {"readOnlyRootFilesystem": False},
            },
            {
                "name": "log-shipper",
                "image": "fluent/fluent-bit:3.0",
                "volumeMounts": [{"name": "cache", "mountPath": "/cache", "readOnly": True}],
                "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
            },
        ],
        "initContainers": [
            {
                "name": "fetch",
                "image": "busybox:1.36",
                "command": ["cp", "-r", "/data/.", "/cache/"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cache", "mountPath": "/cache"}],
            },
            {
                "name": "proxy",
                "image": "envoyproxy/envoy:v1.30.1",
                "restartPolicy": "Always",  # a 1.33 sidecar
                "ports": [{"containerPort": 15000}],
                "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
            },
        ],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "corpus", "readOnly": True}},
            {"name": "cache", "emptyDir": {"sizeLimit": "10Gi"}},
            {"name": "hf", "secret": {"secretName": "hf", "defaultMode": 0o400}},
            {
                "name": "vault-token",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3600, "path": "token"}}
                    ]
                },
            },
            {
                "name": "scratch",
                "ephemeral": {
                    "volumeClaimTemplate": {
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}}
                    }
                },
            },
            {
                "name": "blobs",
                "csi": {
                    "driver": "blob.csi.azure.com",
                    "readOnly": True,
                    "volumeAttributes": {"containerName": "datasets"},
                },
            },
        ],
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1a"]}
                            ]
                        }
                    ]
                }
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 50,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"team": "nlp"}},
                        },
                    }
                ]
            },
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"openautoglm.io/job": "digits-test"}},
            }
        ],
        "serviceAccountName": "trainer",
        "automountServiceAccountToken": True,
        "imagePullSecrets": [{"name": "registry"}],
        "priorityClassName": "ml-batch",
        "runtimeClassName": "nvidia",
        "schedulerName": "default-scheduler",
        "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]},
        "hostAliases": [{"ip": "10.0.0.5", "hostnames": ["minio.local"]}],
        "securityContext": {"fsGroup": 2000, "supplementalGroups": [3000], "fsGroupChangePolicy": "OnRootMismatch"},
    },
}


def job_doc(template: Any = None, resources: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = digits_job()
    if template is not None:
        doc["spec"]["trial"]["podTemplate"] = copy.deepcopy(template)
    if resources is not None:
        doc["spec"]["trial"]["resources"] = copy.deepcopy(resources)
    return doc


def pods(doc: dict[str, Any]) -> list[dict[str, Any]]:
    job = validate_document(doc)
    return [builders.build_worker_pod(job, BODY, 3, rank, {"lr": 0.01}, "ml") for rank in range(job.spec.trial.workers)]


def container(pod: dict[str, Any], name: str, kind: str = "containers") -> dict[str, Any]:
    return next(c for c in pod["spec"].get(kind, []) if c["name"] == name)


# ----------------------------------------------------------------------------- a rich overlay
def test_rich_overlay_gives_valid_restricted_pods() -> None:
    plain = pods(job_doc())[0]
    for pod in pods(job_doc(RICH, GPU_RESOURCES)):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        assert_restricted(pod)
        meta, spec = pod["metadata"], pod["spec"]
        assert meta["labels"]["team"] == "nlp" and meta["labels"]["openautoglm.io/trial"] == "3"
        assert meta["annotations"]["example.com/owner"] == "alice"
        # The worker is the operator's container, first, with the template's additions.
        worker = spec["containers"][0]
        ours = container(plain, "worker")
        assert worker["name"] == "worker" and worker["command"] == ours["command"]
        assert worker["image"] == ours["image"] and worker["ports"] == ours["ports"]
        assert worker["readinessProbe"] == ours["readinessProbe"]
        env = {e["name"]: e for e in worker["env"]}
        assert [e["name"] for e in worker["env"][: len(ours["env"])]] == [e["name"] for e in ours["env"]]
        assert env["DATA_DIR"]["value"] == "/data"
        assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
        assert worker["envFrom"] == RICH["spec"]["containers"][0]["envFrom"] and worker["workingDir"] == "/data"
        assert worker["volumeMounts"][0] == {"name": podtemplate.TMP_VOLUME, "mountPath": "/tmp"}
        assert {m["mountPath"] for m in worker["volumeMounts"]} == {"/tmp", "/data", "/cache", "/var/run/secrets/vault"}
        # The template may relax readOnlyRootFilesystem, not the restricted settings.
        assert worker["securityContext"]["readOnlyRootFilesystem"] is False
        assert worker["securityContext"]["allowPrivilegeEscalation"] is False
        # GPU limits only: requests = limits, as the API server would default them.
        assert worker["resources"] == {"requests": GPU_RESOURCES["limits"], "limits": GPU_RESOURCES["limits"]}
        # Sidecars and init containers get the restricted settings they did not give.
        for name, kind in (("log-shipper", "containers"), ("fetch", "initContainers"), ("proxy", "initContainers")):
            sc = container(pod, name, kind)["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert container(pod, "proxy", "initContainers")["securityContext"]["capabilities"]["add"] == [
            "NET_BIND_SERVICE"
        ]
        assert [c["name"] for c in spec["initContainers"]] == ["fetch", "proxy"]
        assert [v["name"] for v in spec["volumes"]] == [
            podtemplate.TMP_VOLUME,
            "data",
            "cache",
            "hf",
            "vault-token",
            "scratch",
            "blobs",
        ]
        # Pod fields: placement and identity from the template, the owned ones stay the operator's.
        for key in (
            "nodeSelector",
            "tolerations",
            "affinity",
            "topologySpreadConstraints",
            "serviceAccountName",
            "imagePullSecrets",
            "priorityClassName",
            "runtimeClassName",
            "dnsConfig",
            "hostAliases",
        ):
            assert spec[key] == RICH["spec"][key], key
        assert spec["automountServiceAccountToken"] is True
        assert spec["restartPolicy"] == "Never" and spec["hostname"] == meta["name"]
        assert spec["securityContext"] == {**plain["spec"]["securityContext"], **RICH["spec"]["securityContext"]}


def test_without_a_template_the_pod_has_no_token_and_its_own_tmp() -> None:
    pod = pods(job_doc())[0]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["volumes"] == [{"name": podtemplate.TMP_VOLUME, "emptyDir": {}}]


def test_the_crd_admits_the_rich_overlay_and_stores_it_as_given() -> None:
    doc = job_doc(RICH, GPU_RESOURCES)
    stored, problems = admission.admit(doc, strict=True)
    assert problems == []
    template = stored["spec"]["trial"]["podTemplate"]
    # Defaults only where Kubernetes has them (a port's protocol), nothing else added or pruned.
    assert template["spec"]["initContainers"][1]["ports"] == [{"containerPort": 15000, "protocol": "TCP"}]
    template["spec"]["initContainers"][1]["ports"][0].pop("protocol")
    assert template == RICH
    assert TuningJob.model_validate(stored).spec.trial.pod_template == template


def test_merge_keeps_what_the_operator_owns() -> None:
    pod = pods(job_doc())[0]
    template = {
        "metadata": {"labels": {"app.kubernetes.io/name": "mine", "x": "1"}},
        "spec": {
            "restartPolicy": "Always",
            "hostname": "h",
            "containers": [{"name": "worker", "image": "evil", "env": [{"name": "HOROVOD_RANK", "value": "9"}]}],
        },
    }
    merged = podtemplate.merge_into_pod(pod, template)
    assert merged["metadata"]["labels"]["app.kubernetes.io/name"] == "openautoglm-trial"
    assert merged["metadata"]["labels"]["x"] == "1"
    assert merged["spec"]["restartPolicy"] == "Never" and merged["spec"]["hostname"] == pod["spec"]["hostname"]
    worker = merged["spec"]["containers"][0]
    assert worker["image"] == pod["spec"]["containers"][0]["image"]
    assert [e for e in worker["env"] if e["name"] == "HOROVOD_RANK"] == [
        e for e in pod["spec"]["containers"][0]["env"] if e["name"] == "HOROVOD_RANK"
    ]
    assert (
        podtemplate.merge_into_pod(pod, None) == pod and merged is not pod and pod["spec"]["restartPolicy"] == "Never"
    )


def test_local_overlay_takes_plain_env_and_working_dir_and_names_what_it_ignores() -> None:
    overlay = podtemplate.local_overlay(RICH)
    assert overlay.env == {"DATA_DIR": "/data"}
    assert overlay.working_dir == "/data"
    assert {
        "metadata.labels",
        "metadata.annotations",
        "spec.volumes",
        "spec.nodeSelector",
        "spec.initContainers",
        "spec.containers[0].env[1].valueFrom",
        "spec.containers[0].envFrom",
        "spec.containers[0].volumeMounts",
        "spec.containers[1]",
    } <= set(overlay.ignored)
    assert not any(
        p.startswith("spec.containers[0].env[0]") or p == "spec.containers[0].workingDir" for p in overlay.ignored
    )
    assert podtemplate.local_overlay(None) == podtemplate.LocalOverlay({}, None, [])


# ----------------------------------------------------------------------------- bad overlays
def _worker(**fields: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "worker", **fields}]}}


def _sidecar(security: dict[str, Any], kind: str = "containers") -> dict[str, Any]:
    side = {"name": "side", "image": "busybox:1.36", "securityContext": security}
    return {"spec": {kind: [{"name": "worker", "env": [{"name": "A", "value": "1"}]}, side]}}


def _volume(**source: Any) -> dict[str, Any]:
    return {"spec": {"volumes": [{"name": "v", **source}]}}


# (id, template, path the model reports, fragment, path the CRD reports or None: model only, fragment)
BAD: list[tuple[str, Any, str, str, str | None, str]] = [
    (
        "worker-command",
        _worker(command=["sh", "-c", "train"]),
        "spec.containers[0].command",
        "spec.trial.command",
        "spec.containers[0].command",
        "Forbidden",
    ),
    (
        "worker-image",
        _worker(image="me/trainer:2"),
        "spec.containers[0].image",
        "spec.trial.image",
        "spec.containers[0].image",
        "spec.trial.image",
    ),
    (
        "worker-resources",
        _worker(resources={"limits": {"cpu": "8"}}),
        "spec.containers[0].resources",
        "spec.trial.resources",
        "spec.containers[0].resources",
        "spec.trial.resources",
    ),
    (
        "worker-probe",
        _worker(livenessProbe={"exec": {"command": ["true"]}}),
        "spec.containers[0].livenessProbe",
        "probes",
        "spec.containers[0].livenessProbe",
        "Forbidden",
    ),
    (
        "worker-reserved-env",
        _worker(env=[{"name": "HOROVOD_RANK", "value": "0"}]),
        "spec.containers[0].env[0].name",
        "trial contract",
        "spec.containers[0].env",
        "set by the operator",
    ),
    (
        "worker-env-from-reserved-prefix",
        _worker(envFrom=[{"secretRef": {"name": "s"}, "prefix": "OPENAUTOGLM_"}]),
        "spec.containers[0].envFrom[0].prefix",
        "trial contract",
        "spec.containers[0].envFrom",
        "trial contract",
    ),
    (
        "worker-mounts-tmp",
        {
            "spec": {
                "containers": [{"name": "worker", "volumeMounts": [{"name": "c", "mountPath": "/tmp"}]}],
                "volumes": [{"name": "c", "emptyDir": {}}],
            }
        },
        "spec.containers[0].volumeMounts[0].mountPath",
        "operator's mounts",
        "spec.containers[0].volumeMounts",
        "mounts",
    ),
    (
        "sidecar-privileged",
        _sidecar({"privileged": True}),
        "spec.containers[1].securityContext.privileged",
        "no privileged containers",
        "spec.containers[1].securityContext.privileged",
        "must not be true",
    ),
    (
        "sidecar-escalation",
        _sidecar({"allowPrivilegeEscalation": True}, "initContainers"),
        "spec.initContainers[1].securityContext.allowPrivilegeEscalation",
        "must be false",
        "spec.initContainers[1].securityContext.allowPrivilegeEscalation",
        "must be false",
    ),
    (
        "sidecar-capability",
        _sidecar({"capabilities": {"add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}}),
        "spec.containers[1].securityContext.capabilities.add[1]",
        "NET_BIND_SERVICE",
        "spec.containers[1].securityContext.capabilities.add",
        "NET_BIND_SERVICE",
    ),
    (
        "sidecar-keeps-capabilities",
        _sidecar({"capabilities": {"drop": ["NET_RAW"]}}),
        "spec.containers[1].securityContext.capabilities.drop",
        "must include ALL",
        "spec.containers[1].securityContext.capabilities.drop",
        "must include ALL",
    ),
    (
        "sidecar-runs-as-root",
        _sidecar({"runAsUser": 0}, "initContainers"),
        "spec.initContainers[1].securityContext.runAsUser",
        "non-root",
        "spec.initContainers[1].securityContext.runAsUser",
        "must not be 0",
    ),
    (
        "sidecar-unconfined",
        _sidecar({"seccompProfile": {"type": "Unconfined"}}),
        "spec.containers[1].securityContext.seccompProfile.type",
        "RuntimeDefault or Localhost",
        "spec.containers[1].securityContext.seccompProfile.type",
        "RuntimeDefault or Localhost",
    ),
    (
        "sidecar-proc-mount",
        _sidecar({"procMount": "Unmasked"}),
        "spec.containers[1].securityContext.procMount",
        "Default",
        "spec.containers[1].securityContext.procMount",
        "Default",
    ),
    (
        "sidecar-selinux",
        _sidecar({"seLinuxOptions": {"type": "spc_t"}}),
        "spec.containers[1].securityContext.seLinuxOptions.type",
        "container_t",
        "spec.containers[1].securityContext.seLinuxOptions.type",
        "SELinux",
    ),
    (
        "host-port",
        {"spec": {"containers": [{"name": "side", "image": "x", "ports": [{"containerPort": 80, "hostPort": 80}]}]}},
        "spec.containers[0].ports[0].hostPort",
        "no host ports",
        "spec.containers[0].ports[0].hostPort",
        "must not be set",
    ),
    (
        "host-path-volume",
        _volume(hostPath={"path": "/var/run/docker.sock"}),
        "spec.volumes[0].hostPath",
        "hostPath volumes are not allowed",
        "spec.volumes[0].hostPath",
        "hostPath volumes are not allowed",
    ),
    (
        "nfs-volume",
        _volume(nfs={"server": "nas", "path": "/export"}),
        "spec.volumes[0].nfs",
        "not allowed",
        "spec.volumes[0].nfs",
        "not allowed",
    ),
    (
        "reserved-volume-name",
        {"spec": {"volumes": [{"name": "openautoglm-tmp", "emptyDir": {}}]}},
        "spec.volumes[0].name",
        "operator's",
        "spec.volumes[0].name",
        "operator's",
    ),
    (
        "host-network",
        {"spec": {"hostNetwork": True}},
        "spec.hostNetwork",
        "no host namespaces",
        "spec.hostNetwork",
        "must not be true",
    ),
    ("host-pid", {"spec": {"hostPID": True}}, "spec.hostPID", "no host namespaces", "spec.hostPID", "must not be true"),
    (
        "pod-runs-as-root",
        {"spec": {"securityContext": {"runAsUser": 0}}},
        "spec.securityContext.runAsUser",
        "non-root",
        "spec.securityContext.runAsUser",
        "must not be 0",
    ),
    (
        "pod-may-run-as-root",
        {"spec": {"securityContext": {"runAsNonRoot": False}}},
        "spec.securityContext.runAsNonRoot",
        "non-root",
        "spec.securityContext.runAsNonRoot",
        "must not be false",
    ),
    (
        "unsafe-sysctl",
        {"spec": {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]}}},
        "spec.securityContext.sysctls[0].name",
        "not a safe sysctl",
        "spec.securityContext.sysctls",
        "safe sysctls",
    ),
    (
        "apparmor-unconfined",
        {"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/worker": "unconfined"}}},
        "metadata.annotations.container.apparmor.security.beta.kubernetes.io/worker",
        "AppArmor",
        "metadata.annotations",
        "AppArmor",
    ),
    (
        "pod-restart-policy",
        {"spec": {"restartPolicy": "OnFailure"}},
        "spec.restartPolicy",
        "Never",
        "spec.restartPolicy",
        "Forbidden",
    ),
    (
        "pod-deadline",
        {"spec": {"activeDeadlineSeconds": 60}},
        "spec.activeDeadlineSeconds",
        "spec.trial.timeoutSeconds",
        "spec.activeDeadlineSeconds",
        "spec.trial.timeoutSeconds",
    ),
    (
        "ephemeral-containers",
        {"spec": {"ephemeralContainers": [{"name": "debug", "image": "busybox"}]}},
        "spec.ephemeralContainers",
        "cannot be set",
        "spec.ephemeralContainers",
        "cannot be set",
    ),
    (
        "owned-label",
        {"metadata": {"labels": {"openautoglm.io/job": "other"}}},
        "metadata.labels.openautoglm.io/job",
        "set by the operator",
        "metadata.labels",
        "set by the operator",
    ),
    (
        "owned-metadata",
        {"metadata": {"name": "mine"}},
        "metadata.name",
        "only labels and annotations",
        "metadata.name",
        "unknown field",
    ),
    (
        "unknown-pod-field",
        {"spec": {"nodeSelectorr": {"gpu": "h100"}}},
        "spec.nodeSelectorr",
        "unknown field",
        "spec.nodeSelectorr",
        "unknown field",
    ),
    (
        "unknown-container-field",
        _worker(volumeMount=[{"name": "x", "mountPath": "/x"}]),
        "spec.containers[0].volumeMount",
        "unknown field",
        "spec.containers[0].volumeMount",
        "unknown field",
    ),
    (
        "wrong-type",
        {"spec": {"nodeSelector": ["gpu=h100"]}},
        "spec.nodeSelector",
        "must be of type object",
        "spec.nodeSelector",
        "must be of type object",
    ),
    (
        "wrong-item-type",
        {"spec": {"tolerations": [{"key": "gpu", "tolerationSeconds": "60"}]}},
        "spec.tolerations[0].tolerationSeconds",
        "must be of type integer",
        "spec.tolerations[0].tolerationSeconds",
        "must be of type integer",
    ),
    (
        "container-without-name",
        {"spec": {"containers": [{"image": "busybox"}]}},
        "spec.containers[0].name",
        "required",
        "spec.containers[0].name",
        "Required value",
    ),
    (
        "too-many-sidecars",
        {"spec": {"containers": [{"name": f"s{i}", "image": "x"} for i in range(17)]}},
        "spec.containers",
        "at most 16",
        "spec.containers",
        "Too many",
    ),
    (
        "worker-init-container",
        {"spec": {"initContainers": [{"name": "worker", "image": "x"}]}},
        "spec.initContainers[0].name",
        "trial container",
        "spec.initContainers[0].name",
        "trial container",
    ),
    (
        "init-restart-on-failure",
        {"spec": {"initContainers": [{"name": "i", "image": "x", "restartPolicy": "OnFailure"}]}},
        "spec.initContainers[0].restartPolicy",
        "Always",
        "spec.initContainers[0].restartPolicy",
        "Always",
    ),
    # What only the model says (the pod would be refused when the operator creates it).
    (
        "mount-of-no-volume",
        _worker(volumeMounts=[{"name": "data", "mountPath": "/data"}]),
        "spec.containers[0].volumeMounts[0].name",
        "names no volume",
        None,
        "",
    ),
    (
        "bad-label-value",
        {"metadata": {"labels": {"team": "nlp research"}}},
        "metadata.labels.team",
        "not a valid label value",
        None,
        "",
    ),
    (
        "two-volume-sources",
        _volume(emptyDir={}, secret={"secretName": "s"}),
        "spec.volumes[0]",
        "one volume source",
        None,
        "",
    ),
    (
        "duplicate-container-name",
        {"spec": {"containers": [{"name": "a", "image": "x"}], "initContainers": [{"name": "a", "image": "x"}]}},
        "spec.initContainers[0].name",
        "must be unique",
        None,
        "",
    ),
]


def test_enough_bad_overlays() -> None:
    assert len(BAD) >= 40 and len({case[0] for case in BAD}) == len(BAD)


@pytest.mark.parametrize(("template", "path", "fragment"), [c[1:4] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_overlay_is_refused_by_the_model_with_its_path(template: Any, path: str, fragment: str) -> None:
    with pytest.raises(InvalidTuningJob) as err:
        validate_document(job_doc(template))
    at_path = [p.message for p in err.value.problems if p.path == f"{TEMPLATE}.{path}"]
    assert at_path, f"nothing at {path}: {err.value.problems}"
    assert any(fragment in m for m in at_path), f"{fragment!r} not in {at_path}"


@pytest.mark.parametrize(("template", "path", "fragment"), [(c[1], c[4], c[5]) for c in BAD], ids=[c[0] for c in BAD])
def test_bad_overlay_is_refused_by_the_crd_where_it_can_say_so(template: Any, path: str | None, fragment: str) -> None:
    problems = admission.review(job_doc(template), strict=True)  # strict: kubectl's default field validation
    if path is None:
        assert problems == [], f"the CRD refuses it now: give its path ({problems})"
        return
    at_path = [p for p in problems if p.startswith(f"{TEMPLATE}.{path}: ")]
    assert at_path, f"nothing at {path}: {problems}"
    assert any(fragment in p for p in at_path), f"{fragment!r} not in {at_path}"


def test_problems_of_a_missing_or_malformed_template() -> None:
    assert podtemplate.problems(None) == [] and podtemplate.problems({}) == []
    assert podtemplate.problems(["spec"]) == [("", "must be a mapping (a PodTemplateSpec: metadata, spec), got array")]
    assert podtemplate.problems(
        {"spec": {"containers": [{"name": "worker", "env": [{"name": "TOKEN", "value": "x"}]}]}}, taken_env=["TOKEN"]
    ) == [("spec.containers[0].env[0].name", "also set in spec.trial.env: give it once")]


# ----------------------------------------------------------------------------- resources
def test_limits_only_give_requests_equal_to_limits_without_crd_defaults() -> None:
    doc = job_doc(resources={"limits": {"cpu": "500m"}})
    worker = container(pods(doc)[0], "worker")
    assert worker["resources"] == {"requests": {"cpu": "500m"}, "limits": {"cpu": "500m"}}
    stored, problems = admission.admit(doc, strict=True)
    assert problems == []
    assert stored["spec"]["trial"]["resources"] == {"limits": {"cpu": "500m"}}, "the CRD added requests"


@pytest.mark.parametrize(
    ("resources", "model_path", "crd_path", "fragment"),
    [
        ({"requests": {"memory": "1Gi"}, "limits": {"memory": "128Mi"}}, "limits.memory", "limits", ">= its request"),
        ({"requests": {"cpu": "1500m"}, "limits": {"cpu": "1.2"}}, "limits.cpu", "limits", ">= its request"),
        (
            {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "2"}},
            "requests.nvidia.com/gpu",
            "requests",
            "request must equal its limit",
        ),
        ({"requests": {"nvidia.com/gpu": "1"}}, "limits.nvidia.com/gpu", "limits", "needs a limit"),
    ],
    ids=["memory", "millicores", "gpu-overcommitted", "gpu-without-limit"],
)
def test_bad_resources_are_refused_by_model_and_crd(
    resources: dict, model_path: str, crd_path: str, fragment: str
) -> None:
    doc = job_doc(resources=resources)
    with pytest.raises(InvalidTuningJob) as err:
        validate_document(doc)
    assert f"spec.trial.resources.{model_path}" in [p.path for p in err.value.problems]
    problems = admission.review(doc)
    assert any(p.startswith(f"spec.trial.resources.{crd_path}: ") and fragment in p for p in problems), problems


def test_equal_quantities_in_other_units_pass_both() -> None:
    doc = job_doc(resources={"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
    validate_document(doc)
    assert admission.review(doc, strict=True) == []


def test_gpus_pass_into_the_pod() -> None:
    worker = container(
        pods(job_doc(resources={"requests": {"cpu": "2"}, "limits": {"nvidia.com/gpu": "2"}}))[0], "worker"
    )
    assert worker["resources"] == {"requests": {"cpu": "2", "nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "2"}}
    kubernetes_validate.validate(
        mutate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}, "spec.containers", [worker]),
        K8S_VERSION,
        strict=True,
    )
