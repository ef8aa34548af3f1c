"""The operator's cases of bench/operator_scale.py, in the emulated cluster of tests/k8s/harness.

* ``one_job``: one TuningJob of zero-work trials under ``openautoglm operator`` (kopf, its own
  process), against a bare driver: the engine's Driver with the same KubernetesBackend, in this
  process, making the same Optuna calls and creating the same pods and Services through the same
  API, woken by a pod watch as the operator is. Both see the same kubelet (which notices an
  exited process within its 0.2 s sync period) and the same API server.
* ``many_jobs``: N TuningJobs applied at once, each parallelism P of one-second trials, on one
  operator. Per job: the longest wait from a free slot (a trial's process exited, or the job
  applied) to the next trial's process starting; the operator's CPU per trial against the
  one-job figure; each job's status size; the operator's memory.
* ``large_study``: a job whose journal already holds 10,000 finished trials runs a few more
  under the operator: its idle pass and the operator's memory after 10,000 trials.

The operator's CPU and memory come from /proc/<pid> (utime + stime; VmHWM and VmRSS).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import kubernetes
import optuna
from optuna.distributions import FloatDistribution

from openautoglm.engine import attrs
from openautoglm.engine.driver import Driver
from openautoglm.k8s.api import Api
from openautoglm.k8s.backend import KubernetesBackend
from openautoglm.k8s.builders import LABEL_JOB
from openautoglm.validation import validate_document

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
HARNESS: Final = ROOT / "tests" / "k8s" / "harness"
ZERO_TRIAL: Final = HERE / "zero_trial.py"
NS: Final = "default"
TJ: Final = "openautoglm.io/v1alpha1/tuningjobs"
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


def _harness() -> Any:
    if str(HARNESS) not in sys.path:
        sys.path.insert(0, str(HARNESS))
    import admission
    import cluster

    return cluster.Cluster, admission.review, admission.apply_defaults


@contextmanager
def emulated_cluster(workdir: Path) -> Iterator[Any]:
    cluster_cls, review, defaults = _harness()
    crds = sorted((ROOT / "crds").glob("*.yaml"))
    with cluster_cls(crd_paths=crds, admission=review, defaulter=defaults, workdir=workdir, dns=False) as c:
        yield c


def job_document(name: str, trials: int, parallelism: int, sleep: float = 0.0, journal: str | None = None) -> dict:
    command = [sys.executable, str(ZERO_TRIAL)] + ([f"--sleep={sleep}"] if sleep else [])
    spec: dict[str, Any] = {
        "objective": {"metric": "score", "direction": "maximize"},
        "budget": {"maxTrials": trials, "parallelism": parallelism, "maxFailedTrials": 0},
        "algorithm": {"sampler": "random", "seed": 1},
        "earlyStopping": {"pruner": "none"},
        "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}],
        "trial": {"command": command, "epochs": 1, "workers": 1},
        "metrics": {"intervalSeconds": 2, "collector": {"kind": "native"}},
    }
    if journal:
        spec["storage"] = {"journal": {"path": journal}}
    return {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def proc_memory_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) / 1024
    return {"peak_rss_mib": out["VmHWM"], "rss_mib": out["VmRSS"]}


#: A checkout (e.g. a ``git worktree`` of an older commit) whose operator the cases run instead
#: of this one's: how the "before" columns are measured with the same cases and harness.
OPERATOR_CODE: dict[str, Path] = {}


class OperatorProcess:
    """``openautoglm operator`` against the emulated cluster, as the operator image runs it."""

    def __init__(self, cluster: Any, workdir: Path):
        self.cluster = cluster
        self.workdir = workdir
        self.health = _free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> OperatorProcess:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "OPENAUTOGLM_STUDY_DIR": str(self.workdir / "studies"),
            "OPENAUTOGLM_OPERATOR_HEALTH_PORT": str(self.health),
            "OPENAUTOGLM_OPERATOR_METRICS_PORT": "0",
            "OPENAUTOGLM_LOG_LEVEL": "WARNING",
        }
        if "path" in OPERATOR_CODE:
            code = OPERATOR_CODE["path"]
            env["PYTHONPATH"] = os.pathsep.join([str(code / "operator"), str(code / "trial_image")])
        self.log = open(self.workdir / "operator.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "openautoglm.cli", "operator"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kopf answers /healthz once its watches are up
            if self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited: see {self.workdir / 'operator.log'}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.health}/healthz", timeout=1).close()
                time.sleep(0.5)  # the first listing of TuningJobs and pods
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the operator did not become healthy in 60 s")

    def __exit__(self, *exc: Any) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return proc_cpu_seconds(self.pid)

    def memory(self) -> dict[str, float]:
        return proc_memory_mib(self.pid)


def _own_cpu() -> tuple[float, float]:
    """CPU seconds of this process (API server, kubelet) and of its reaped children (trials)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def _phase(cluster: Any, name: str) -> str | None:
    return ((cluster.get(TJ, NS, name) or {}).get("status") or {}).get("phase")


def wait_terminal(cluster: Any, names: list[str], timeout: float) -> float:
    """Seconds until every named job is Succeeded (polled in the cluster's loop every 20 ms)."""
    t0 = time.perf_counter()
    left = set(names)
    while left:
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{len(left)} jobs not finished after {timeout:.0f} s: {sorted(left)[:5]}")
        for name in list(left):
            phase = _phase(cluster, name)
            if phase == "Failed":
                raise RuntimeError(f"job {name} failed: {cluster.get(TJ, NS, name).get('status')}")
            if phase == "Succeeded":
                left.discard(name)
        time.sleep(0.02)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- bare driver
def bare_driver(kubeconfig: str, name: str, url: str, interval: float) -> dict[str, float]:
    """The floor: the engine's driver and backend through the same API, with no kopf, no status
    writes and no per-job bookkeeping; a pod watch wakes it as pod events wake the operator.
    Runs in its own process (``python bench/operator_cluster.py bare ...``), as the operator does."""
    kubernetes.config.load_kube_config(kubeconfig)
    client = kubernetes.client.ApiClient()
    objects = kubernetes.client.CustomObjectsApi(client)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    body = objects.get_namespaced_custom_object("openautoglm.io", "v1alpha1", NS, "tuningjobs", name)
    job = validate_document({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")}, "bench")
    api = Api(client)
    wake = threading.Event()

    def watch() -> None:
        core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient())
        while True:
            try:
                for ev in kubernetes.watch.Watch().stream(
                    core.list_namespaced_pod, NS, label_selector=f"{LABEL_JOB}={job.name}", timeout_seconds=60
                ):
                    phase = (ev["raw_object"].get("status") or {}).get("phase")
                    if ev["type"] == "DELETED" or phase in ("Succeeded", "Failed"):
                        wake.set()
            except Exception:  # noqa: BLE001 - a dropped watch is re-opened, as kopf does
                time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    driver = Driver.open(job, url, KubernetesBackend(job, body, api, NS), generation=1)
    while not driver.step().done:
        wake.wait(interval)
        wake.clear()
    driver.close()
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu0}


def bare_driver_run(cluster: Any, doc: dict[str, Any], url: str, interval: float) -> dict[str, float]:
    cluster.create(TJ, doc, NS)  # the pods' ownerReferences name it, as the operator's do
    out = subprocess.run(
        [sys.executable, __file__, "bare", str(cluster.kubeconfig), doc["metadata"]["name"], url, str(interval)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def one_job_case(trials: int, parallelism: int, repeats: int) -> dict[str, Any]:
    bare, bare_cpu, operator, cpu, memory, status_bytes = [], [], [], [], [], []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp, emulated_cluster(Path(tmp) / "bare") as cluster:
            doc = job_document(f"bare-{r}", trials, parallelism)
            run = bare_driver_run(cluster, doc, str(Path(tmp) / "bare.journal"), 2.0)
            bare.append(run["seconds"])
            bare_cpu.append(run["cpu_seconds"])
        with (
            tempfile.TemporaryDirectory() as tmp,
            emulated_cluster(Path(tmp) / "op") as cluster,
            OperatorProcess(cluster, Path(tmp)) as op,
        ):
            name = f"op-{r}"
            cpu0 = op.cpu()
            t0 = time.perf_counter()
            cluster.create(TJ, job_document(name, trials, parallelism), NS)
            wait_terminal(cluster, [name], 600)
            operator.append(time.perf_counter() - t0)
            cpu.append(op.cpu() - cpu0)
            memory.append(op.memory())
            status_bytes.append(len(json.dumps(cluster.get(TJ, NS, name)["status"])))
    b, o = statistics.median(bare), statistics.median(operator)
    return {
        "trials": trials,
        "parallelism": parallelism,
        "repeats": repeats,
        "bare_seconds": bare,
        "operator_seconds": operator,
        "bare_median": b,
        "operator_median": o,
        "ratio": o / b,
        "overhead_ms_per_trial": 1000 * (o - b) / trials,
        "operator_cpu_ms_per_trial": 1000 * statistics.median(cpu) / trials,
        "bare_cpu_ms_per_trial": 1000 * statistics.median(bare_cpu) / trials,
        "operator_peak_rss_mib": max(m["peak_rss_mib"] for m in memory),
        "status_bytes": max(status_bytes),
    }


# ----------------------------------------------------------------------------- many jobs
def slot_waits(records: list[dict[str, Any]], applied: float, parallelism: int) -> list[float]:
    """Per trial start, seconds since the slot it took became free: the job's apply for the
    first ``parallelism`` trials, then the earliest exit not yet followed by a start."""
    events = sorted(
        [(r["started"], 1) for r in records] + [(r["finished"], 0) for r in records if r["finished"]],
        key=lambda e: (e[0], e[1]),  # an exit and a start at the same instant: the exit first
    )
    free = [applied] * parallelism
    waits = []
    for at, kind in events:
        if kind == 0:
            free.append(at)
        else:
            free.sort()
            waits.append(at - free.pop(0))
    return waits


def many_jobs_case(jobs: int, parallelism: int, trials: int, sleep: float) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulated_cluster(Path(tmp) / "many") as cluster,
        OperatorProcess(cluster, Path(tmp)) as op,
    ):
        names = [f"job-{i:03d}" for i in range(jobs)]
        cpu0 = op.cpu()
        own0, children0 = _own_cpu()
        applied: dict[str, float] = {}
        t0 = time.perf_counter()
        for name in names:  # as `kubectl apply -f many.yaml` would, one after another
            applied[name] = time.time()
            cluster.create(TJ, job_document(name, trials, parallelism, sleep=sleep), NS)
        wait_terminal(cluster, names, 1800)
        wall = time.perf_counter() - t0
        cpu = op.cpu() - cpu0
        own1, children1 = _own_cpu()
        memory = op.memory()
        statuses = {n: cluster.get(TJ, NS, n)["status"] for n in names}
        records = list(cluster.process_log)
    per_job = []
    for name in names:
        mine = [r for r in records if r["pod"].startswith(f"{name}-t")]
        waits = slot_waits(mine, applied[name], parallelism)
        per_job.append(
            {
                "job": name,
                "trials": statuses[name]["trials"]["completed"],
                "max_wait_s": max(waits),
                "first_start_s": min(r["started"] for r in mine) - applied[name],
                "status_bytes": len(json.dumps(statuses[name])),
            }
        )
    total = sum(j["trials"] for j in per_job)
    worst = max(per_job, key=lambda j: j["max_wait_s"])
    max_waits = sorted(j["max_wait_s"] for j in per_job)
    return {
        "jobs": jobs,
        "parallelism": parallelism,
        "trials_per_job": trials,
        "trial_seconds": sleep,
        "wall_seconds": wall,
        "ideal_seconds": sleep * -(-trials // parallelism),
        "trials_completed": total,
        "all_succeeded": all(j["trials"] == trials for j in per_job),
        "operator_cpu_seconds": cpu,
        "operator_cpu_ms_per_trial": 1000 * cpu / total,
        "operator_peak_rss_mib": memory["peak_rss_mib"],
        "operator_rss_mib": memory["rss_mib"],
        # Where the machine's time went: the emulated API server and kubelet (this process) and
        # the trial processes (its children), against the cores x wall time there was.
        "harness_cpu_seconds": own1 - own0,
        "trial_processes_cpu_seconds": children1 - children0,
        "machine_cpu_seconds": wall * (os.cpu_count() or 1),
        "max_wait_s_median_job": statistics.median(max_waits),
        "max_wait_s_worst_job": worst["max_wait_s"],
        "worst_job": worst["job"],
        "status_bytes_max": max(j["status_bytes"] for j in per_job),
        "per_job": per_job,
    }


# ----------------------------------------------------------------------------- large study
def seed_journal(doc: dict[str, Any], path: Path, finished: int) -> None:
    """A journal study of this job holding ``finished`` completed trials, as if it had run them."""
    job = validate_document({k: doc[k] for k in ("apiVersion", "kind", "metadata", "spec")}, "bench")

    class _Idle:
        def observe(self) -> dict:
            return {}

        def launch(self, number: int, params: dict[str, Any], attempt: int = 0) -> None:
            raise AssertionError("seeding launches nothing")

        stop = release = retire = launch

        def update(self, job: Any) -> None:
            pass

        def close(self) -> None:
            pass

    driver = Driver.open(job, str(path), _Idle(), generation=1)
    driver.study.add_trials(finished_trials(finished))
    driver.close()


def finished_trials(n: int) -> list[optuna.trial.FrozenTrial]:
    """``n`` completed trials of the zero-work jobs' one parameter ``x``, as if they had run."""
    dist = {"x": FloatDistribution(0.0, 1.0)}
    return [
        optuna.trial.create_trial(
            params={"x": (i % 997) / 997},
            distributions=dist,
            value=(i % 997) / 997,
            user_attrs={attrs.TRIAL_PARAMS: {"x": (i % 997) / 997}},
        )
        for i in range(n)
    ]


def large_study_case(finished: int, more: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulated_cluster(Path(tmp) / "large") as cluster,
        OperatorProcess(cluster, Path(tmp)) as op,
    ):
        # A journal name is a file in the operator's directory of the job's namespace (issue 21).
        journal = Path(tmp) / "studies" / NS / "large.journal"
        doc = job_document("large", finished + more, 4, journal=journal.name)
        seed_journal(doc, journal, finished)
        before = op.memory()
        cpu0 = op.cpu()
        t0 = time.perf_counter()
        cluster.create(TJ, doc, NS)
        wait_terminal(cluster, ["large"], 600)
        seconds = time.perf_counter() - t0
        cpu = op.cpu() - cpu0
        memory = op.memory()
        status = cluster.get(TJ, NS, "large")["status"]
    return {
        "finished_before": finished,
        "trials_run": more,
        "completed": status["trials"]["completed"],
        "seconds": seconds,
        "operator_cpu_ms_per_trial": 1000 * cpu / more,
        "operator_rss_mib_before": before["rss_mib"],
        "operator_peak_rss_mib": memory["peak_rss_mib"],
        "operator_rss_mib": memory["rss_mib"],
        "status_bytes": len(json.dumps(status)),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["bare"]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        kubeconfig, name, url, interval = sys.argv[2:6]
        print(json.dumps(bare_driver(kubeconfig, name, url, float(interval))))
