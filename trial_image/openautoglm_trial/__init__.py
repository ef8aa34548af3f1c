"""OpenAutoGLM Tune trial runtime: one Horovod worker of one trial.

Run as ``python -m openautoglm_trial``; everything it needs arrives through the environment
described in :mod:`openautoglm_trial.contract`. Importing this package is cheap (no torch).
"""
from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
