"""The environment of one trial worker: a pure builder shared by every backend.

Pods and local processes get the same variables from here, so local runs exercise
the pod contract (see openautoglm_trial.contract).
"""

from __future__ import annotations

import json
from typing import Any, Final

from openautoglm.spec import DEFAULT_METRIC_FILTER, TuningJob
from openautoglm_trial import contract as c

#: In a pod every rank binds all interfaces; locally each rank has its own loopback address.
POD_BIND_ADDRESS: Final = "0.0.0.0"


def trial_name(job: str, number: int) -> str:
    return f"{job}-t{number}"


def worker_name(job: str, number: int, rank: int, attempt: int = 0) -> str:
    """A rank's name; a trial run again (trial.retries) gets new names, because the failed
    run's pods may still be terminating under the old ones."""
    return f"{job}-t{number}-w{rank}" if not attempt else f"{job}-t{number}-a{attempt}-w{rank}"


def build_worker_env(
    job: TuningJob,
    number: int,
    rank: int,
    params: dict[str, Any],
    hosts: list[str],
    *,
    bind_address: str,
    termination_log: str = c.DEFAULT_TERMINATION_LOG,
    rendezvous_port: int = c.DEFAULT_RENDEZVOUS_PORT,
    extra: dict[str, str] | None = None,
    checkpoint_dir: str | None = None,
    run: int = 0,
    namespace: str = "",
) -> dict[str, str]:
    """Every variable a worker receives, as strings (the form both env and pods need).

    Args:
        hosts: HOROVOD_HOSTNAME of every rank, in rank order; rank 0 hosts the rendezvous.
        bind_address: where the worker's HTTP servers listen.
        checkpoint_dir: the trial's checkpoint directory as the worker sees it (trial.checkpoint).
        run: which run of the trial this is (0, then one more per retry or requeue).
        namespace: the job's namespace ("" locally): part of a torchrun trial's MASTER_PORT.
    """
    spec = job.spec
    env: dict[str, str] = {e.name: e.value for e in spec.trial.env}
    env.update(
        {
            c.JOB: job.name,
            c.TRIAL: str(number),
            c.TRIAL_NAME: trial_name(job.name, number),
            c.PARAMS: c.encode_params(params),
            c.EPOCHS: str(spec.trial.epochs),
            c.RUN: str(run),
            # Same seed on every rank: broadcast makes weights equal anyway, but data order
            # and dropout should not depend on which rank happened to start first.
            c.SEED: str((spec.algorithm.seed or 0) * 100_003 + number),
            c.OBJECTIVE_METRICS: json.dumps([o.model_dump() for o in spec.objective.objectives]),
            c.TRIAL_STOPPING: json.dumps(
                {
                    "maxGradNorm": spec.early_stopping.max_grad_norm,
                    "patience": spec.early_stopping.patience,
                    "minDelta": spec.early_stopping.min_delta,
                    "divergenceCheck": True,
                }
            ),
            c.BIND_ADDRESS: bind_address,
            c.METRICS_PORT: str(spec.metrics.port),
            c.TERMINATION_LOG: termination_log,
            c.WORKER_HOSTS: ",".join(hosts),
            c.LAUNCHER: spec.trial.launcher,
            **launcher_env(job, number, rank, hosts, namespace, rendezvous_port),
        }
    )
    if spec.trial.checkpoint is not None and checkpoint_dir:
        env[c.CHECKPOINT_DIR] = checkpoint_dir
    if spec.trial.task is not None:
        env[c.TASK] = spec.trial.task
    env[c.TASK_SETTINGS] = json.dumps(spec.trial.task_settings, sort_keys=True)
    if supervised(job):
        env.update(supervisor_env(job))
    env.update(extra or {})
    return env


def launcher_env(
    job: TuningJob, number: int, rank: int, hosts: list[str], namespace: str, rendezvous_port: int
) -> dict[str, str]:
    """Exactly one launcher's variables: what horovodrun sets for a Gloo job (each worker its own
    host with one slot), or what torchrun sets for a plain script (rank 0 hosts the store)."""
    if job.spec.trial.launcher == "torchrun":
        # torch's TCPStore listens on every interface: trials sharing a network namespace (local
        # runs, the test kubelet) need ports of their own; in a pod any port is free.
        return c.torchrun_env(rank, hosts, c.master_port(job.name, namespace, number))
    return c.horovod_env(rank, hosts, rendezvous_port)


def supervised(job: TuningJob) -> bool:
    """Whether the trial runtime supervises the user's program (all but the native collector)."""
    spec = job.spec
    return spec.trial.command is not None and spec.metrics.effective_collector.kind != "native"


def supervisor_env(job: TuningJob) -> dict[str, str]:
    """What the trial supervisor needs to run and watch the user's program."""
    spec = job.spec
    collector = spec.metrics.effective_collector
    return {
        # Placeholders stay in: the supervisor substitutes them, one value per argv item.
        c.COMMAND: json.dumps(list(spec.trial.command or [])),
        c.COLLECTOR: json.dumps(
            {
                "kind": collector.kind,
                "filter": collector.filter or DEFAULT_METRIC_FILTER,
                "path": collector.path,
                "format": collector.format,
                "port": collector.port,
                "metricsPath": collector.metrics_path,
                "stepMetric": collector.step_metric,
            }
        ),
        c.METRIC_STRATEGIES: json.dumps(spec.objective.strategies()),
        c.ADDITIONAL_METRICS: json.dumps(list(spec.objective.additional_metrics)),
    }


def worker_command(job: TuningJob) -> list[str]:
    """The container command (exec form: no shell ever parses a hyperparameter).

    A built-in task and a supervised program both run the trial runtime; only a program that
    implements the trial contract itself (collector ``native``) runs as it is.
    """
    if job.spec.trial.command is not None and not supervised(job):
        return list(job.spec.trial.command)
    return ["python", "-m", "openautoglm_trial"]
