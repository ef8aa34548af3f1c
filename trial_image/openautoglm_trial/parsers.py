"""Metric formats: ``name=value`` lines, JSON records, Prometheus expositions, push records.

Pure functions; the collectors (:mod:`.collectors`) feed them what the program emits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

from . import contract
from .recorder import Report

#: keys of a JSON record that are never metrics (Katib's File collector writes timestamps)
JSON_IGNORED_KEYS: Final = frozenset({"timestamp"})


def parse_text(line: str, pattern: re.Pattern[str]) -> dict[str, float]:
    """``name=value`` pairs of one line (Katib: group 1 the name, group 2 the value).

    Args:
        line: one line of output.
        pattern: the filter.

    Returns:
        The numeric pairs in order; a later pair of the same name wins.
    """
    values: dict[str, float] = {}
    for match in pattern.finditer(line):
        name, value = match.group(1).strip(), _number(match.group(2).strip())
        if name and value is not None:
            values[name] = value
    return values


def parse_json(line: str) -> dict[str, float]:
    """The numeric fields of one JSON object (numbers or numeric strings, as Katib writes).

    Args:
        line: one line holding a JSON object; NaN and Infinity are accepted.

    Returns:
        Field -> value; ``timestamp`` and non-numeric fields are left out.

    Raises:
        ValueError: the line is no JSON object.
    """
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object: {line[:80]!r}")
    values = {}
    for name, raw in record.items():
        value = _number(raw)
        if name not in JSON_IGNORED_KEYS and value is not None:
            values[str(name)] = value
    return values


def parse_exposition(text: str, wanted: Callable[[str], bool]) -> tuple[dict[str, float], float | None]:
    """Metric values of a Prometheus text exposition.

    Args:
        text: the scraped page.
        wanted: whether a metric name is of interest.

    Returns:
        (name -> value of every wanted gauge/counter/untyped sample (a counter ``x_total`` as
        ``x`` or ``x_total``, whichever is wanted), and of every
        ``openautoglm_trial_metric{metric=...}`` sample; the value of ``openautoglm_trial_epoch``
        if exported, else None).
    """
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    step = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == contract.METRIC_GAUGE and "metric" in sample.labels:
                values[sample.labels["metric"]] = sample.value
            elif sample.name == contract.EPOCH_GAUGE:
                step = sample.value
            elif family.type in ("gauge", "counter", "untyped", "unknown") and sample.name in (
                family.name,
                family.name + "_total",
            ):
                name = sample.name if wanted(sample.name) else family.name
                if wanted(name):
                    values.setdefault(name, sample.value)  # the first series of a family
    return values, step


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            return None
    return None


def text_parser(pattern: re.Pattern[str]) -> Callable[[str], Report | None]:
    """File lines parsed with the filter."""
    return lambda line: Report(parse_text(line, pattern))


def json_parser(line: str) -> Report | None:
    """File lines as JSON objects (Katib's File collector, JSON format)."""
    return Report(parse_json(line))


def push_parser(line: str) -> Report | None:
    """Lines of the push file: ``{"step": int | null, "metrics": {name: float}}``."""
    record = json.loads(line)
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
        raise ValueError('expected {"step": ..., "metrics": {...}}')
    values = {str(k): v for k, raw in record["metrics"].items() if (v := _number(raw)) is not None}
    return Report(values, _number(record.get("step")))
