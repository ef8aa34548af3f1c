"""Type checks of plugin settings (``algorithm.settings``, ``earlyStopping.settings``) from the
plugin class's own annotations, so ``n_ei_candidates: "x"`` is refused by `validate`
instead of failing the first trial that samples with it."""
from __future__ import annotations

import inspect
from typing import Any, Callable

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


def type_problems(target: Callable | None, settings: dict[str, Any]) -> list[tuple[str, str]]:
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
