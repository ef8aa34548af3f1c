"""Katib Experiments for the import-katib tests: a minimal valid one and its variations.

``experiment()`` is like hp-tuning/random.yaml; the ``with_*`` builders replace one part of it;
``pytorch_job`` / ``mpi_job`` give it a training-operator trial. The vendored examples are read
from tests/data/katib (Katib commit 33c8ff4).
"""

from __future__ import annotations

import copy
import importlib.util
import warnings
from pathlib import Path
from typing import Any

import yaml

from openautoglm.validation import validate_document

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "katib"

TRIAL_SPEC = "spec.trialTemplate.trialSpec"
JOB_POD = f"{TRIAL_SPEC}.spec.template.spec"
META_REFS = ["Name", "Namespace", "Kind", "APIVersion", "Labels[custom-key]", "Annotations[custom-key]"]


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((DATA / name).read_text())


def valid(job: dict[str, Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Optuna's CmaEsSampler(sigma0=...) notice
        return validate_document(copy.deepcopy(job))


def admission() -> Any:
    """tests/k8s/harness/admission.py: kubectl apply's admission of a TuningJob by the committed CRD file."""
    import pytest

    pytest.importorskip("celpy")
    spec = importlib.util.spec_from_file_location(
        "katib_test_admission", REPO / "tests" / "k8s" / "harness" / "admission.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paths(conversion: Any) -> set[str]:
    return {p for p, _ in conversion.unmapped}


def reason(conversion: Any, path: str) -> str:
    found = [r for p, r in conversion.unmapped if p == path]
    assert found, f"{path} not unmapped; unmapped: {conversion.unmapped}"
    return found[0]


def experiment(**spec: Any) -> dict[str, Any]:
    """A minimal valid Katib Experiment (like hp-tuning/random.yaml); keyword arguments replace spec fields."""
    base: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "exp", "namespace": "team"},
        "spec": {
            "objective": {"type": "minimize", "goal": 0.001, "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": 2,
            "maxTrialCount": 8,
            "maxFailedTrialCount": 3,
            "parameters": [
                {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.05"}},
                {"name": "momentum", "parameterType": "double", "feasibleSpace": {"min": "0.5", "max": "0.9"}},
            ],
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": [
                    {"name": "learningRate", "reference": "lr"},
                    {"name": "momentum", "reference": "momentum"},
                ],
                "trialSpec": job_spec(),
            },
        },
    }
    base["spec"].update(spec)
    return base


def job_spec(container: dict[str, Any] | None = None, **pod: Any) -> dict[str, Any]:
    c = (
        container
        if container is not None
        else {
            "name": "training-container",
            "image": "train:1",
            "command": [
                "python3",
                "train.py",
                "--lr=${trialParameters.learningRate}",
                "--momentum=${trialParameters.momentum}",
            ],
        }
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"spec": {"containers": [c], "restartPolicy": "Never", **pod}}},
    }


def with_container(**fields: Any) -> dict[str, Any]:
    c = {"name": "training-container", "image": "train:1", **fields}
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialSpec"] = job_spec(c)
    return exp


def with_pod(**pod: Any) -> dict[str, Any]:
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialSpec"] = job_spec(None, **pod)
    return exp


def with_algorithm(name: str, **settings: Any) -> dict[str, Any]:
    return experiment(
        algorithm={
            "algorithmName": name,
            "algorithmSettings": [{"name": k, "value": str(v)} for k, v in settings.items()],
        }
    )


def with_parameter(**p: Any) -> dict[str, Any]:
    exp = experiment()
    exp["spec"]["parameters"][0] = {"name": "lr", **p}
    return exp


def mc(collector: dict[str, Any] | None = None, **source: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if collector is not None:
        spec["collector"] = collector
    if source:
        spec["source"] = source
    return experiment(metricsCollectorSpec=spec)


def pytorch_job(workers: int, worker_command: list[str] | None = None, policy: str = "Never") -> dict[str, Any]:
    def replica(n: int, command: list[str]) -> dict[str, Any]:
        return {
            "replicas": n,
            "restartPolicy": policy,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "pytorch",
                            "image": "mnist:1",
                            "command": command,
                            "resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
                        }
                    ]
                }
            },
        }

    command = ["python3", "mnist.py", "--lr=${trialParameters.learningRate}", "--momentum=${trialParameters.momentum}"]
    exp = experiment()
    exp["spec"]["trialTemplate"]["primaryContainerName"] = "pytorch"
    exp["spec"]["trialTemplate"]["trialSpec"] = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": replica(1, command),
                "Worker": replica(workers, worker_command or command),
            }
        },
    }
    return exp


def mpi_job(launcher_command: list[str], launcher_args: list[str], workers: int = 2, **spec: Any) -> dict[str, Any]:
    exp = experiment()
    exp["spec"]["trialTemplate"]["primaryContainerName"] = "mpi-launcher"
    exp["spec"]["trialTemplate"]["trialSpec"] = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "MPIJob",
        "spec": {
            "slotsPerWorker": 1,
            "cleanPodPolicy": "Running",
            **spec,
            "mpiReplicaSpecs": {
                "Launcher": {
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "mpi-launcher",
                                    "image": "hvd:1",
                                    "command": launcher_command,
                                    "args": launcher_args,
                                    "env": [{"name": "NCCL_DEBUG", "value": "INFO"}],
                                    "resources": {"limits": {"cpu": "500m"}},
                                }
                            ]
                        }
                    },
                },
                "Worker": {
                    "replicas": workers,
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "mpi-worker",
                                    "image": "hvd:1",
                                    "resources": {"limits": {"cpu": "4", "memory": "8Gi"}},
                                }
                            ]
                        }
                    },
                },
            },
        },
    }
    return exp
