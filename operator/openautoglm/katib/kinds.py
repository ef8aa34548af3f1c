"""The kinds of Katib trial a TuningJob trial can be: a batch/v1 Job, a PyTorchJob, an MPIJob.

A TuningJob trial is one pod per rank, all from one template. A Job is one rank; a PyTorchJob's
Master and Workers are its ranks (their templates must match), started with torchrun's environment
(``trial.launcher: torchrun``) as the training operator starts them; an MPIJob's Workers are, with
Horovod's, and its Launcher contributes only the program, once ``mpirun``/``horovodrun`` is stripped.
"""

from __future__ import annotations

import copy
import posixpath
from typing import Any, Final

from openautoglm.katib.container import command_line
from openautoglm.katib.context import TrialContext
from openautoglm.katib.pod import MAX_RETRIES, RESTARTING, find_container, pod, restarts, retries, timeout
from openautoglm.katib.shell import LAUNCHERS, strip_mpi_launcher
from openautoglm.katib.values import integer
from openautoglm_trial import contract

_MAX_WORKERS: Final = 64
#: A batch/v1 Job's default backoffLimit.
_JOB_BACKOFF_LIMIT: Final = 6
#: PyTorchJob's processes per pod that are one process: the TuningJob's (one rank per pod).
_ONE_PROCESS: Final = (1, "1", None)
#: MPIJob fields about mpirun and its launcher, which a TuningJob has not.
_MPI_LAUNCH: Final = ("mpiImplementation", "sshAuthMountPath", "launcherCreationPolicy")


def batch_job(ts: dict[str, Any], path: str, trial: dict[str, Any], ctx: TrialContext) -> None:
    """A batch/v1 Job of one pod: one worker."""
    spec = ts.get("spec") or {}
    for key, value in spec.items():
        if key == "template":
            continue
        if key in ("parallelism", "completions") and value in (1, None):
            continue
        if key == "activeDeadlineSeconds":
            timeout(value, f"{path}.spec.{key}", trial, ctx)
        elif key == "ttlSecondsAfterFinished":
            ctx.findings.note("trialSpec.spec.ttlSecondsAfterFinished dropped: the operator deletes trial pods")
        elif key == "backoffLimit":
            retries(value, f"{path}.spec.{key}", "trialSpec.spec.backoffLimit", trial, ctx)
        else:
            ctx.findings.miss(f"{path}.spec.{key}", "a trial is one pod per worker; this Job field has no equivalent")
    if spec.get("backoffLimit") is None:
        ctx.findings.note(
            f"trialSpec.spec.backoffLimit unset: Kubernetes runs a failed pod of a Katib Job trial again up to "
            f"{_JOB_BACKOFF_LIMIT} times (the Job default); a TuningJob trial runs once unless trial.retries says "
            f"otherwise (default 0; set it, at most {MAX_RETRIES}, to retry)"
        )
    template = spec.get("template")
    if not isinstance(template, dict):
        ctx.findings.miss(f"{path}.spec.template", "required")
        return
    trial["workers"] = 1
    pod(template, f"{path}.spec.template", ctx.primary, trial, ctx)


def _comparable(template: Any) -> Any:
    """A pod template without what may differ between PyTorchJob replicas without changing the program."""
    t = copy.deepcopy(template) or {}
    (t.get("spec") or {}).pop("restartPolicy", None)
    return t


def _replicas(rs: dict[str, Any], path: str, ctx: TrialContext) -> int:
    try:
        return integer(rs.get("replicas", 1))
    except ValueError:
        ctx.findings.miss(f"{path}.replicas", f"not a number: {rs.get('replicas')!r}")
        return 1


def pytorch_job(ts: dict[str, Any], path: str, trial: dict[str, Any], ctx: TrialContext) -> None:
    """A PyTorchJob: its Master and Workers become the trial's ranks, all from one pod template,
    each given torchrun's environment (``trial.launcher: torchrun``) as the training operator does."""
    findings = ctx.findings
    spec = ts.get("spec") or {}
    rpath = f"{path}.spec.pytorchReplicaSpecs"
    replicas = spec.get("pytorchReplicaSpecs") or {}
    run_policy(spec, path, trial, ctx, skip={"pytorchReplicaSpecs", "nprocPerNode"})
    if spec.get("nprocPerNode") not in _ONE_PROCESS:
        findings.miss(
            f"{path}.spec.nprocPerNode", f"{spec.get('nprocPerNode')!r}: a TuningJob rank is one process in its own pod"
        )
    master, worker = replicas.get("Master"), replicas.get("Worker")
    for k in replicas:
        if k not in ("Master", "Worker"):
            findings.miss(f"{rpath}.{k}", "only Master and Worker replicas map")
    if master is None and worker is None:
        findings.miss(rpath, "needs a Master or Worker replica")
        return
    workers = _pytorch_ranks(master, worker, rpath, ctx)
    _replica_restarts(replicas, ("Master", "Worker"), trial, ctx)
    lead_role = "Master" if master is not None else "Worker"
    lead = (master if master is not None else worker) or {}
    trial["workers"] = workers
    trial["launcher"] = contract.LAUNCHER_TORCHRUN
    findings.note(
        f"PyTorchJob: {workers} worker{'s' * (workers > 1)} per trial (Master + Worker replicas), each given "
        f"torchrun's environment (trial.launcher: torchrun: MASTER_ADDR = rank 0, MASTER_PORT, RANK, WORLD_SIZE, "
        f"LOCAL_RANK ...), as the training operator sets it: init_process_group() runs unchanged"
    )
    template = lead.get("template")
    if not isinstance(template, dict):
        findings.miss(f"{rpath}.{lead_role}.template", "required")
        return
    pod(template, f"{rpath}.{lead_role}.template", ctx.primary, trial, ctx)
    _drop_launcher_env(trial, ctx)


def _pytorch_ranks(master: Any, worker: Any, rpath: str, ctx: TrialContext) -> int:
    """The trial's workers: one Master and the Workers; their templates must be the same pod."""
    findings = ctx.findings
    n_master = n_worker = 0
    for role, rs in (("Master", master), ("Worker", worker)):
        if rs is None:
            continue
        count = _replicas(rs, f"{rpath}.{role}", ctx)
        if role == "Master":
            if count != 1:
                findings.miss(f"{rpath}.Master.replicas", f"must be 1, got {count}")
            n_master = 1
        else:
            n_worker = count
        _replica_spec(rs, f"{rpath}.{role}", ctx)
    if master is not None and worker is not None and n_worker > 0:
        if _comparable(master.get("template")) != _comparable(worker.get("template")):
            findings.miss(
                f"{rpath}.Worker.template",
                "differs from the Master's: every rank of a TuningJob trial runs the same pod",
            )
    workers = n_master + n_worker
    if not 1 <= workers <= _MAX_WORKERS:
        findings.miss(rpath, f"{workers} replicas: a trial has 1 to {_MAX_WORKERS} workers")
        workers = max(1, min(workers, _MAX_WORKERS))
    return workers


def _drop_launcher_env(trial: dict[str, Any], ctx: TrialContext) -> None:
    """The container's own MASTER_ADDR, RANK, WORLD_SIZE ...: the training operator replaces them,
    and so does the torchrun launcher (a TuningJob may not set them)."""
    env = trial.get("env") or []
    kept = [e for e in env if e["name"] not in contract.TORCHRUN_ENV]
    dropped = [e["name"] for e in env if e["name"] in contract.TORCHRUN_ENV]
    if dropped:
        ctx.findings.note(f"PyTorchJob: env {', '.join(dropped)} dropped: the torchrun launcher sets it for every rank")
        if kept:
            trial["env"] = kept
        else:
            trial.pop("env")


def mpi_job(ts: dict[str, Any], path: str, trial: dict[str, Any], ctx: TrialContext) -> None:
    """An MPIJob: its Workers are the ranks; the Launcher's command, less mpirun, is the program."""
    findings = ctx.findings
    spec = ts.get("spec") or {}
    rpath = f"{path}.spec.mpiReplicaSpecs"
    replicas = spec.get("mpiReplicaSpecs") or {}
    run_policy(spec, path, trial, ctx, skip={"mpiReplicaSpecs", "slotsPerWorker", "runLauncherAsWorker", *_MPI_LAUNCH})
    slots = spec.get("slotsPerWorker", 1)
    if slots not in (1, None):
        findings.miss(f"{path}.spec.slotsPerWorker", f"{slots}: a TuningJob worker is one pod with one rank")
    if spec.get("runLauncherAsWorker"):
        findings.miss(f"{path}.spec.runLauncherAsWorker", "there is no launcher: every rank is a worker pod")
    for key in _MPI_LAUNCH:
        if key in spec:
            findings.note(f"MPIJob {key} dropped: there is no mpirun and no launcher")
    launcher, worker = replicas.get("Launcher"), replicas.get("Worker")
    for k in replicas:
        if k not in ("Launcher", "Worker"):
            findings.miss(f"{rpath}.{k}", "only Launcher and Worker replicas map")
    if not isinstance(launcher, dict) or not isinstance(worker, dict):
        findings.miss(rpath, "needs a Launcher and a Worker replica")
        return
    for role, rs in (("Launcher", launcher), ("Worker", worker)):
        _replica_spec(rs, f"{rpath}.{role}", ctx)
    _replica_restarts(replicas, ("Launcher", "Worker"), trial, ctx)
    n = _replicas(worker, f"{rpath}.Worker", ctx)
    if not 1 <= n <= _MAX_WORKERS:
        findings.miss(f"{rpath}.Worker.replicas", f"{n}: a trial has 1 to {_MAX_WORKERS} workers")
        n = max(1, min(n, _MAX_WORKERS))
    trial["workers"] = n
    launched = _launched_program(launcher, f"{rpath}.Launcher.template", n, ctx)
    if launched is None:
        return
    program, argv_path, image, extra_env = launched
    # Everything else: the Worker pod, where the program runs.
    wtemplate = worker.get("template")
    if not isinstance(wtemplate, dict):
        findings.miss(f"{rpath}.Worker.template", "required")
        return
    wcontainers = ((wtemplate.get("spec") or {}).get("containers")) or []
    wi = find_container(wcontainers, ctx.primary)
    if wi is None:
        if len(wcontainers) == 1:
            wi = 0
        else:
            same = [i for i, c in enumerate(wcontainers) if c.get("image") == image]
            wi = same[0] if len(same) == 1 else None
    if wi is None:
        findings.miss(f"{rpath}.Worker.template.spec.containers", "cannot tell which container runs the program")
        return
    pod(
        wtemplate,
        f"{rpath}.Worker.template",
        wcontainers[wi].get("name"),
        trial,
        ctx,
        argv=program,
        argv_path=argv_path,
        extra_env=extra_env,
    )


def _launched_program(
    launcher: dict[str, Any], lpath: str, n: int, ctx: TrialContext
) -> tuple[list[str], str, Any, dict[str, str]] | None:
    """``(program argv, its path, the Launcher's image, -x variables)``: the Launcher's primary
    container, minus mpirun and its options; None when there is none (reported)."""
    findings = ctx.findings
    lcontainers = (((launcher.get("template") or {}).get("spec")) or {}).get("containers") or []
    li = find_container(lcontainers, ctx.primary)
    if li is None:
        findings.miss(
            f"{lpath}.spec.containers",
            f"no container {ctx.primary!r} (trialTemplate.primaryContainerName) in the Launcher",
        )
        return None
    lc = lcontainers[li]
    cpath = f"{lpath}.spec.containers[{li}]"
    argv = command_line(lc, cpath, ctx)
    if argv is None:
        return None
    if posixpath.basename(argv[0]) not in LAUNCHERS:
        findings.miss(
            f"{cpath}.command",
            f"the Launcher runs {argv[0]!r}, not mpirun/horovodrun: the program of the ranks is unknown",
        )
        return None
    program, info, reason = strip_mpi_launcher(argv)
    if program is None:
        findings.miss(f"{cpath}.args", f"cannot strip {info['launcher']}: {reason}")
        return None
    stripped = argv[: len(argv) - len(program)]
    findings.note(
        f"MPIJob: the Launcher's {' '.join(stripped)!r} removed; the operator starts the {n} ranks itself "
        f"with Horovod's Gloo environment (what horovodrun sets): a Horovod program runs unchanged, a plain "
        f"MPI program does not"
    )
    if info["np"] is not None and info["np"] != n:
        findings.note(f"MPIJob: {info['launcher']} -np {info['np']} ignored: a trial has Worker.replicas ({n}) ranks")
    launcher_env = {e.get("name"): e.get("value") for e in lc.get("env") or [] if "value" in e}
    extra_env = dict(info["env"])
    dropped = []
    for name in info["forwarded"]:
        if name in launcher_env:
            extra_env[name] = str(launcher_env[name])
        else:
            dropped.append(name)
    if dropped:
        findings.note(f"MPIJob: -x {' -x '.join(dropped)} dropped: the workers keep their own image's values")
    findings.note(
        "MPIJob: the Launcher pod is not used except for its command; image, resources and volumes come "
        "from the Worker pod"
    )
    return program, cpath, lc.get("image"), extra_env


def run_policy(spec: dict[str, Any], path: str, trial: dict[str, Any], ctx: TrialContext, skip: set[str]) -> None:
    """A training-operator job's other fields: its run policy (clean-up, deadline, retries)."""
    for key, value in spec.items():
        if key in skip:
            continue
        if key == "cleanPodPolicy":
            ctx.findings.note("cleanPodPolicy dropped: the operator deletes trial pods")
        elif key == "runPolicy" and isinstance(value, dict):
            for k, v in value.items():
                if k == "cleanPodPolicy" or k == "ttlSecondsAfterFinished":
                    ctx.findings.note(f"runPolicy.{k} dropped: the operator deletes trial pods")
                elif k == "activeDeadlineSeconds":
                    timeout(v, f"{path}.spec.runPolicy.{k}", trial, ctx)
                elif k == "backoffLimit":
                    retries(v, f"{path}.spec.runPolicy.{k}", f"runPolicy.{k}", trial, ctx)
                else:
                    ctx.findings.miss(f"{path}.spec.runPolicy.{k}", "no equivalent")
        else:
            ctx.findings.miss(f"{path}.spec.{key}", "no equivalent")


def _replica_spec(rs: dict[str, Any], path: str, ctx: TrialContext) -> None:
    """A replica's restart policy (one that restarts: :func:`_replica_restarts`) and fields other
    than replicas and template."""
    policy = rs.get("restartPolicy")
    if policy not in (None, "Never", *RESTARTING):
        ctx.findings.miss(f"{path}.restartPolicy", f"{policy!r}: must be Never, {', '.join(RESTARTING)}")
    for k in rs:
        if k not in ("replicas", "restartPolicy", "template"):
            ctx.findings.miss(f"{path}.{k}", "no equivalent")


def _replica_restarts(
    replicas: dict[str, Any], roles: tuple[str, ...], trial: dict[str, Any], ctx: TrialContext
) -> None:
    """One note per restart policy that restarts, naming the replicas that have it."""
    by_policy: dict[Any, list[str]] = {}
    for role in roles:
        policy = (replicas.get(role) or {}).get("restartPolicy")
        if policy in RESTARTING:
            by_policy.setdefault(policy, []).append(role)
    for policy, named in by_policy.items():
        restarts(policy, f"the {' and '.join(named)} replica{'s' * (len(named) > 1)}", trial, ctx)
