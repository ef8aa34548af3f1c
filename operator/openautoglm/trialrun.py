"""How a trial runs on a shared cluster: where its checkpoints live and how its ranks are
scheduled together. Parts of ``spec.trial`` (the TuningJob model, spec.py).

A trial that trains for hours must not start again from epoch 0 when a pod is evicted, and the
best trial's weights must outlive its pods: ``trial.checkpoint`` gives every trial one directory
that all its ranks and all its runs share. A Horovod trial needs every rank at once: with
``trial.scheduling.kueue`` its pods are one Kueue pod group (admitted whole or not at all);
without a gang scheduler ``trial.pendingTimeoutSeconds`` releases a partly scheduled trial.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import Field

from openautoglm.specbase import _Model

#: A PersistentVolumeClaim's name: a DNS-1123 subdomain.
CLAIM_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: A LocalQueue's name travels as a label value: at most 63 characters of a DNS-1123 label.
QUEUE_NAME_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: A trial whose ranks are not all running this long after its launch gives its pods back.
DEFAULT_PENDING_TIMEOUT_SECONDS: Final = 600

#: What stays of the trials' checkpoints once they finish.
Keep = Literal["best", "all", "none"]


class Checkpoint(_Model):
    """Every trial gets ``OPENAUTOGLM_CHECKPOINT_DIR`` (and ``${trial.checkpointDir}`` in
    trial.command): the same directory for all its ranks and runs, so a retry resumes."""

    #: The PersistentVolumeClaim (in the job's namespace) holding ``<namespace>/<job>/trial-<N>``.
    #: Needed in a cluster (a pod's own disk dies with it); ``openautoglm tune`` keeps checkpoints
    #: under the job's work directory and ignores it.
    claim: Annotated[str, Field(min_length=1, max_length=253, pattern=CLAIM_RE.pattern)] | None = None
    #: best: the best trial's checkpoint stays (a new best removes the old one's), pruned and
    #: failed trials' go when they end; all: every trial's stays; none: each goes when its trial ends.
    keep: Keep = "best"


class Kueue(_Model):
    #: The LocalQueue (in the job's namespace) the trials' pod groups are submitted to.
    queue_name: Annotated[str, Field(min_length=1, max_length=63, pattern=QUEUE_NAME_RE.pattern)]


class Scheduling(_Model):
    #: Run every trial's ranks as one Kueue pod group: admitted whole (their scheduling gates
    #: lifted together) or held back whole, so no partial trial holds nodes.
    kueue: Kueue | None = None
