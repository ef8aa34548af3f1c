"""Pruner registry: ``spec.earlyStopping.pruner`` name -> Optuna pruner factory.

Pruners decide from the intermediate values the engine scrapes from running trials
(one value per completed epoch); a pruned trial has all of its workers stopped.

Every entry passes the same contract test (tests/unit/test_pruners.py). To add one,
register it in ``_builtin.py``; the CRD enum and ``openautoglm validate`` pick it up.
"""

from __future__ import annotations

from openautoglm.pruners import _builtin  # noqa: F401  (registers the built-in entries)
from openautoglm.pruners._registry import PRUNERS, PrunerEntry, build_pruner, check, register

__all__ = ["PRUNERS", "PrunerEntry", "build_pruner", "check", "register"]
