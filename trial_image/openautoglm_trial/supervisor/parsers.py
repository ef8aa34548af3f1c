"""Metric formats: ``name=value`` lines, JSON records, Prometheus expositions, push records.

Pure functions; the collectors (:mod:`.collectors`) feed them what the program emits. Whatever
the program writes, a parser returns values or raises ValueError with a reason (the collectors
skip that line or scrape and log why): never another exception, which would end a collector's
thread and with it the trial's metrics.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final

from .. import boundedjson, contract
from ..result import json_number
from .recorder import Report

#: keys of a JSON record that are never metrics (Katib's File collector writes timestamps)
JSON_IGNORED_KEYS: Final = frozenset({"timestamp"})
#: The longest line parsed (the collectors skip longer ones): a JSON record or a printed line.
MAX_LINE: Final = 64 * 1024
#: The longest line a filter regex runs over: its time may grow with the square of the length
#: (Katib's default filter does on a long word without ``=``: 0.2 s at 5,000 characters, 30 s at
#: 64 KiB), and ``name=value`` pairs come in short lines.
MAX_TEXT_LINE: Final = 4096


def parse_text(line: str, pattern: re.Pattern[str]) -> dict[str, float]:
    """``name=value`` pairs of one line (Katib: group 1 the name, group 2 the value).

    Args:
        line: one line of output.
        pattern: the filter.

    Returns:
        The numeric pairs in order; a later pair of the same name wins. A line longer than
        MAX_TEXT_LINE has none.
    """
    values: dict[str, float] = {}
    if len(line) > MAX_TEXT_LINE:
        return values
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
        ValueError: the line is no JSON object (or is nested too deeply, or too long).
    """
    record = boundedjson.loads(line, max_chars=MAX_LINE)
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
        if exported and finite, clamped to +-MAX_STEP, else None).

    Raises:
        ValueError: the page is no exposition.
    """
    try:
        return _exposition(text, wanted)
    except Exception as exc:  # prometheus_client's parser meets text it was not written for
        raise ValueError(f"not a Prometheus exposition ({str(exc)[:120] or type(exc).__name__})") from None


def _exposition(text: str, wanted: Callable[[str], bool]) -> tuple[dict[str, float], float | None]:
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
    return values, _step(step)


def _number(raw: Any) -> float | None:
    """A JSON number (as the termination message reads one), or a number written as text."""
    if isinstance(raw, str) and len(raw) <= _MAX_NUMBER_TEXT:
        try:
            return float(raw)
        except ValueError:
            return None
    return json_number(raw)


#: A number written as text longer than this is no number (float() of megabytes is slow).
_MAX_NUMBER_TEXT: Final = 1024


def _step(raw: float | None) -> float | None:
    """A step as the recorder keys it: finite (a NaN would never equal itself and open a new step
    on every report), within what a study stores."""
    if raw is None or not math.isfinite(raw):
        return None
    return min(max(raw, -contract.MAX_STEP), contract.MAX_STEP)


def text_parser(pattern: re.Pattern[str]) -> Callable[[str], Report | None]:
    """File lines parsed with the filter."""
    return lambda line: Report(parse_text(line, pattern))


def json_parser(line: str) -> Report | None:
    """File lines as JSON objects (Katib's File collector, JSON format)."""
    return Report(parse_json(line))


def push_parser(line: str) -> Report | None:
    """Lines of the push file: ``{"step": int | null, "metrics": {name: float}}``.

    Raises:
        ValueError: the line is no such record.
    """
    record = boundedjson.loads(line, max_chars=MAX_LINE)
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
        raise ValueError('expected {"step": ..., "metrics": {...}}')
    values = {str(k): v for k, raw in record["metrics"].items() if (v := _number(raw)) is not None}
    return Report(values, _step(_number(record.get("step"))))
