"""One Registry class for every plugin family, and each family's names agreeing with the spec's."""

from __future__ import annotations

import typing

import pytest

from openautoglm import pruners, samplers, spec
from openautoglm.engine.metrics import METRIC_SOURCES
from openautoglm_trial import contract
from openautoglm_trial.collectors import COLLECTORS
from openautoglm_trial.registry import Registry


def test_every_plugin_family_is_a_registry():
    for family in (samplers.SAMPLERS, pruners.PRUNERS, METRIC_SOURCES, COLLECTORS):
        assert isinstance(family, Registry)


def test_the_spec_names_exactly_the_registered_metric_sources_and_collectors():
    assert set(typing.get_args(spec.MetricsSource.model_fields["source"].annotation)) == set(METRIC_SOURCES)
    # "native": a program that speaks the trial contract itself runs without a supervisor.
    assert set(spec.COLLECTOR_KINDS) - {"native"} == set(COLLECTORS) == set(contract.COLLECTOR_KINDS)


def test_a_name_registered_twice_is_refused_and_an_unknown_one_is_explained():
    family: Registry[int] = Registry("widget")
    family.add("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        family.add("a", 2)
    with pytest.raises(KeyError, match=r"unknown widget 'b'; choose one of \['a'\]"):
        family["b"]
    assert list(family) == ["a"] and len(family) == 1 and "a" in family
