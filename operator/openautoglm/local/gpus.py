"""Which GPUs each local worker sees: ``CUDA_VISIBLE_DEVICES`` per worker, never all to every trial.

In a cluster the device plugin gives each pod the GPUs of its ``nvidia.com/gpu`` limit. Locally,
``openautoglm tune`` plays that part: the GPUs it may share out are ``--gpus`` (indices or UUIDs),
else the runner's own ``CUDA_VISIBLE_DEVICES``, else those ``nvidia-smi`` lists (by UUID, which no
device ordering can misread); each worker gets as many as its ``nvidia.com/gpu`` limit says (one
when the job names none), the least used first, taken round robin so that no GPU is shared by two
live workers while enough are free. With none to share a worker gets ``CUDA_VISIBLE_DEVICES=""``:
the CPU, even on a machine whose GPUs the runner could not see.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from typing import Final

from openautoglm.spec import TuningJob, parse_quantity

CUDA_VISIBLE_DEVICES: Final = "CUDA_VISIBLE_DEVICES"
#: The extended resource a trial's GPUs are asked with (trial.resources.limits).
GPU_RESOURCE: Final = "nvidia.com/gpu"
#: ``--gpus none``: share out no GPU (every worker on the CPU).
NONE: Final = "none"
_NVIDIA_SMI_SECONDS: Final = 10.0
#: A worker: (trial number, rank).
Worker = tuple[int, int]


def visible_gpus(option: str | None, environ: Mapping[str, str]) -> list[str]:
    """The GPUs local workers may be given: ``option`` (``--gpus``: comma-separated indices or
    UUIDs; ``none`` or empty for none), else ``CUDA_VISIBLE_DEVICES`` of ``environ``, else the
    GPUs of ``nvidia-smi`` (none without it)."""
    if option is not None:
        return [] if option.strip().lower() == NONE else _entries(option)
    if CUDA_VISIBLE_DEVICES in environ:
        return _entries(environ[CUDA_VISIBLE_DEVICES])
    return _nvidia_smi()


def _entries(text: str) -> list[str]:
    """The devices of a CUDA_VISIBLE_DEVICES value; CUDA ignores everything after an invalid one
    (``-1`` is the usual way to hide all), so do we."""
    out: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item or item.startswith("-"):
            break
        out.append(item)
    return out


def _nvidia_smi() -> list[str]:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=_NVIDIA_SMI_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []  # no driver, no GPU: workers run on the CPU
    if done.returncode != 0:
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip().startswith("GPU-")]


def gpus_per_worker(job: TuningJob) -> int:
    """A worker's GPUs: its ``nvidia.com/gpu`` limit, one when the job names none."""
    _, limits = job.spec.trial.resources.effective()
    if GPU_RESOURCE not in limits:
        return 1
    return int(parse_quantity(limits[GPU_RESOURCE]))


class GpuPool:
    """GPUs handed to live workers; a worker's are free again once it is gone."""

    def __init__(self, gpus: list[str]) -> None:
        self.gpus = list(gpus)
        self._held: dict[Worker, tuple[str, ...]] = {}
        #: Where the next round robin starts: after the last GPU handed out.
        self._next = 0

    def take(self, worker: Worker, count: int, alive: Callable[[Worker], bool]) -> str:
        """The ``CUDA_VISIBLE_DEVICES`` of a worker being started: ``count`` distinct GPUs, the
        least held by live workers (``alive``) first, ties taken round robin; ``""`` for none."""
        self._held = {w: held for w, held in self._held.items() if w != worker and alive(w)}
        n = len(self.gpus)
        if n == 0 or count <= 0:
            self._held[worker] = ()
            return ""
        load = dict.fromkeys(self.gpus, 0)
        for held in self._held.values():
            for gpu in held:
                if gpu in load:
                    load[gpu] += 1
        order = sorted(range(n), key=lambda i: (load[self.gpus[i]], (i - self._next) % n))
        picked = sorted(order[: min(count, n)], key=lambda i: (i - self._next) % n)
        self._next = (picked[-1] + 1) % n
        self._held[worker] = tuple(self.gpus[i] for i in picked)
        return ",".join(self._held[worker])

    def restore(self, worker: Worker, value: str) -> None:
        """A worker adopted after a restart holds what it was given (its recorded value)."""
        self._held[worker] = tuple(_entries(value))

    def held(self) -> dict[Worker, tuple[str, ...]]:
        return dict(self._held)
