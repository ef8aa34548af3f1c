"""import-katib: the trial kinds (batch/v1 Job, PyTorchJob, MPIJob; the others are refused)."""

from __future__ import annotations

import pytest
from katib_experiments import TRIAL_SPEC, experiment, mpi_job, paths, pytorch_job, reason, valid, with_pod

from openautoglm.katib import convert


# ============================================================================= PyTorchJob, MPIJob, others
def test_pytorchjob_workers_count() -> None:
    c = convert(pytorch_job(3))
    assert c.complete, c.unmapped
    trial = c.job["spec"]["trial"]
    assert trial["workers"] == 4  # Master + 3 Workers
    assert trial["image"] == "mnist:1"
    assert trial["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"}}
    assert trial["command"] == [
        "python3",
        "mnist.py",
        "--lr=${trialParameters.lr}",
        "--momentum=${trialParameters.momentum}",
    ]
    # issue 25: the ranks get torchrun's environment, as the training operator gives them (was Horovod's)
    assert trial["launcher"] == "torchrun"
    assert any("trial.launcher: torchrun" in n and "init_process_group() runs unchanged" in n for n in c.notes)
    assert valid(c.job).spec.trial.launcher == "torchrun"


def test_pytorchjob_of_a_master_alone_is_one_torchrun_rank() -> None:
    """The training operator gives a lone Master WORLD_SIZE=1 and RANK=0 too: one torchrun rank."""
    exp = pytorch_job(1)
    del exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["pytorchReplicaSpecs"]["Worker"]
    c = convert(exp)
    assert c.complete, c.unmapped
    assert (c.job["spec"]["trial"]["workers"], c.job["spec"]["trial"]["launcher"]) == (1, "torchrun")
    valid(c.job)


def test_pytorchjob_env_the_launcher_sets_is_dropped_with_a_note() -> None:
    """A template's own WORLD_SIZE or MASTER_PORT: the training operator overrides it, and a torchrun
    TuningJob may not set it (validation refuses it): dropped, the rest of the env kept."""
    exp = pytorch_job(1)
    env = [
        {"name": "WORLD_SIZE", "value": "2"},
        {"name": "MASTER_PORT", "value": "23456"},
        {"name": "MODE", "value": "x"},
    ]
    for replica in exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["pytorchReplicaSpecs"].values():
        replica["template"]["spec"]["containers"][0]["env"] = env
    c = convert(exp)
    assert c.complete, c.unmapped
    assert c.job["spec"]["trial"]["env"] == [{"name": "MODE", "value": "x"}]
    assert any("WORLD_SIZE, MASTER_PORT dropped" in n for n in c.notes), c.notes
    valid(c.job)


@pytest.mark.parametrize(("nproc", "maps"), [(1, True), ("1", True), (2, False), ("auto", False)])
def test_pytorchjob_nproc_per_node_must_be_one_process(nproc: object, maps: bool) -> None:
    exp = pytorch_job(1)
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["nprocPerNode"] = nproc
    c = convert(exp)
    assert paths(c) == (set() if maps else {f"{TRIAL_SPEC}.spec.nprocPerNode"})


def test_pytorchjob_replicas_must_match_and_not_restart() -> None:
    c = convert(pytorch_job(1, worker_command=["python3", "other.py"]))
    assert paths(c) == {f"{TRIAL_SPEC}.spec.pytorchReplicaSpecs.Worker.template"}
    # restartPolicy OnFailure maps to trial.retries since issue 22: test_restart_policies_become_retries
    c = convert(pytorch_job(1, policy="Sometimes"))
    assert paths(c) == {
        f"{TRIAL_SPEC}.spec.pytorchReplicaSpecs.Master.restartPolicy",
        f"{TRIAL_SPEC}.spec.pytorchReplicaSpecs.Worker.restartPolicy",
    }


def test_mpijob_launcher_is_stripped() -> None:
    exp = mpi_job(
        ["mpirun"],
        [
            "-np",
            "3",
            "--allow-run-as-root",
            "-bind-to",
            "none",
            "-map-by",
            "slot",
            "-x",
            "NCCL_DEBUG",
            "-x",
            "MODE=fast",
            "-mca",
            "pml",
            "ob1",
            "--mca",
            "btl",
            "^openib",
            "python",
            "/examples/train.py",
            "--lr",
            "${trialParameters.learningRate}",
            "--momentum=${trialParameters.momentum}",
        ],
        workers=3,
    )
    c = convert(exp)
    assert c.complete, c.unmapped
    trial = c.job["spec"]["trial"]
    assert trial["command"] == [
        "python",
        "/examples/train.py",
        "--lr",
        "${trialParameters.lr}",
        "--momentum=${trialParameters.momentum}",
    ]
    assert trial["workers"] == 3
    assert trial["image"] == "hvd:1"
    assert trial["resources"] == {"limits": {"cpu": "4", "memory": "8Gi"}}  # the Worker's, where the program runs
    # -x NAME=VALUE sets it; -x NAME forwards the launcher's value.
    assert trial["env"] == [{"name": "MODE", "value": "fast"}, {"name": "NCCL_DEBUG", "value": "INFO"}]
    assert any("removed; the operator starts the 3 ranks itself" in n for n in c.notes)
    valid(c.job)


def test_mpijob_horovodrun_and_shell_form() -> None:
    c = convert(mpi_job(["horovodrun"], ["-np", "2", "-H", "localhost:2", "--gloo", "python", "train.py"]))
    assert c.job["spec"]["trial"]["command"] == ["python", "train.py"]
    c = convert(
        mpi_job(["sh", "-c"], ["mpirun -np 2 --allow-run-as-root python train.py --lr=${trialParameters.learningRate}"])
    )
    assert c.complete, c.unmapped
    assert c.job["spec"]["trial"]["command"] == ["python", "train.py", "--lr=${trialParameters.lr}"]


def test_mpijob_refusals() -> None:
    launcher = f"{TRIAL_SPEC}.spec.mpiReplicaSpecs.Launcher.template.spec.containers[0]"
    c = convert(mpi_job(["mpirun"], ["--weird-option", "python", "train.py"]))
    assert paths(c) == {f"{launcher}.args"}
    assert "--weird-option" in reason(c, f"{launcher}.args")
    c = convert(mpi_job(["python"], ["launch.py"]))
    assert paths(c) == {f"{launcher}.command"}
    c = convert(mpi_job(["mpirun"], ["python", "train.py"], slotsPerWorker=4))
    assert paths(c) == {f"{TRIAL_SPEC}.spec.slotsPerWorker"}


@pytest.mark.parametrize(
    "api, kind",
    [
        ("kubeflow.org/v1", "TFJob"),
        ("kubeflow.org/v1", "XGBoostJob"),
        ("trainer.kubeflow.org/v1alpha1", "TrainJob"),
        ("argoproj.io/v1alpha1", "Workflow"),
    ],
)
def test_other_trial_kinds_are_unmapped(api: str, kind: str) -> None:
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialSpec"] = {"apiVersion": api, "kind": kind, "spec": {}}
    assert paths(convert(exp)) == {f"{TRIAL_SPEC}.kind"}


def test_job_backoff_limit_becomes_retries() -> None:
    """Issue 22: backoffLimit was refused as "a failed trial is not retried" although trial.retries exists."""
    exp = experiment()
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["backoffLimit"] = 3
    c = convert(exp)
    assert c.complete, c.unmapped
    assert c.job["spec"]["trial"]["retries"] == 3
    assert any(n.startswith("trialSpec.spec.backoffLimit 3") and "trial.retries 3" in n for n in c.notes)
    assert valid(c.job).spec.trial.retries == 3
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["backoffLimit"] = 25
    c = convert(exp)
    assert c.job["spec"]["trial"]["retries"] == 10 and any("at most 10" in n for n in c.notes)
    valid(c.job)
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["backoffLimit"] = "x"
    assert paths(convert(exp)) == {f"{TRIAL_SPEC}.spec.backoffLimit"}
    # Unset: Kubernetes' default of 6 retries becomes the TuningJob's 0, said in a note.
    c = convert(experiment())
    assert "retries" not in c.job["spec"]["trial"]
    (note,) = [n for n in c.notes if n.startswith("trialSpec.spec.backoffLimit unset")]
    assert "6" in note and "trial.retries" in note


def test_restart_policies_become_retries() -> None:
    """Issue 22: restartPolicy OnFailure was refused as "trial pods are never restarted", ignoring
    that a failed trial runs again up to trial.retries times."""
    c = convert(pytorch_job(1, policy="OnFailure"))
    assert c.complete, c.unmapped
    assert "retries" not in c.job["spec"]["trial"]  # no runPolicy.backoffLimit: the TuningJob default
    (note,) = [n for n in c.notes if "restartPolicy OnFailure" in n]
    assert "the Master and Worker replicas" in note and "trial.retries" in note
    valid(c.job)
    exp = pytorch_job(1, policy="OnFailure")
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["runPolicy"] = {"backoffLimit": 4}
    c = convert(exp)
    assert c.complete, c.unmapped
    assert c.job["spec"]["trial"]["retries"] == 4
    assert any("runPolicy.backoffLimit 4" in n and "trial.retries 4" in n for n in c.notes)
    valid(c.job)
    c = convert(with_pod(restartPolicy="OnFailure"))  # a Job's pod: the Job's backoffLimit counts
    assert c.complete, c.unmapped
    assert any("restartPolicy OnFailure" in n and "trial.retries" in n for n in c.notes)
