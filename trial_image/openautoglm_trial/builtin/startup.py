"""Where a worker's start-up goes: seconds per phase, from the exec of its process to its first
training step, reported in the termination message (``info.startup_seconds``) so that
bench/worker_startup.py and a user reading a trial's result see the same breakdown."""

from __future__ import annotations

import os
import time
from typing import Final

CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


def process_age() -> float:
    """Seconds since this process was exec'd (the kernel's start time, 10 ms resolution)."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19]) / CLK_TCK  # field 22: starttime
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError):
        return 0.0


class Startup:
    """Phase marks: ``mark(name)`` records the seconds since the previous mark."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self.phases: dict[str, float] = {"interpreter": process_age()}
        self.done = False

    def mark(self, phase: str) -> None:
        if self.done:
            return
        now = time.monotonic()
        self.phases[phase] = now - self._last
        self._last = now

    def finish(self, phase: str) -> None:
        """The last phase (the first training step): from here on nothing is start-up."""
        self.mark(phase)
        self.done = True

    def info(self) -> dict[str, dict[str, float]]:
        phases = {k: round(v, 4) for k, v in self.phases.items()}
        return {"startup_seconds": {**phases, "total": round(sum(self.phases.values()), 4)}}
