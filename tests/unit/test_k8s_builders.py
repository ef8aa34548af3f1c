"""Pure manifest builders: valid Kubernetes objects that meet the restricted Pod Security Standard."""

import datetime as dt
import json

import kubernetes_validate
import pytest
from helpers import digits_job

from openautoglm.engine.status import JobStatus
from openautoglm.k8s import builders
from openautoglm.k8s.backend import observe_pod
from openautoglm.validation import validate_document

K8S_VERSION = "1.33"
BODY = {
    "apiVersion": "openautoglm.io/v1alpha1",
    "kind": "TuningJob",
    "metadata": {"name": "digits-test", "namespace": "ml", "uid": "0f4c-uid"},
}


def job(workers):
    doc = digits_job()
    doc["spec"]["trial"]["workers"] = workers
    doc["spec"]["parameters"].append(
        {"name": "tag", "type": "categorical", "choices": ["$(touch /tmp/pwned)", "; rm -rf ~"]}
    )
    return validate_document(doc)


ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def _assert_restricted_context(sc, where):
    """Rules shared by the pod's and a container's securityContext."""
    assert sc.get("windowsOptions", {}).get("hostProcess") in (None, False), where
    assert sc.get("appArmorProfile", {}).get("type") in (None, "RuntimeDefault", "Localhost"), where
    selinux = sc.get("seLinuxOptions", {})
    assert selinux.get("type") in SELINUX_TYPES and not selinux.get("user") and not selinux.get("role"), where
    assert sc.get("runAsUser") != 0 and sc.get("runAsNonRoot") is not False, where
    assert sc.get("seccompProfile", {}).get("type") in (None, "RuntimeDefault", "Localhost"), where


def assert_restricted(pod):
    """Every rule of the "restricted" Pod Security Standard (v1.33), written out independently of the code."""
    spec, annotations = pod["spec"], pod["metadata"].get("annotations", {})
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    for v in spec.get("volumes", []):
        assert set(v) - {"name"} <= ALLOWED_VOLUMES, v  # no hostPath either
    pod_sc = spec.get("securityContext", {})
    _assert_restricted_context(pod_sc, "pod")
    assert {s["name"] for s in pod_sc.get("sysctls", [])} <= SAFE_SYSCTLS
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/"):
            assert value == "runtime/default" or value.startswith("localhost/"), key
    for c in spec["containers"] + spec.get("initContainers", []) + spec.get("ephemeralContainers", []):
        sc = c.get("securityContext", {})
        _assert_restricted_context(sc, c["name"])
        assert sc.get("privileged") in (None, False)
        assert sc.get("allowPrivilegeEscalation") is False
        assert sc.get("procMount") in (None, "Default")
        assert "ALL" in sc.get("capabilities", {}).get("drop", [])
        assert set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}
        assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True
        assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        assert seccomp in ("RuntimeDefault", "Localhost")
        assert all(p.get("hostPort", 0) == 0 for p in c.get("ports", []))


@pytest.mark.parametrize("workers", [1, 4])
def test_worker_pods_are_valid_restricted_and_wired_for_horovod(workers):
    j = job(workers)
    params = {"lr": 0.01, "tag": "$(touch /tmp/pwned)"}
    pods = [builders.build_worker_pod(j, BODY, 7, r, params, "ml") for r in range(workers)]
    svc = builders.build_trial_service(j, BODY, 7, "ml")
    for obj in pods + [svc]:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    for rank, pod in enumerate(pods):
        assert_restricted(pod)
        meta, spec = pod["metadata"], pod["spec"]
        assert meta["name"] == f"digits-test-t7-w{rank}"
        assert meta["labels"]["openautoglm.io/job"] == "digits-test" and meta["labels"]["openautoglm.io/trial"] == "7"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "openautoglm-operator"
        assert meta["ownerReferences"][0]["uid"] == "0f4c-uid" and meta["ownerReferences"][0]["controller"]
        assert spec["restartPolicy"] == "Never" and spec["subdomain"] == svc["metadata"]["name"]
        c = spec["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        # parameters are data: an env value holding JSON, exec-form command, no shell anywhere
        assert json.loads(env["OPENAUTOGLM_TRIAL_PARAMS"]["value"]) == params
        assert c["command"] == ["python", "-m", "openautoglm_trial"] and "args" not in c
        assert not any(part in ("sh", "bash", "/bin/sh", "-c") for part in c["command"])
        assert env["HOROVOD_RANK"]["value"] == str(rank) and env["HOROVOD_SIZE"]["value"] == str(workers)
        assert env["HOROVOD_GLOO_RENDEZVOUS_ADDR"]["value"] == "digits-test-t7-w0.digits-test-t7.ml.svc"
        assert env["OPENAUTOGLM_BIND_ADDRESS"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert (
            c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        )
        assert c["resources"] == j.spec.trial.resources.model_dump() and c["resources"]["limits"]["memory"]
        assert c["terminationMessagePath"] == "/dev/termination-log"
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {"openautoglm.io/job": "digits-test", "openautoglm.io/trial": "7"}


def _status(n_trials):
    recent = [
        {"number": i, "state": "Completed", "params": {"lr": 0.1, "hidden": 64}, "value": 0.9} for i in range(n_trials)
    ]
    return JobStatus(
        phase="Running",
        reason=None,
        message=None,
        counts={"running": 2, "completed": n_trials, "pruned": 0, "failed": 0, "finished": n_trials, "max": 10_000},
        best=recent[0],
        pareto=[],
        recent=recent[-10:],
        elapsed_seconds=3.0,
        remaining_seconds=None,
    )


def test_status_size_does_not_grow_with_trials():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    small = builders.build_resource_status(
        _status(10), previous=None, generation=1, start_time="x", now=now, storage="s"
    )
    large = builders.build_resource_status(
        _status(10_000), previous=None, generation=1, start_time="x", now=now, storage="s"
    )
    assert len(json.dumps(large)) - len(json.dumps(small)) < 80  # only numbers grow by a few digits
    assert large["progress"] == "10000/10000"


def test_conditions_keep_transition_times_until_they_change():
    t1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    t2 = t1 + dt.timedelta(minutes=5)
    first = builders.build_conditions(None, "Running", None, None, 1, t1)
    same = builders.build_conditions(first, "Running", None, None, 1, t2)
    assert first == same
    done = {c["type"]: c for c in builders.build_conditions(first, "Succeeded", "MaxTrialsReached", "16 trials", 1, t2)}
    assert done["Succeeded"]["status"] == "True" and done["Succeeded"]["reason"] == "MaxTrialsReached"
    assert done["Succeeded"]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert done["Running"]["status"] == "False" and done["Reconciling"]["status"] == "False"
    assert done["Ready"]["status"] == "True" and done["Ready"]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert done["Stalled"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"  # False all along


def _conditions(phase, reason=None, refused=None):
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return {
        c["type"]: (c["status"], c["reason"])
        for c in builders.build_conditions(None, phase, reason, "m", 3, now, refused=refused)
    }


@pytest.mark.parametrize(
    ("phase", "reason", "refused", "true"),
    [
        ("Pending", None, None, {"Reconciling", "Running"}),
        ("Running", None, None, {"Reconciling", "Running"}),
        ("Succeeded", "MaxTrialsReached", None, {"Ready", "Succeeded"}),
        ("Failed", "MaxFailedTrialsReached", None, {"Stalled", "Failed"}),
        ("Invalid", "InvalidSpec", None, {"Stalled", "Failed"}),
        # A refused edit: the job runs on with its old spec, and GitOps sees it stalled.
        ("Running", None, "spec.parameters changed", {"Stalled", "Running"}),
        ("Succeeded", "MaxTrialsReached", "spec.parameters changed", {"Stalled", "Succeeded"}),
    ],
)
def test_kstatus_conditions(phase, reason, refused, true):
    conditions = _conditions(phase, reason, refused)
    assert list(conditions) == list(builders.CONDITION_TYPES)
    assert {t for t, (status, _) in conditions.items() if status == "True"} == true
    if refused:
        assert conditions["Stalled"][1] == builders.SPEC_CHANGE_REFUSED
    elif "Stalled" in true:
        assert conditions["Stalled"][1] == reason


# ----------------------------------------------------------------------------- reading a pod back
def _pod_with(statuses: list[dict], phase: str = "Running") -> dict:
    return {
        "metadata": {"name": "j-t0-w1", "labels": {"openautoglm.io/rank": "1"}},
        "status": {"phase": phase, "podIP": "10.0.0.7", "containerStatuses": statuses},
    }


def test_a_rank_is_read_from_the_trial_container_not_a_sidecar() -> None:
    from openautoglm.engine.trials import FAILED, RUNNING, SUCCEEDED
    from openautoglm.k8s.backend import observe_pod

    result = '{"status": "completed"}'
    sidecar = {"name": "log-shipper", "state": {"running": {}}}
    done = {"name": "worker", "state": {"terminated": {"exitCode": 0, "message": result}}}
    # Statuses come sorted by name: the sidecar may come after the worker, or before.
    for statuses in ([done, sidecar], [sidecar, done]):
        w = observe_pod(_pod_with(statuses), 9090)
        assert (w.rank, w.phase, w.exit_code, w.termination_message) == (1, SUCCEEDED, 0, result)
    crashed = {"name": "worker", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
    assert observe_pod(_pod_with([crashed, sidecar]), 9090).phase == FAILED
    finished_sidecar = {"name": "a-sidecar", "state": {"terminated": {"exitCode": 0, "message": "not ours"}}}
    w = observe_pod(_pod_with([finished_sidecar, {"name": "worker", "state": {"running": {}}}]), 9090)
    assert (w.phase, w.exit_code, w.termination_message, w.endpoint) == (RUNNING, None, None, "10.0.0.7:9090")


def test_the_status_is_written_on_a_change_not_on_every_tick_of_the_clock():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    written = builders.build_resource_status(
        _status(10), previous=None, generation=1, start_time="x", now=now, storage="s"
    )
    assert builders.status_worth_writing(None, written, 10)
    later = {**written, "elapsedSeconds": written["elapsedSeconds"] + 4.0}
    assert not builders.status_worth_writing(written, later, 10)  # only the clock moved
    assert builders.status_worth_writing(written, {**later, "elapsedSeconds": written["elapsedSeconds"] + 10}, 10)
    assert builders.status_worth_writing(written, {**later, "progress": "11/10000"}, 10)


def test_counts_wait_for_the_write_interval_but_phase_and_conditions_do_not():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    written = builders.build_resource_status(
        _status(10), previous=None, generation=1, start_time="x", now=now, storage="s"
    )
    counts = {**written, "progress": "11/10000"}
    assert not builders.status_worth_writing(written, counts, 10, since_written=0.3, min_interval=1.0)
    assert builders.status_worth_writing(written, counts, 10, since_written=1.0, min_interval=1.0)
    # What kubectl wait and GitOps act on goes out at once, however recent the last write.
    for prompt in ({"phase": "Succeeded"}, {"observedGeneration": 2}, {"conditions": []}, {"reason": "Target"}):
        assert builders.status_worth_writing(written, {**counts, **prompt}, 10, since_written=0.0, min_interval=1.0)


def test_a_storage_outage_stalls_the_job_until_a_pass_writes_again():
    t1, t2, t3 = (dt.datetime(2024, 1, 1, 0, 0, s, tzinfo=dt.UTC) for s in (1, 2, 3))
    running = {
        "phase": "Running",
        "trials": {"running": 2, "completed": 3},
        "conditions": builders.build_conditions(None, "Running", None, None, 4, t1),
    }
    down = builders.build_stalled_status(running, generation=4, now=t2, message="study storage x unreachable")
    conds = {c["type"]: c for c in down["conditions"]}
    assert conds["Stalled"] == {
        "type": "Stalled",
        "status": "True",
        "reason": "StorageUnavailable",
        "message": "study storage x unreachable",
        "lastTransitionTime": "2024-01-01T00:00:02Z",
        "observedGeneration": 4,
    }
    assert conds["Running"]["status"] == "True" and conds["Reconciling"]["status"] == "False"
    assert down["trials"] == running["trials"] and down["phase"] == "Running"  # the rest as last written
    back = {c["type"]: c for c in builders.build_conditions(down["conditions"], "Running", None, None, 4, t3)}
    assert back["Stalled"]["status"] == "False" and back["Stalled"]["lastTransitionTime"] == "2024-01-01T00:00:03Z"


def test_every_rank_and_run_of_a_trial_mounts_one_checkpoint_directory_on_the_claim():
    doc = digits_job()
    doc["spec"]["trial"]["checkpoint"] = {"claim": "ckpt", "keep": "best"}
    j = validate_document(doc)
    pods = [builders.build_worker_pod(j, BODY, 7, r, {"lr": 0.01}, "ml", attempt) for r in (0, 1) for attempt in (0, 2)]
    for pod in pods:
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        assert_restricted(pod)
        c = pod["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in c["env"]}
        mount = next(m for m in c["volumeMounts"] if m["name"] == builders.CHECKPOINT_VOLUME)
        # One directory per namespace, job and trial: the same for every rank and every run.
        assert mount == {
            "name": builders.CHECKPOINT_VOLUME,
            "mountPath": "/var/lib/openautoglm/checkpoint",
            "subPath": "ml/digits-test/trial-7",
        }
        assert env["OPENAUTOGLM_CHECKPOINT_DIR"] == "/var/lib/openautoglm/checkpoint"
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == builders.CHECKPOINT_VOLUME)
        assert volume["persistentVolumeClaim"] == {"claimName": "ckpt"}
    assert [p["metadata"]["labels"]["openautoglm.io/attempt"] for p in pods] == ["0", "2", "0", "2"]
    # Without trial.checkpoint: no mount, no variable.
    plain = builders.build_worker_pod(job(1), BODY, 7, 0, {"lr": 0.01}, "ml")
    assert "OPENAUTOGLM_CHECKPOINT_DIR" not in {e["name"] for e in plain["spec"]["containers"][0]["env"]}
    assert all(v["name"] != builders.CHECKPOINT_VOLUME for v in plain["spec"]["volumes"])


def test_the_ranks_of_one_run_are_one_kueue_pod_group():
    doc = digits_job()
    doc["spec"]["trial"]["scheduling"] = {"kueue": {"queueName": "team-a"}}
    j = validate_document(doc)
    groups = set()
    for attempt in (0, 1):
        for rank in (0, 1):
            pod = builders.build_worker_pod(j, BODY, 3, rank, {"lr": 0.01}, "ml", attempt)
            kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
            labels, annotations = pod["metadata"]["labels"], pod["metadata"]["annotations"]
            assert labels[builders.KUEUE_QUEUE_LABEL] == "team-a"
            assert annotations[builders.KUEUE_GROUP_COUNT] == "2"
            groups.add((attempt, labels[builders.KUEUE_GROUP_LABEL]))
    # A requeued or retried run is a new group, never the rest of the old one.
    assert groups == {(0, "digits-test-t3"), (1, "digits-test-t3-a1")}


def test_the_checkpoint_janitor_sees_only_its_jobs_directory_and_is_restricted():
    doc = digits_job()
    doc["spec"]["trial"]["checkpoint"] = {"claim": "ckpt"}
    j = validate_document(doc)
    pod = builders.build_checkpoint_janitor(j, BODY, "ml", {3, 9}, 12)
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert_restricted(pod)
    c = pod["spec"]["containers"][0]
    assert c["command"][-4:] == ["--below", "12", "--keep", "3,9"]
    assert c["volumeMounts"][0]["subPath"] == "ml/digits-test"
    assert "openautoglm.io/trial" not in pod["metadata"]["labels"], "not taken for a trial's pod"
    assert pod["metadata"]["name"] == builders.janitor_name("digits-test", {9, 3}, 12)
    assert pod["metadata"]["name"] != builders.janitor_name("digits-test", {3}, 12)


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (
            {
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient cpu.",
                    }
                ]
            },
            "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.",
        ),
        (
            {
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "SchedulingGated",
                        "message": "Scheduling is blocked due to non-empty scheduling gates",
                    }
                ]
            },
            "SchedulingGated: Scheduling is blocked due to non-empty scheduling gates",
        ),
        (
            {
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": "worker",
                        "state": {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}},
                    }
                ],
            },
            'ImagePullBackOff: Back-off pulling image "x"',
        ),
        (
            {"containerStatuses": [{"name": "worker", "state": {"waiting": {"reason": "ContainerCreating"}}}]},
            "ContainerCreating",
        ),
        ({}, None),
        ({"conditions": "garbage"}, None),
    ],
)
def test_a_pending_rank_says_why_it_waits(status, says):
    pod = {"metadata": {"name": "p", "labels": {"openautoglm.io/rank": "1"}}, "status": {"phase": "Pending", **status}}
    assert observe_pod(pod, 9090).waiting == says


def test_a_long_scheduler_message_is_bounded():
    message = "0/5000 nodes are available: " + "node-x didn't match Pod's node affinity/selector, " * 500
    pod = {
        "metadata": {"name": "p", "labels": {}},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "message": message}]},
    }
    waiting = observe_pod(pod, 9090).waiting
    assert waiting.startswith("Unschedulable: 0/5000 nodes") and len(waiting) < 400


def test_a_torchrun_trial_gets_torchruns_environment_and_no_horovod():
    doc = digits_job()
    doc["spec"]["trial"]["launcher"] = "torchrun"
    doc["spec"]["trial"]["taskSettings"] = {"distributed": "ddp"}
    j = validate_document(doc)
    ports = set()
    for rank in (0, 1):
        pod = builders.build_worker_pod(j, BODY, 7, rank, {"lr": 0.01}, "ml")
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert not [k for k in env if k.startswith(("HOROVOD_", "TORCHELASTIC_"))], env
        assert env["MASTER_ADDR"] == "digits-test-t7-w0.digits-test-t7.ml.svc", "rank 0's stable DNS name"
        assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"]) == (
            str(rank),
            "2",
            "0",
            "1",
        )
        assert env["GROUP_RANK"] == str(rank) and env["OPENAUTOGLM_LAUNCHER"] == "torchrun"
        ports.add(env["MASTER_PORT"])
    assert len(ports) == 1, "every rank dials the same store"
    other = builders.build_worker_pod(j, BODY, 8, 0, {"lr": 0.01}, "ml")
    other_port = next(e["value"] for e in other["spec"]["containers"][0]["env"] if e["name"] == "MASTER_PORT")
    assert other_port not in ports, "trials sharing a network namespace get ports of their own"
