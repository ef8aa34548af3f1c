"""Names of the attributes the engine keeps in the Optuna study: the one place they are spelt.

The study (with the pods or processes) is the source of truth; these attributes are what
the engine adds to Optuna's own records. Dashboards and reports read them too.
"""

from __future__ import annotations

from typing import Final

# ---------------------------------------------------------------- study user attributes
#: Hashes of what makes trials comparable, one per immutable spec part (see study.py).
STUDY_FINGERPRINT: Final = "openautoglm:fingerprint"
STUDY_FINGERPRINTS: Final = "openautoglm:fingerprints"
STUDY_WARM_STARTED: Final = "openautoglm:warm_started"
#: Seconds the job has been driven (engine/driver.py keeps the clock).
STUDY_ELAPSED: Final = "openautoglm:elapsed_seconds"
#: Terminal phase, reason and message; unset while the job runs.
STUDY_PHASE: Final = "openautoglm:phase"
STUDY_REASON: Final = "openautoglm:reason"
STUDY_MESSAGE: Final = "openautoglm:message"
#: The spec generation applied last (observedGeneration) and the digest of that spec.
STUDY_GENERATION: Final = "openautoglm:generation"
STUDY_SPEC_DIGEST: Final = "openautoglm:spec_digest"
#: {"number", "path"(, "claim")}: where the best trial's checkpoint is kept (trial.checkpoint), for
#: the report and whoever reads the study without the cluster; written when the best changes.
STUDY_BEST_CHECKPOINT: Final = "openautoglm:best_checkpoint"

# ---------------------------------------------------------------- trial user attributes
TRIAL_PARAMS: Final = "params"  # everything the workers received (fixed values too)
TRIAL_LAUNCHED: Final = "launched"  # the backend has seen workers of this trial
TRIAL_STOP_REASON: Final = "stop_reason"  # why a trial ended early (pruned, diverged, ...)
TRIAL_FAIL_REASON: Final = "fail_reason"
#: Why each earlier run of a retried trial failed (trial.retries): its length is the number of
#: the run now going (0 = the first), so a retry is one write, and a pass cut short after it
#: launches that run rather than counting the retry twice.
TRIAL_RETRIED_BECAUSE: Final = "retried_because"
#: The run (>= 1) whose workers the backend has seen; "launched" is the first run's.
TRIAL_LAUNCHED_ATTEMPT: Final = "launched_attempt"
TRIAL_METRICS: Final = "metrics"  # final metrics from the termination message
#: Why the trial's metrics could not be read (its /metrics too large, too slow or malformed, or
#: fields of its termination message malformed); written when it changes.
TRIAL_METRICS_PROBLEM: Final = "metrics_problem"
TRIAL_SECONDS: Final = "seconds"
#: Why an enqueued trial was asked: "defaults" (startFromDefaults) or "warmStart".
TRIAL_ORIGIN: Final = "origin"
#: Why each earlier run of a trial was given back unscheduled (trial.pendingTimeoutSeconds): a
#: requeue is neither a failure nor a retry. With TRIAL_RETRIED_BECAUSE, its length makes the run
#: number (engine/reconcile.py attempt_of), so each run's pods get new names.
TRIAL_REQUEUED_BECAUSE: Final = "requeued_because"
#: Wall-clock time (time.time()) before which a requeued trial is not launched again (back-off).
TRIAL_REQUEUE_AFTER: Final = "requeue_after"
#: Why a rank of the trial's current run is not running yet ("Unschedulable: 0/3 nodes ...",
#: "ImagePullBackOff: ...", "SchedulingGated: ..."); None once every rank runs. Written on change.
TRIAL_WAITING: Final = "waiting"
#: [run, ISO time] when every rank of that run was first seen running: trial.timeoutSeconds
#: counts from there, not from the trial's creation (time queued is not time trained).
TRIAL_RUNNING_SINCE: Final = "running_since"
