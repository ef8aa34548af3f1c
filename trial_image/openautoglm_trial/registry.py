"""The one plugin scaffold, for every family: an entry per plugin (its factory builds it), the
decorator that registers it, and the check of a user's choice and settings.

The families are the samplers and pruners (openautoglm.samplers, openautoglm.pruners), the metric
sources (openautoglm.engine.metrics) and the trial supervisor's collectors
(openautoglm_trial.supervisor.collectors). Each is a :class:`Registry` of :class:`Entry` objects
filled by ``@FAMILY.register(name, ...)`` beside the plugin's code, so adding a plugin is writing it
and decorating it: ``openautoglm validate`` and the error messages know it at once, and
``python -m openautoglm.crd`` writes it into the CRD's enums.

It lives in the trial runtime because the trial image holds only this package, and the engine
already depends on it (the trial contract). A registry refuses a name registered twice and explains
an unknown one; :meth:`Registry.check` refuses settings a plugin does not take (unknown keys, and
types from the plugin class's own annotations) and those its factory rejects, so a wrong setting is
refused by ``openautoglm validate`` instead of failing the first trial.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Generic, TypeVar, overload

#: One problem as (field path, message), as validation reports it.
Problem = tuple[str, str]

F = TypeVar("F", bound=Callable[..., Any])
#: What a family's factories are; a registered factory is returned unchanged.
Factory = TypeVar("Factory", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Entry(Generic[F]):
    """A registered plugin: its factory, and the settings a user may give it."""

    name: str
    factory: F
    description: str = ""
    #: Keys a user may set in the plugin's ``settings`` (samplers and pruners; the others take none).
    settings: frozenset[str] = frozenset()
    #: The class whose keyword arguments the settings are (for type checks), if any.
    target: Callable[..., Any] | None = None


E = TypeVar("E", bound=Entry[Any])


class Registry(Mapping[str, E]):
    """Plugins of one family by name, in registration order (the CRD's enums keep it).

    Args:
        family: what a plugin of it is called in messages ("sampler", "metric source").
        entry: the entry class, where the family records more than :class:`Entry` does.
        engine_owned: keyword arguments of a plugin class that are no user settings (the engine
            passes them, or they take Python objects).
    """

    @overload
    def __init__(self: Registry[Entry[Any]], family: str, *, engine_owned: Collection[str] = ()) -> None: ...

    @overload
    def __init__(self, family: str, entry: Callable[..., E], *, engine_owned: Collection[str] = ()) -> None: ...

    def __init__(self, family: str, entry: Callable[..., Any] = Entry, *, engine_owned: Collection[str] = ()) -> None:
        self.family = family
        self._entry = entry
        self._engine_owned = frozenset(engine_owned)
        self._entries: dict[str, E] = {}

    def add(self, name: str, entry: E) -> E:
        if name in self._entries:
            raise ValueError(f"{self.family} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(
        self, name: str, *, description: str, settings: Collection[str] | Callable[..., Any] = (), **extra: Any
    ) -> Callable[[Factory], Factory]:
        """Decorator registering a factory (a function or a class) under ``name``.

        Args:
            settings: the keys a user may set, or a class whose keyword arguments (less the
                family's engine-owned ones) they are; its annotations then type them.
            extra: what the family's entry class records besides (a sampler: multi_objective).
        """
        target = settings if callable(settings) else None
        allowed = self._kwargs_of(settings) if callable(settings) else frozenset(settings)

        def deco(factory: Factory) -> Factory:
            entry = self._entry(
                name=name, factory=factory, description=description, settings=allowed, target=target, **extra
            )
            self.add(name, entry)
            return factory

        return deco

    def _kwargs_of(self, target: Callable[..., Any]) -> frozenset[str]:
        return frozenset(n for n in inspect.signature(target).parameters if n not in self._engine_owned)

    def unknown(self, name: str) -> str:
        return f"unknown {self.family} {name!r}; choose one of {sorted(self._entries)}"

    def check(
        self,
        name: str,
        settings: Mapping[str, Any],
        build: Callable[[], object],
        *,
        fits: Callable[[E], list[Problem]] = lambda entry: [],
    ) -> list[Problem]:
        """Problems with choosing ``name`` with ``settings``, as (field path, message).

        In order, each step only if the ones before found nothing: the name; the settings' keys
        and types, and ``fits`` (the family's own conditions on the entry); then ``build`` (the
        factory with these settings), whose ImportError means a missing package and whose
        TypeError or ValueError means settings the plugin itself rejects.
        """
        if name not in self._entries:
            return [(self.family, self.unknown(name))]
        entry = self._entries[name]
        problems = settings_problems(self.family, name, entry.settings, entry.target, settings) + fits(entry)
        if problems:
            return problems
        try:
            build()
        except ImportError as err:
            return [(self.family, f"cannot be used here: {err}")]
        except (TypeError, ValueError) as err:
            return [("settings", f"rejected by the {name} {self.family}: {err}")]
        return []

    def __getitem__(self, name: str) -> E:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self.unknown(name)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.family!r}, {list(self._entries)})"


# ----------------------------------------------------------------------------- settings
_SIMPLE: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _accepts(annotation: str, value: Any) -> bool | None:
    """True/False if the annotation is made of simple types, None if we cannot tell."""
    parts = [p.strip() for p in annotation.split("|")]
    kinds: list[tuple[type, ...]] = []
    for p in parts:
        if p == "None":
            if value is None:
                return True
            continue
        if p not in _SIMPLE:
            return None
        kinds.append(_SIMPLE[p])
    for k in kinds:
        # bool is an int in Python; a YAML `true` is no number of trials.
        if isinstance(value, k) and not (isinstance(value, bool) and bool not in k):
            return True
    return False


def type_problems(target: Callable[..., Any] | None, settings: Mapping[str, Any]) -> list[Problem]:
    """(``settings.KEY``, message) for each setting whose type the target's annotation refuses."""
    if target is None:
        return []
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return []
    problems = []
    for key, value in settings.items():
        p = params.get(key)
        if p is None:
            continue
        ann = p.annotation.__name__ if isinstance(p.annotation, type) else p.annotation
        if not isinstance(ann, str):
            continue  # typing constructs we do not interpret; the plugin itself checks
        if _accepts(ann, value) is False:
            problems.append((f"settings.{key}", f"must be {ann.replace(' | ', ' or ')}, got {value!r}"))
    return problems


def settings_problems(
    family: str,
    name: str,
    allowed: Collection[str],
    target: Callable[..., Any] | None,
    settings: Mapping[str, Any],
) -> list[Problem]:
    """Unknown keys, then wrong types, of one plugin's settings, as (field path, message)."""
    problems = [
        (f"settings.{k}", f"unknown setting of the {name} {family}; allowed: {sorted(allowed)}")
        for k in settings
        if k not in allowed
    ]
    return problems + type_problems(target, settings)
