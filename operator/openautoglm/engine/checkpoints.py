"""Which trials' checkpoints stay (trial.checkpoint.keep), and where each trial's lives.

Every trial has one checkpoint directory, shared by its ranks and its runs (a retry or a requeue
resumes from it): ``trial-<N>`` under the job's directory (locally the job's work dir; in a
cluster ``<namespace>/<job>/`` on the claim). What stays is a function of the study alone, so the
backends remove the rest level-triggered: ``keep: best`` keeps the live trials' and the best's
(a new best lets the old one's go; several objectives: the Pareto front's), ``none`` only the
live trials', ``all`` everything.
"""

from __future__ import annotations

from openautoglm.engine.ledger import TrialLedger
from openautoglm.spec import TuningJob


def trial_dir_name(number: int) -> str:
    return f"trial-{number}"


def job_subpath(namespace: str, job: str) -> str:
    """The job's directory on the claim: one per namespace and job, so tenants sharing a claim
    (and jobs of one namespace) never meet."""
    return f"{namespace}/{job}"


def trial_subpath(namespace: str, job: str, number: int) -> str:
    return f"{job_subpath(namespace, job)}/{trial_dir_name(number)}"


def kept(job: TuningJob, ledger: TrialLedger) -> set[int] | None:
    """The trials whose checkpoints must stay; None: every one stays (nothing to remove)."""
    ck = job.spec.trial.checkpoint
    if ck is None or ck.keep == "all":
        return None
    keep = set(ledger.live)  # waiting and running trials: their runs resume from it
    if ck.keep == "best":
        if ledger.best is not None:
            keep.add(ledger.best.number)
        keep.update(t.number for t in ledger.front)
    return keep


def best_kept(job: TuningJob, number: int) -> bool:
    """Whether the best trial's checkpoint is kept once it has finished."""
    ck = job.spec.trial.checkpoint
    return ck is not None and ck.keep != "none"
