"""One registry for every plugin family: samplers and pruners (openautoglm.samplers,
openautoglm.pruners), metric sources (openautoglm.engine.metrics) and the trial supervisor's
collectors (openautoglm_trial.collectors).

It lives in the trial runtime because the trial image holds only this package, and the engine
already depends on it (the trial contract). A family is a name -> entry mapping that refuses a name
registered twice and explains an unknown one; :func:`settings_problems` checks a plugin's
``settings`` (unknown keys, and types from the plugin class's own annotations), so a wrong
setting is refused by ``openautoglm validate`` instead of failing the first trial.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

E = TypeVar("E")


class Registry(Mapping[str, E], Generic[E]):
    """Plugins of one family by name, in registration order (the CRD's enums keep it)."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, E] = {}

    def add(self, name: str, entry: E) -> E:
        if name in self._entries:
            raise ValueError(f"{self.family} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def unknown(self, name: str) -> str:
        return f"unknown {self.family} {name!r}; choose one of {sorted(self._entries)}"

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


def type_problems(target: Callable | None, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
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
    family: str, name: str, allowed: frozenset[str] | set[str], target: Callable | None, settings: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """Unknown keys, then wrong types, of one plugin's settings, as (field path, message)."""
    problems = [
        (f"settings.{k}", f"unknown setting of the {name} {family}; allowed: {sorted(allowed)}")
        for k in settings
        if k not in allowed
    ]
    return problems + type_problems(target, settings)
