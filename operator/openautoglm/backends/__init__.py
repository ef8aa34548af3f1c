"""Backends run trials: local processes or Kubernetes pods. Both implement :class:`Backend`."""
from __future__ import annotations

from openautoglm.backends.base import Backend, TrialObservation, WorkerObservation

__all__ = ["Backend", "TrialObservation", "WorkerObservation"]
