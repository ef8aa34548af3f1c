"""The real operator (kopf + kubernetes client, in its own process) against the emulated
API server, with trial pods run as real processes by the harness's kubelet."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml

from openautoglm.engine.storage import open_storage

ROOT = Path(__file__).resolve().parents[2]
TOY = str(ROOT / "tests" / "engine" / "toy_trial.py")
NS = "default"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Operator:
    """`openautoglm operator` as a separate process that a test can kill and start again."""

    def __init__(self, cluster, workdir: Path, args: tuple[str, ...] = ()):
        self.cluster = cluster
        self.args = args  # after `openautoglm operator`, e.g. ("--namespace", "team-a")
        self.study_dir = workdir / "studies"
        self.log = workdir / "operator.log"
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        #: More OPENAUTOGLM_* settings of this operator (a test's allow-lists, say).
        self.env: dict[str, str] = {}

    def start(self):
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "OPENAUTOGLM_STUDY_DIR": str(self.study_dir),
            "OPENAUTOGLM_OPERATOR_HEALTH_PORT": str(self.health_port),
            "OPENAUTOGLM_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "OPENAUTOGLM_LOG_LEVEL": "INFO",
            # The suite's PostgreSQL (tests/conftest.py) is the one database jobs may name.
            "OPENAUTOGLM_ALLOWED_POSTGRES_HOSTS": "127.0.0.1",
            **self.env,
        }
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "openautoglm.cli", "operator", *self.args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.starts += 1

    def kill(self):
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def wait_up(self, timeout: float = 60) -> None:
        """Until the operator serves its /metrics (imports done, kopf started)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.scrape()
                return
            except OSError:
                if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                    raise
                time.sleep(0.05)

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()


@pytest.fixture
def operator(cluster, tmp_path):
    op = Operator(cluster, tmp_path)
    op.start()
    yield op
    op.stop()


def digits_job(name="digits-e2e", max_trials=6):
    doc = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    spec["budget"] = {"maxTrials": max_trials, "parallelism": 2, "maxFailedTrials": 1}
    spec["earlyStopping"] = {"pruner": "median", "settings": {"n_startup_trials": 1, "n_warmup_steps": 1}}
    spec["trial"]["epochs"] = 8
    spec["trial"]["resources"] = {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    spec["metrics"]["intervalSeconds"] = 0.5
    spec["warmStart"] = [
        {
            "params": {
                "lr": 0.01,
                "batch_size": 64,
                "dropout": 0.1,
                "hidden": 128,
                "optimizer": "adam",
                "beta1": 0.9,
                "beta2": 0.999,
            }
        },
        # hardly learns, in small batches so each epoch is seen: pruned by its curve
        {"params": {"lr": 0.0001, "batch_size": 32, "dropout": 0.0, "hidden": 32, "optimizer": "sgd", "momentum": 0.0}},
    ]
    return doc


def apply(cluster, doc, tmp_path):
    path = tmp_path / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return cluster.kubectl("apply", "-f", str(path))


def job_status(cluster, name):
    obj = cluster.get("openautoglm.io/v1alpha1/tuningjobs", NS, name) or {}
    return obj.get("status") or {}


def study_trials(op: Operator, name: str):
    files = glob.glob(str(op.study_dir / NS / f"{name}-*.journal"))
    if not files:
        return []
    try:
        study = optuna.load_study(study_name=f"{NS}/{name}", storage=open_storage(files[0]))
    except KeyError:
        return []
    return study.get_trials(deepcopy=False)


def finished(op, name):
    return [t for t in study_trials(op, name) if t.state.is_finished()]


def trial_pods(cluster, name):
    return [p for p in cluster.pods(NS) if (p["metadata"].get("labels") or {}).get("openautoglm.io/job") == name]


def test_digits_job_runs_to_success_with_pruning_and_leaves_nothing(cluster, operator, tmp_path):
    run_digits_job(cluster, operator, tmp_path)


def run_digits_job(cluster, operator, tmp_path, *, max_trials=6, pruning=True, name="digits-e2e"):
    """The digits job from `kubectl apply` to Succeeded, and nothing left behind; returns its status.
    Also run with every trial pod in the built trial image (tests/images/test_cluster_in_images.py)."""
    t0 = time.monotonic()
    apply(cluster, digits_job(name, max_trials), tmp_path)
    cluster.wait_for(
        lambda: job_status(cluster, name).get("phase") in ("Succeeded", "Failed"), 600, "the job to finish"
    )
    wall = time.monotonic() - t0
    status = job_status(cluster, name)
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["finished"] == max_trials and status["progress"] == f"{max_trials}/{max_trials}"
    if pruning:
        assert status["trials"]["pruned"] >= 1, status["recentTrials"]
        assert any("pruned by median" in (t.get("reason") or "") for t in status["recentTrials"])
    best = status["bestTrial"]
    assert best["value"] > 0.9 and set(best["params"]) >= {"lr", "batch_size", "hidden", "optimizer"}
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["status"] == "True" and conditions["Running"]["status"] == "False"
    # every trial pod ran as a real process, each pod exactly once
    started = [p["pod"] for p in cluster.process_log if p["pod"].startswith(f"{name}-t")]
    assert len(started) == len(set(started)) >= 2 * max_trials - 2  # a pruned trial's rank may never start
    assert all(p["pid"] > 0 for p in cluster.process_log)
    # nothing left behind: no pods, no services, no processes
    cluster.wait_for(lambda: not trial_pods(cluster, name), 60, "trial pods to be deleted")
    assert not [s for s in cluster.services(NS) if s["metadata"]["name"].startswith(f"{name}-t")]
    cluster.wait_for(
        lambda: all(p.get("exit_code") is not None for p in cluster.process_log),
        30,
        "every worker process to have ended",
    )
    # as a cluster user sees it
    table = cluster.kubectl("get", "tj", "-n", NS).stdout
    assert name in table and "Succeeded" in table and f"{max_trials}/{max_trials}" in table
    events = cluster.kubectl("get", "events", "-n", NS, "-o", "json").stdout
    reasons = {e.get("reason") for e in json.loads(events)["items"]}
    assert {"TrialStarted", "NewBest", "JobSucceeded", *(["TrialPruned"] if pruning else [])} <= reasons, reasons
    # what the closing note reports
    metrics = operator.scrape()
    size = len(json.dumps(status))
    print(f"\nE2E digits job: {wall:.1f} s wall, status {size} bytes")
    for line in metrics.splitlines():
        if line.startswith(("openautoglm_reconcile_seconds_sum", "openautoglm_reconcile_seconds_count")):
            print(line)
    return status


@pytest.mark.parametrize("moments", [(("pods", 1), ("finished", 2), ("finished", 4))])
def test_operator_killed_three_times_loses_and_duplicates_nothing(cluster, operator, tmp_path, moments):
    apply(cluster, digits_job("digits-restart"), tmp_path)
    for kind, n in moments:
        if kind == "pods":
            cluster.wait_for(lambda n=n: len(trial_pods(cluster, "digits-restart")) >= n, 120, "trial pods")
        else:
            cluster.wait_for(lambda n=n: len(finished(operator, "digits-restart")) >= n, 300, f"{n} finished trials")
        operator.kill()
        time.sleep(1.0)
        operator.start()
    cluster.wait_for(
        lambda: job_status(cluster, "digits-restart").get("phase") in ("Succeeded", "Failed"), 600, "the job to finish"
    )
    status = job_status(cluster, "digits-restart")
    assert status["phase"] == "Succeeded", status
    trials = study_trials(operator, "digits-restart")
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(6)), numbers
    assert all(t.state.is_finished() for t in trials)
    started = [p["pod"] for p in cluster.process_log if p["pod"].startswith("digits-restart-t")]
    assert len(started) == len(set(started)), "a pod was started twice"
    assert {int(p.split("-t")[1].split("-")[0]) for p in started} == set(range(6))
    cluster.wait_for(lambda: not trial_pods(cluster, "digits-restart"), 60, "no orphaned pods")
    assert operator.starts == 4


def test_failing_trials_fail_the_job_after_max_failed(cluster, operator, tmp_path):
    doc = digits_job("always-fails", max_trials=6)
    doc["spec"]["budget"] = {"maxTrials": 6, "parallelism": 1, "maxFailedTrials": 2}
    doc["spec"]["trial"] = {"command": [sys.executable, TOY], "epochs": 2, "workers": 1}
    doc["spec"].setdefault("metrics", {})["collector"] = {"kind": "native"}
    doc["spec"]["parameters"] = [{"name": "mode", "type": "categorical", "choices": ["fail"]}]
    doc["spec"]["objective"] = {"metric": "score", "direction": "maximize"}
    doc["spec"].pop("warmStart")
    apply(cluster, doc, tmp_path)
    cluster.wait_for(
        lambda: job_status(cluster, "always-fails").get("phase") in ("Succeeded", "Failed"), 180, "the job to fail"
    )
    status = job_status(cluster, "always-fails")
    assert status["phase"] == "Failed" and status["reason"] == "MaxFailedTrialsReached"
    assert status["trials"]["failed"] == 3
    assert "toy failure on purpose" in status["recentTrials"][0]["reason"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Failed"]["status"] == "True" and conditions["Failed"]["reason"] == "MaxFailedTrialsReached"


def test_deleting_the_job_stops_and_removes_its_trials(cluster, operator, tmp_path):
    doc = digits_job("to-delete")
    doc["spec"]["trial"]["epochs"] = 200
    apply(cluster, doc, tmp_path)
    cluster.wait_for(lambda: len(trial_pods(cluster, "to-delete")) >= 4, 120, "running trial pods")
    cluster.kubectl("delete", "tj", "to-delete", "-n", NS, "--wait=false")
    cluster.wait_for(lambda: not trial_pods(cluster, "to-delete"), 60, "trial pods to go")
    cluster.wait_for(
        lambda: cluster.get("openautoglm.io/v1alpha1/tuningjobs", NS, "to-delete") is None, 60, "the job to go"
    )
    procs = [p for p in cluster.process_log if p["pod"].startswith("to-delete-t")]
    cluster.wait_for(lambda: all(p.get("exit_code") is not None for p in procs), 30, "worker processes to end")


def test_invalid_job_is_rejected_with_the_field_named(cluster, tmp_path):
    doc = digits_job("bad-job")
    doc["spec"]["budget"]["parallelism"] = 50
    result = apply_unchecked(cluster, doc, tmp_path)
    assert result.returncode != 0
    assert "spec.budget" in result.stderr and "parallelism" in result.stderr


def apply_unchecked(cluster, doc, tmp_path):
    path = tmp_path / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return cluster.kubectl("apply", "-f", str(path), check=False)


def test_sdk_kubernetes_backend_submits_and_follows_the_job(cluster, operator, monkeypatch):
    from openautoglm import AutoTrainer

    trainer = AutoTrainer(
        model_name="mlp",
        dataset="digits",
        max_trials=2,
        epochs=3,
        workers=2,
        parallelism=2,
        backend="kubernetes",
        kubeconfig=str(cluster.kubeconfig),
        poll_seconds=0.5,
        seed=3,
        name="sdk-job",
        search_space=[{"name": "lr", "type": "float", "low": 1e-3, "high": 0.05, "log": True}],
    )
    result = trainer.hyperopt(objective="accuracy", direction="maximize", timeout=600, progress=False)
    assert result.status["phase"] == "Succeeded" and result.status["progress"] == "2/2"
    assert result.best_value > 0.5 and set(result.best_params) == {"lr"}
    assert cluster.get("openautoglm.io/v1alpha1/tuningjobs", NS, "sdk-job")["spec"]["trial"]["workers"] == 2


def test_more_jobs_than_study_threads_all_run_at_once(cluster, tmp_path, monkeypatch):
    """Jobs wait on the operator's event loop, not in a thread each: with a single thread for
    study work, four jobs applied together all have their first trial running before any of
    those trials ends (a thread-per-job operator ran jobs in turn once its threads ran out)."""
    monkeypatch.setenv("OPENAUTOGLM_OPERATOR_WORKERS", "1")
    op = Operator(cluster, tmp_path)
    op.start()
    names = [f"many-{i}" for i in range(4)]
    try:
        for name in names:
            doc = digits_job(name, max_trials=2)
            doc["spec"]["budget"] = {"maxTrials": 2, "parallelism": 1, "maxFailedTrials": 0}
            doc["spec"]["trial"] = {"command": [sys.executable, TOY], "epochs": 2, "workers": 1}
            doc["spec"]["metrics"]["collector"] = {"kind": "native"}
            doc["spec"]["parameters"] = [{"name": "epoch_seconds", "type": "categorical", "choices": [2.0]}]
            doc["spec"]["objective"] = {"metric": "score", "direction": "maximize"}
            doc["spec"].pop("warmStart")
            apply(cluster, doc, tmp_path)
        cluster.wait_for(
            lambda: all(job_status(cluster, n).get("phase") == "Succeeded" for n in names), 180, "every job to succeed"
        )
    finally:
        op.stop()
    assert all(job_status(cluster, n)["trials"]["completed"] == 2 for n in names)
    first = {
        n: min((r for r in cluster.process_log if r["pod"].startswith(f"{n}-t")), key=lambda r: r["started"])
        for n in names
    }
    assert max(r["started"] for r in first.values()) < min(r["finished"] for r in first.values()), first
