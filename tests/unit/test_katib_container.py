"""import-katib: the trial's primary container (its command, env, resources) and its pod."""

from __future__ import annotations

import re
from typing import Any

import pytest
from katib_experiments import (
    JOB_POD,
    REPO,
    TRIAL_SPEC,
    experiment,
    load,
    paths,
    reason,
    valid,
    with_container,
    with_pod,
)

from openautoglm.katib import NotAnExperiment, convert


# ============================================================================= the trial: command
def test_trial_parameters_are_rewritten_to_their_reference() -> None:
    c = convert(experiment())
    assert c.job["spec"]["trial"]["command"] == [
        "python3",
        "train.py",
        "--lr=${trialParameters.lr}",
        "--momentum=${trialParameters.momentum}",
    ]


def test_command_and_args_make_one_argv() -> None:
    c = convert(with_container(command=["python3"], args=["train.py", "--lr", "${trialParameters.learningRate}"]))
    assert c.job["spec"]["trial"]["command"] == ["python3", "train.py", "--lr", "${trialParameters.lr}"]


def test_undeclared_placeholder_and_trial_metadata() -> None:
    c = convert(with_container(command=["python3", "train.py", "--x=${trialParameters.nope}"]))
    assert paths(c) == {f"{JOB_POD}.containers[0].command"}
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialParameters"].append({"name": "trialName", "reference": "${trialSpec.Name}"})
    c = convert(exp)
    assert paths(c) == {"spec.trialTemplate.trialParameters[2].reference"}


def test_kubelet_variable_expansion_is_unmapped() -> None:
    c = convert(with_container(command=["python3", "train.py", "--out=$(OUT_DIR)/x"]))
    assert paths(c) == {f"{JOB_POD}.containers[0].command"}
    assert "$(VAR)" in reason(c, f"{JOB_POD}.containers[0].command")
    c = convert(with_container(command=["python3", "train.py", "--price=$$(x)"]))
    assert c.complete


def test_shell_string_is_split() -> None:
    script = (
        "python3 /opt/train.py --lr=${trialParameters.learningRate} --name 'my run' \\\n"
        '  --momentum "${trialParameters.momentum}"'
    )
    c = convert(with_container(command=["sh", "-c", script]))
    assert c.complete, c.unmapped
    assert c.job["spec"]["trial"]["command"] == [
        "python3",
        "/opt/train.py",
        "--lr=${trialParameters.lr}",
        "--name",
        "my run",
        "--momentum",
        "${trialParameters.momentum}",
    ]
    assert any("split into the exec-form command" in n for n in c.notes)
    valid(c.job)
    c = convert(with_container(command=["/bin/bash", "-c"], args=["exec python3 train.py"]))
    assert c.job["spec"]["trial"]["command"] == ["python3", "train.py"]


@pytest.mark.parametrize(
    "script, what",
    [
        ("cd /app && python3 train.py", "'&'"),
        ("python3 train.py | tee log", "'|'"),
        ("python3 train.py; echo done", "';'"),
        ("python3 train.py > /tmp/out", "'>'"),
        ("python3 train.py --dir=$(pwd)", "expansion"),
        ("python3 train.py --home=$HOME", "expansion"),
        ('python3 train.py --home="$HOME"', "expansion"),
        ("python3 `which train`", "command substitution"),
        ("python3 train.py\npython3 eval.py", "several command lines"),
        ("python3 train_*.py", "glob"),
        ("LR=0.1 python3 train.py", "variable assignment"),
        ("python3 'train.py", "unterminated"),
    ],
)
def test_shell_string_with_operators_is_refused(script: str, what: str) -> None:
    c = convert(with_container(command=["sh", "-c", script]))
    assert paths(c) == {f"{JOB_POD}.containers[0].command"}
    assert what in reason(c, f"{JOB_POD}.containers[0].command")


def test_missing_command_is_unmapped() -> None:
    c = convert(with_container(args=["--lr=${trialParameters.learningRate}"]))
    assert paths(c) == {f"{JOB_POD}.containers[0].command"}
    assert "ENTRYPOINT" in reason(c, f"{JOB_POD}.containers[0].command")


# ============================================================================= the trial: container and pod
def test_container_fields() -> None:
    exp = with_container(
        command=["python3", "train.py"],
        resources={"requests": {"cpu": 2, "memory": "4Gi"}, "limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}},
        env=[
            {"name": "MODE", "value": "fast"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
        ],
        envFrom=[{"configMapRef": {"name": "common"}}],
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
        workingDir="/app",
        imagePullPolicy="Always",
        ports=[{"containerPort": 8000}],
        livenessProbe={"httpGet": {"port": 8000, "path": "/"}},
    )
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["volumes"] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}
    ]
    c = convert(exp)
    assert c.complete, c.unmapped
    trial = c.job["spec"]["trial"]
    assert trial["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"nvidia.com/gpu": "1", "memory": "8Gi"},
    }
    assert trial["env"] == [{"name": "MODE", "value": "fast"}]
    assert trial["podTemplate"]["spec"]["containers"] == [
        {
            "name": "worker",
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}],
            "envFrom": [{"configMapRef": {"name": "common"}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "workingDir": "/app",
            "imagePullPolicy": "Always",
        }
    ]
    assert c.job["spec"]["trial"]["podTemplate"]["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}
    ]
    assert any("container ports dropped" in n for n in c.notes)
    assert any("livenessProbe dropped" in n for n in c.notes)
    valid(c.job)


def test_no_resources_note() -> None:
    c = convert(experiment())
    assert "resources" not in c.job["spec"]["trial"]
    assert any("BestEffort" in n for n in c.notes)


def test_reserved_env_and_placeholders_in_env() -> None:
    c = convert(
        with_container(
            command=["python3", "t.py"],
            env=[{"name": "HOROVOD_RANK", "value": "0"}, {"name": "LR", "value": "${trialParameters.learningRate}"}],
        )
    )
    assert paths(c) == {f"{JOB_POD}.containers[0].env[0].name", f"{JOB_POD}.containers[0].env[1].value"}


def test_pod_fields_pass_through() -> None:
    pod = {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {}},
        "serviceAccountName": "trainer",
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "batch",
        "runtimeClassName": "nvidia",
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}],
        "initContainers": [{"name": "fetch", "image": "busybox", "command": ["true"]}],
        "activeDeadlineSeconds": 3600,
    }
    exp = with_pod(**pod)
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["metadata"] = {"labels": {"team": "ml"}}
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"].append(
        {"name": "logger", "image": "fluent-bit", "securityContext": {"runAsUser": 1000}}
    )
    c = convert(exp)
    assert c.complete, c.unmapped
    trial = c.job["spec"]["trial"]
    assert trial["timeoutSeconds"] == 3600
    overlay = trial["podTemplate"]
    assert overlay["metadata"] == {"labels": {"team": "ml"}}
    expected = {k: v for k, v in pod.items() if k != "activeDeadlineSeconds"}
    assert {k: v for k, v in overlay["spec"].items() if k != "containers"} == expected
    assert overlay["spec"]["containers"] == [
        {"name": "logger", "image": "fluent-bit", "securityContext": {"runAsUser": 1000}}
    ]  # a sidecar
    valid(c.job)


@pytest.mark.parametrize(
    "pod, path",
    [
        # restartPolicy OnFailure maps to trial.retries since issue 22 (test_katib_kinds.py)
        ({"restartPolicy": "Sometimes"}, f"{JOB_POD}.restartPolicy"),
        ({"hostNetwork": True}, f"{JOB_POD}.hostNetwork"),
        ({"hostPID": True}, f"{JOB_POD}.hostPID"),
        ({"volumes": [{"name": "h", "hostPath": {"path": "/var"}}]}, f"{JOB_POD}.volumes[0].hostPath"),
        ({"securityContext": {"runAsUser": 0}}, f"{JOB_POD}.securityContext.runAsUser"),
        ({"dnsPolicy": "None"}, f"{JOB_POD}.dnsPolicy"),
    ],
)
def test_forbidden_pod_fields(pod: dict[str, Any], path: str) -> None:
    assert path in paths(convert(with_pod(**pod)))


@pytest.mark.parametrize(
    "security, path",
    [
        ({"privileged": True}, "privileged"),
        ({"allowPrivilegeEscalation": True}, "allowPrivilegeEscalation"),
        ({"capabilities": {"add": ["NET_ADMIN"]}}, "capabilities.add[0]"),
        ({"runAsNonRoot": False}, "runAsNonRoot"),
    ],
)
def test_container_escalations_are_unmapped(security: dict[str, Any], path: str) -> None:
    c = convert(with_container(command=["python3", "t.py"], securityContext=security))
    assert paths(c) == {f"{JOB_POD}.containers[0].securityContext.{path}"}


def test_restricted_security_context_passes_through() -> None:
    security = {"runAsUser": 1000, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    c = convert(with_container(command=["python3", "t.py"], securityContext=security))
    assert c.complete, c.unmapped
    assert c.job["spec"]["trial"]["podTemplate"]["spec"]["containers"] == [
        {"name": "worker", "securityContext": security}
    ]
    valid(c.job)


def test_lossy_overlay_drops_what_the_operator_refuses() -> None:
    exp = with_pod(
        hostNetwork=True, volumes=[{"name": "h", "hostPath": {"path": "/var"}}, {"name": "tmp", "emptyDir": {}}]
    )
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"].append(
        {"name": "proxy", "image": "envoy", "securityContext": {"privileged": True, "runAsUser": 1000}}
    )
    c = convert(exp)
    assert paths(c) == {
        f"{JOB_POD}.hostNetwork",
        f"{JOB_POD}.volumes[0].hostPath",
        f"{JOB_POD}.containers[1].securityContext.privileged",
    }
    assert c.job["spec"]["trial"]["podTemplate"]["spec"] == {  # what --lossy writes
        "containers": [{"name": "proxy", "image": "envoy", "securityContext": {"runAsUser": 1000}}],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    valid(c.job)


def test_pod_restart_policy_never_is_the_operators() -> None:
    assert convert(with_pod()).complete  # restartPolicy: Never


def test_job_fields() -> None:
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"].update(
        {"backoffLimit": 0, "activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 60}
    )
    c = convert(exp)
    assert c.complete and c.job["spec"]["trial"]["timeoutSeconds"] == 600
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"].update({"backoffLimit": 4, "completions": 3})
    # backoffLimit 4 maps to trial.retries since issue 22 (test_katib_kinds.py)
    assert paths(convert(exp)) == {f"{TRIAL_SPEC}.spec.completions"}


def test_trial_template_fields() -> None:
    exp = experiment()
    exp["spec"]["trialTemplate"].update(
        {
            "retain": True,
            "successCondition": "status.x",
            "failureCondition": "status.y",
            "primaryPodLabels": {"role": "master"},
        }
    )
    c = convert(exp)
    assert c.complete
    assert any("retain dropped" in n for n in c.notes)
    assert any("successCondition dropped" in n for n in c.notes)
    assert any("primaryPodLabels dropped" in n for n in c.notes)


def test_config_map_template_is_unmapped() -> None:
    exp = experiment()
    del exp["spec"]["trialTemplate"]["trialSpec"]
    exp["spec"]["trialTemplate"]["configMap"] = {
        "configMapName": "t",
        "configMapNamespace": "k",
        "templatePath": "a.yaml",
    }
    c = convert(exp)
    assert paths(c) == {"spec.trialTemplate.configMap"}


def test_primary_container_must_exist() -> None:
    exp = experiment()
    exp["spec"]["trialTemplate"]["primaryContainerName"] = "main"
    assert paths(convert(exp)) == {f"{JOB_POD}.containers"}


def test_a_user_image_comes_with_what_to_build() -> None:
    """Issue 22: the converted job kept Katib's training image, which lacks the trial runtime, and
    nothing said so. The note names the base image trial_image/Dockerfile builds."""
    trial_image = re.search(r"-t (\S+) \.", (REPO / "trial_image" / "Dockerfile").read_text())
    assert trial_image
    c = convert(load("hp-tuning/random.yaml"))
    image = "ghcr.io/kubeflow/katib/pytorch-mnist-cpu:latest"
    (note,) = [n for n in c.notes if f"FROM {trial_image.group(1)}" in n]
    assert f"trial.image {image!r}" in note and "trial runtime" in note
    assert f"COPY --from={image} /opt/pytorch-mnist /opt/pytorch-mnist" in note
    c = convert(with_container(command=["python3", "t.py"]))  # image train:1, no path to copy
    (note,) = [n for n in c.notes if f"FROM {trial_image.group(1)}" in n]
    assert "'train:1'" in note and "COPY" not in note
    c = convert(with_container(command=["python3", "t.py"], image=trial_image.group(1)))
    assert not [n for n in c.notes if "FROM" in n]


def test_a_string_command_is_refused() -> None:
    """Issue 22: `command: "python3 x.py"` was split into characters and passed validate; Kubernetes
    refuses a string command, and so does the converter, naming the field."""
    for field in ("command", "args"):
        exp = with_container(command=["python3"])
        exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0][field] = "python3 x.py"
        with pytest.raises(NotAnExperiment) as refused:
            convert(exp)
        assert f"{JOB_POD}.containers[0].{field}: must be a list" in str(refused.value)
