"""Launch real trial workers (``python -m openautoglm_trial``) the way the backends do.

Every worker gets exactly the pod environment: its own loopback address (as a pod gets its
own IP), the same metrics port on all of them, and the HOROVOD_* variables horovodrun would
set, with rank 0 hosting the rendezvous. No shell is involved anywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TRIAL_IMAGE = REPO / "trial_image"
sys.path.insert(0, str(TRIAL_IMAGE))

from openautoglm_trial import contract  # noqa: E402  (the package under test, not installed)

HOROVOD_MISSING = importlib.util.find_spec("horovod") is None
HOROVOD_SKIP_REASON = (
    "horovod is not installed (scripts/build-horovod-wheel.sh, then "
    "pip install /var/cache/openautoglm/wheels/horovod-0.28.1-*.whl)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HOROVOD_MISSING:
        for item in items:
            if "horovod" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=HOROVOD_SKIP_REASON))


@dataclass
class Worker:
    """One running rank."""

    rank: int
    address: str
    metrics_port: int
    env: dict[str, str]
    termination_log: Path
    log_path: Path
    process: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        """URL of one of the worker's HTTP endpoints."""
        return f"http://{self.address}:{self.metrics_port}{path}"

    def get(self, path: str, timeout: float = 1.0) -> tuple[int, str]:
        """GET an endpoint; (status, body), or (0, error) when nothing answers."""
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def result(self) -> dict[str, Any]:
        """The termination message."""
        return json.loads(self.termination_log.read_text())

    def log(self) -> str:
        """stdout and stderr of the worker."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Trial:
    """The workers of one trial."""

    workers: list[Worker]
    ready_seen: dict[int, float] = field(default_factory=dict)

    def start(self, rank0_delay: float = 0.0) -> Trial:
        """Start every rank, the highest first (pods start in any order).

        Args:
            rank0_delay: seconds between starting the other ranks and rank 0.
        """
        for worker in reversed(self.workers):
            if worker.rank == 0 and rank0_delay:
                time.sleep(rank0_delay)
            worker.process = subprocess.Popen(
                [sys.executable, "-m", "openautoglm_trial"],
                env=worker.env,
                stdout=worker.log_path.open("w"),
                stderr=subprocess.STDOUT,
                cwd=worker.env["HOME"],
            )
        return self

    def poll_ready(self, timeout: float = 60.0) -> None:
        """Poll every /readyz until it answers 200; records when (see ready_seen)."""
        deadline = time.monotonic() + timeout
        while len(self.ready_seen) < len(self.workers) and time.monotonic() < deadline:
            for worker in self.workers:
                if worker.rank not in self.ready_seen and worker.get("/readyz")[0] == 200:
                    self.ready_seen[worker.rank] = time.monotonic()
            if any(w.process.poll() is not None for w in self.workers):
                break
            time.sleep(0.05)

    def wait(self, timeout: float = 90.0) -> list[int]:
        """Wait for every rank to exit; their exit codes in rank order."""
        deadline = time.monotonic() + timeout
        codes = []
        for worker in self.workers:
            try:
                codes.append(worker.process.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pytest.fail(f"rank {worker.rank} still running after {timeout}s:\n{self.logs()}")
        return codes

    def signal(self, signum: int) -> None:
        """Send a signal to every rank still running."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signum)

    def kill(self) -> None:
        """Kill what is left (test teardown)."""
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()

    def results(self) -> list[dict[str, Any]]:
        """Termination messages in rank order."""
        return [worker.result() for worker in self.workers]

    def logs(self) -> str:
        """All worker logs, for assertion messages."""
        return "\n".join(f"--- rank {w.rank} ---\n{w.log()[-4000:]}" for w in self.workers)


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def worker_envs(
    size: int,
    workdir: Path,
    cache_dir: Path,
    *,
    task: str = "digits",
    params: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    epochs: int = 2,
    seed: int = 7,
    stopping: dict[str, Any] | None = None,
    objectives: list[dict[str, str]] | None = None,
    extra: dict[str, str] | None = None,
    launcher: str = contract.LAUNCHER_HOROVOD,
) -> list[Worker]:
    """Build the pod environment of each rank of one trial.

    Args:
        size: number of ranks.
        workdir: per-test directory for logs, termination messages and the fake HOME.
        cache_dir: tokenizer cache shared by the session.
        task, params, settings, epochs, seed, stopping, objectives: the trial contract.
        extra: more variables for every rank (``{rank}`` in a value becomes the rank).
        launcher: horovod (HOROVOD_*) or torchrun (MASTER_ADDR, RANK ...), as the engine sets them.

    Returns:
        The workers, not started.
    """
    # A fresh 127.a.b.0/24 per trial: no TIME_WAIT or leftover server on the same address.
    a, b = random.randint(16, 250), random.randint(0, 255)
    addresses = [f"127.{a}.{b}.{rank + 1}" for rank in range(size)]
    metrics_port = _free_port(addresses[0])
    rendezvous_port = _free_port(addresses[0])
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    workers = []
    for rank, address in enumerate(addresses):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "PYTHONPATH": str(TRIAL_IMAGE),
            contract.JOB: "test-job",
            contract.TRIAL: "3",
            contract.TRIAL_NAME: "test-job-t3",
            contract.TASK: task,
            contract.TASK_SETTINGS: json.dumps(settings or {}),
            contract.PARAMS: contract.encode_params(params or {}),
            contract.EPOCHS: str(epochs),
            contract.SEED: str(seed),
            contract.TRIAL_STOPPING: json.dumps(stopping or {}),
            contract.BIND_ADDRESS: address,
            contract.METRICS_PORT: str(metrics_port),
            contract.TERMINATION_LOG: str(workdir / f"termination-{rank}.json"),
            contract.CACHE_DIR: str(cache_dir),
            contract.WORKER_HOSTS: ",".join(addresses),
            **_launcher_env(launcher, rank, addresses, rendezvous_port),
        }
        if objectives is not None:
            env[contract.OBJECTIVE_METRICS] = json.dumps(objectives)
        for key, value in (extra or {}).items():
            env[key] = value.replace("{rank}", str(rank))
        workers.append(
            Worker(
                rank, address, metrics_port, env, workdir / f"termination-{rank}.json", workdir / f"worker-{rank}.log"
            )
        )
    return workers


def _launcher_env(launcher: str, rank: int, addresses: list[str], rendezvous_port: int) -> dict[str, str]:
    """One launcher's variables, and Gloo on loopback, as the local backend sets them."""
    if launcher == contract.LAUNCHER_TORCHRUN:
        # master_port as the engine computes it, the trial's addresses standing in for its name:
        # outside the ephemeral range, so no port picked by another test's bind can take it.
        port = contract.master_port("test-job", addresses[0], 3)
        env = contract.torchrun_env(rank, addresses, port)
        return {contract.LAUNCHER: launcher, **env, "GLOO_SOCKET_IFNAME": "lo", contract.HOROVOD_GLOO_IFACE: "lo"}
    return {**contract.horovod_env(rank, addresses, rendezvous_port), contract.HOROVOD_GLOO_IFACE: "lo"}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tokenizer cache shared by the session's text-lm trials."""
    return tmp_path_factory.mktemp("openautoglm-cache")


@pytest.fixture
def launch(tmp_path: Path, cache_dir: Path) -> Iterator[Any]:
    """``launch(size, rank0_delay=0, **contract) -> Trial``: start a trial's workers (killed at
    teardown); ``contract`` is what :func:`worker_envs` takes."""
    trials: list[Trial] = []

    def _launch(size: int = 1, rank0_delay: float = 0.0, **kwargs: Any) -> Trial:
        trial = Trial(worker_envs(size, tmp_path, cache_dir, **kwargs)).start(rank0_delay)
        trials.append(trial)
        return trial

    yield _launch
    for trial in trials:
        trial.kill()
