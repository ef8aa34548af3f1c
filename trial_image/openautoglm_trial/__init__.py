"""OpenAutoGLM Tune trial runtime: one Horovod worker of one trial.

Run as ``python -m openautoglm_trial``; everything it needs arrives through the environment
described in :mod:`openautoglm_trial.contract`. With ``OPENAUTOGLM_COMMAND`` set it supervises
your own program (:mod:`openautoglm_trial.supervisor`); such a program may use
:func:`params`, :func:`report` (``collector: push``) and :func:`checkpoint_dir`. Importing this
package is cheap (standard library only: no torch, no prometheus-client).
"""

from __future__ import annotations

from .client import checkpoint_dir, params, report

__all__ = ["__version__", "checkpoint_dir", "params", "report"]

__version__ = "0.1.0"
