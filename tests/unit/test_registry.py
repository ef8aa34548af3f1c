"""One Registry class for every plugin family, and each family's names agreeing with the spec's."""

from __future__ import annotations

import typing

import pytest

from openautoglm import pruners, samplers, spec
from openautoglm.engine.metrics import METRIC_SOURCES
from openautoglm_trial.registry import Entry, Registry
from openautoglm_trial.supervisor.collectors import COLLECTORS

FAMILIES = {
    "sampler": samplers.SAMPLERS,
    "pruner": pruners.PRUNERS,
    "metric source": METRIC_SOURCES,
    "collector": COLLECTORS,
}


def test_every_plugin_family_is_a_registry():
    for family in (samplers.SAMPLERS, pruners.PRUNERS, METRIC_SOURCES, COLLECTORS):
        assert isinstance(family, Registry)
        assert all(isinstance(entry, Entry) and entry.name == name for name, entry in family.items())


@pytest.mark.parametrize("family", list(FAMILIES.values()), ids=list(FAMILIES))
def test_the_scaffold_refuses_a_second_registration_an_unknown_name_and_bad_settings(family):
    name = next(iter(family))
    before = dict(family)
    with pytest.raises(ValueError, match=f"{family.family} '{name}' is registered twice"):
        family.register(name, description="a second one")(lambda *args: None)
    assert dict(family) == before, "a refused registration leaves the family as it was"

    def builds() -> None:
        raise AssertionError("a refused choice is not built")

    unknown = family.check("no-such-plugin", {}, builds)
    assert unknown == [(family.family, family.unknown("no-such-plugin"))]
    assert "choose one of" in unknown[0][1] and name in unknown[0][1]
    with pytest.raises(KeyError, match="unknown .* 'no-such-plugin'; choose one of"):
        family["no-such-plugin"]
    problems = family.check(name, {"no_such_setting": 1}, builds)
    assert problems[0][0] == "settings.no_such_setting"
    assert f"unknown setting of the {name} {family.family}; allowed: " in problems[0][1]


class _Plugin:
    def __init__(self, rate: float = 0.1, rounds: int = 3, seed: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")


def test_the_scaffold_types_settings_from_the_plugin_class_and_asks_the_factory():
    family: Registry[Entry] = Registry("widget", engine_owned={"seed"})
    family.register("plain", description="plain", settings=_Plugin)(_Plugin)
    family.register("needs", description="needs a package", settings={"x"})(_Plugin)
    assert family["plain"].settings == {"rate", "rounds"} and family["plain"].target is _Plugin
    assert family.check("plain", {"rate": 0.5, "rounds": 2}, lambda: _Plugin(0.5, 2)) == []
    assert family.check("plain", {"rounds": True, "seed": 1}, _Plugin) == [
        ("settings.seed", "unknown setting of the plain widget; allowed: ['rate', 'rounds']"),
        ("settings.rounds", "must be int, got True"),
    ]
    assert family.check("plain", {"rate": -1}, lambda: _Plugin(-1)) == [
        ("settings", "rejected by the plain widget: rate must be > 0")
    ]

    def missing() -> None:
        raise ImportError("no module named 'thing'")

    assert family.check("needs", {"x": 1}, missing) == [("widget", "cannot be used here: no module named 'thing'")]


def test_the_spec_names_exactly_the_registered_metric_sources_and_collectors():
    assert set(typing.get_args(spec.MetricsSource.model_fields["source"].annotation)) == set(METRIC_SOURCES)
    # "native": a program that speaks the trial contract itself runs without a supervisor.
    kinds = set(typing.get_args(spec.Collector.model_fields["kind"].annotation))
    assert kinds - {"native"} == set(COLLECTORS) and set(spec.COLLECTOR_KINDS) == kinds


def test_a_name_registered_twice_is_refused_and_an_unknown_one_is_explained():
    family: Registry[int] = Registry("widget")
    family.add("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        family.add("a", 2)
    with pytest.raises(KeyError, match=r"unknown widget 'b'; choose one of \['a'\]"):
        family["b"]
    assert list(family) == ["a"] and len(family) == 1 and "a" in family
