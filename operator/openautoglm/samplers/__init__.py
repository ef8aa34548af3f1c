"""Sampler registry: a TuningJob's ``spec.algorithm.sampler`` name -> Optuna sampler factory.

Every entry passes the same contract test (tests/unit/test_samplers.py). To add one,
register it in ``_builtin.py`` (or a module of its own, imported here); the CRD enum and
``openautoglm validate`` pick it up.
"""

from __future__ import annotations

from openautoglm.samplers import _builtin  # noqa: F401  (registers the built-in entries)
from openautoglm.samplers._policy_gradient import PolicyGradientSampler  # (registers policy-gradient)
from openautoglm.samplers._registry import SAMPLERS, SamplerEntry, build_sampler, check, register

__all__ = ["SAMPLERS", "PolicyGradientSampler", "SamplerEntry", "build_sampler", "check", "register"]
