"""Katib's scalar values: numbers written as strings, names the TuningJob must accept.

The Katib API carries most numbers as strings (``feasibleSpace.min: "0.01"``,
``algorithmSettings[].value: "10"``) and users write some as YAML numbers; both parse here.
:func:`parsed` is the one place that says whether such a value is a number within its bound, with
the message the conversion reports when it is not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

from openautoglm.spec import MAX_NAME_LENGTH

T = TypeVar("T", int, float)


def number(value: Any) -> int | float:
    """A Katib number (a string in the API, sometimes a YAML number): int when written as one."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, (int, float)):
        v: int | float = value
    else:
        text = str(value).strip()
        try:
            v = int(text)
        except ValueError:
            v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"not a finite number: {value!r}")
    return v


def integer(value: Any) -> int:
    """A Katib number that must be whole (``"3"``, ``3``, ``3.0``)."""
    v = number(value)
    if v != int(v):
        raise ValueError(f"not an integer: {value!r}")
    return int(v)


def real(value: Any) -> float:
    """A Katib number as a float."""
    return float(number(value))


def truncated(value: Any) -> int:
    """A Katib number cut to an int, as Katib's hyperband service reads ``eta`` (``int(float(eta))``)."""
    return int(real(value))


def is_number(value: Any, kind: str) -> bool:
    """Whether ``value`` parses as an ``int`` (kind ``"int"``) or any number."""
    try:
        integer(value) if kind == "int" else number(value)
        return True
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class Bound:
    """Where a number must lie: ``low <= v <= high``, ``v > above``; ``shown`` writes the range."""

    low: float | None = None
    high: float | None = None
    above: float | None = None
    shown: str | None = None

    def check(self, v: float, raw: Any) -> None:
        if self.low is not None and self.high is not None:
            if not self.low <= v <= self.high:
                raise ValueError(f"must be in {self.shown or f'[{self.low}, {self.high}]'}, got {raw}")
        elif self.low is not None and v < self.low:
            raise ValueError(f"must be >= {self.low}, got {raw}")
        if self.above is not None and not v > self.above:
            raise ValueError(f"must be > {self.above}, got {raw}")


#: Any finite number.
UNBOUNDED: Final = Bound()


def parsed(value: Any, parse: Callable[[Any], T], bound: Bound = UNBOUNDED) -> T:
    """``parse(value)`` within ``bound``; ValueError saying which is not the case."""
    v = parse(value)
    bound.check(v, value)
    return v


def dns_name(name: str) -> str:
    """A TuningJob name (DNS label, at most MAX_NAME_LENGTH characters) derived from ``name``."""
    out = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", name.lower())).strip("-")
    if not out or not out[0].isalpha():
        out = ("k-" + out).rstrip("-")
    if len(out) > MAX_NAME_LENGTH:
        # A hash of the full name keeps two long names with the same prefix apart.
        out = out[: MAX_NAME_LENGTH - 7].rstrip("-") + "-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return out


def walk_strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string under ``node`` with its path (``spec.volumes[0].name``)."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from walk_strings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_strings(v, f"{path}[{i}]")
