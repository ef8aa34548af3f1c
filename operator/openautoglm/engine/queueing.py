"""Trials that wait for a busy cluster: why they wait, when a partly scheduled trial gives its
pods back, and how long a requeued trial stays out.

A Horovod trial needs every rank at once. Without a gang scheduler, a cluster with room for some
of a trial's pods runs those and leaves the rest Pending: the running ranks hold their CPUs or
GPUs in the rendezvous, and a few such trials deadlock the job. ``trial.pendingTimeoutSeconds``
bounds that: a run not wholly running that long after its launch is given back (every pod
deleted) and goes back to the queue, neither failed nor a retry. Under Kueue the ranks are one
pod group, gated until admitted whole: time spent gated is queueing, not pending, so the clock
starts when the gates are lifted.

The decisions here are pure (the reconciler applies them); :class:`PendingClock` keeps the start
of each run's pending stretch in memory: after an operator restart a pending run's clock starts
again (it can only wait longer, never be given back early).
"""

from __future__ import annotations

import dataclasses
from typing import Final

from openautoglm.engine.trials import TrialObservation

#: Waiting reasons of a container whose image cannot be pulled: waiting longer will not help.
IMAGE_PULL_REASONS: Final = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
#: A pod held back by a scheduling gate (Kueue's admission gate until its group is admitted).
GATED: Final = "SchedulingGated"
#: The longest a requeued trial stays out of the cluster before it is launched again.
MAX_REQUEUE_DELAY_SECONDS: Final = 600.0
#: The first back-off: at most this, or the pending timeout if shorter.
FIRST_REQUEUE_DELAY_SECONDS: Final = 30.0
#: The longest waiting text kept on a trial (the scheduler's message can name many nodes).
MAX_WAITING_CHARS: Final = 300


def reason_of(waiting: str | None) -> str | None:
    """'worker 1: ImagePullBackOff: Back-off pulling ...' -> 'ImagePullBackOff'."""
    if not waiting:
        return None
    parts = waiting.split(": ", 2)
    return parts[1] if len(parts) > 1 and parts[0].startswith("worker ") else parts[0]


def waiting_kind(waiting: str | None) -> str | None:
    """The reason, with the image-pull reasons as one ("ImagePull"): what a Warning is said once for."""
    reason = reason_of(waiting)
    return "ImagePull" if reason in IMAGE_PULL_REASONS else reason


def gated(obs: TrialObservation) -> bool:
    """Whether a rank is held back by a scheduling gate (queued in Kueue)."""
    return any(w.waiting is not None and w.waiting.startswith(GATED) for w in obs.workers)


def unpullable(obs: TrialObservation) -> str | None:
    """'worker R: <reason>: <message>' of the first rank whose image cannot be pulled."""
    for w in sorted(obs.workers, key=lambda w: w.rank):
        if w.waiting and w.waiting.split(":", 1)[0] in IMAGE_PULL_REASONS:
            return bounded(f"worker {w.rank}: {w.waiting}")
    return None


def bounded(text: str) -> str:
    return text if len(text) <= MAX_WAITING_CHARS else text[: MAX_WAITING_CHARS - 1] + "…"


def requeue_delay(requeues: int, pending_timeout: int, number: int) -> float:
    """Seconds a trial requeued for the ``requeues``-th time stays out: doubling from
    min(30 s, pendingTimeout) up to 10 min, spread by up to 40% by trial number so that trials
    given back together do not all come back together and collide again."""
    first = min(FIRST_REQUEUE_DELAY_SECONDS, float(pending_timeout))
    delay = min(first * 2 ** max(0, requeues - 1), MAX_REQUEUE_DELAY_SECONDS)
    return delay * (1.0 + (number % 5) / 10.0)


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do with a run that is not wholly running: wait, requeue it, or fail the trial."""

    action: str  # "wait" | "requeue" | "fail"
    reason: str


class PendingClock:
    """When each run's current pending stretch began (time.monotonic()), in memory."""

    def __init__(self) -> None:
        self._since: dict[tuple[int, int], float] = {}

    def decide(self, number: int, run: int, obs: TrialObservation, pending_timeout: int, now: float) -> Decision:
        waiting = bounded(obs.waiting or "pending")
        key = (number, run)
        if gated(obs):
            # Queued in Kueue: admitted whole or not at all, so no partial trial holds nodes.
            self._since.pop(key, None)
            return Decision("wait", waiting)
        since = self._since.setdefault(key, now)
        if now - since < pending_timeout:
            return Decision("wait", waiting)
        self._since.pop(key, None)
        image = unpullable(obs)
        if image is not None:
            return Decision("fail", f"{image} (still not running after trial.pendingTimeoutSeconds={pending_timeout})")
        return Decision(
            "requeue", f"not all ranks running after trial.pendingTimeoutSeconds={pending_timeout} ({waiting})"
        )

    def running(self, number: int) -> None:
        """The trial's run is wholly running (or over): its clock is done."""
        for key in [k for k in self._since if k[0] == number]:
            del self._since[key]
