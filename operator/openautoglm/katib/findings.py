"""What a conversion found: the fields it cannot map, the notes it makes, and its result.

Every section of :mod:`openautoglm.katib` reports into one :class:`Findings`, passed to it
explicitly: the order of the notes is the order in which the sections run, which is the order of
the fields in an Experiment, so the comments at the top of a converted TuningJob read top down.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from openautoglm.katib.values import UNBOUNDED, Bound, parsed

T = TypeVar("T", int, float)


@dataclasses.dataclass
class Conversion:
    """The result of :func:`openautoglm.katib.convert`.

    Attributes:
        job: the TuningJob document (camelCase, as a user writes it); without the unmapped fields.
        unmapped: ``(path in the Experiment, reason)`` for every field that cannot be mapped.
        notes: approximations and dropped fields whose meaning the operator already provides.
    """

    job: dict[str, Any]
    unmapped: list[tuple[str, str]]
    notes: list[str]

    @property
    def complete(self) -> bool:
        return not self.unmapped


class NotAnExperiment(ValueError):
    """The document is not a Katib Experiment."""


@dataclasses.dataclass
class Findings:
    """The unmapped fields (path, reason) and the notes of one conversion, in the order found."""

    unmapped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def miss(self, path: str, reason: str) -> None:
        """The field at ``path`` (in the Experiment) has no equivalent, for ``reason``."""
        self.unmapped.append((path, reason))

    def note(self, text: str) -> None:
        """An approximation, or a field dropped because the operator provides its meaning."""
        if text not in self.notes:
            self.notes.append(text)

    def forget_notes(self, prefix: str) -> None:
        """Withdraw the notes starting with ``prefix`` (a later section changed what they describe)."""
        self.notes = [n for n in self.notes if not n.startswith(prefix)]

    def number(
        self, path: str, value: Any, parse: Callable[[Any], T], bound: Bound = UNBOUNDED, *, what: str = ""
    ) -> T | None:
        """``value`` parsed and within ``bound``, or None after reporting why not at ``path``.

        ``what`` prefixes the reason (``"setting 'eta' of hyperband: "``).
        """
        try:
            return parsed(value, parse, bound)
        except ValueError as err:
            self.miss(path, f"{what}{err}")
            return None
