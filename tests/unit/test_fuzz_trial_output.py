"""Every parser of what a trial writes, fuzzed: random bytes, huge and non-finite numbers, deep
nesting and odd unicode never raise (but the ValueError a trial-side parser documents), never
hold more than a few MiB for inputs up to the read limits, and never yield a step the study
cannot store (issue 21, case 10 and "Fuzzed trial output").

On main: ``+Inf`` as the epoch raised OverflowError, 2,000 nested brackets RecursionError, and
``"epochs": 1e300`` became a 301-digit step.
"""

from __future__ import annotations

import json
import math
import re
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openautoglm.engine.metrics import SCRAPE_LIMIT_BYTES, Reading, parse_exposition, read_vector
from openautoglm_trial import contract
from openautoglm_trial.contract import MAX_STEP
from openautoglm_trial.result import READ_LIMIT, TrialResult, encode
from openautoglm_trial.supervisor import parsers as trial_parsers

FUZZ = settings(
    max_examples=300,
    derandomize=True,  # the same examples on every run: CI is deterministic
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
MiB = 1024 * 1024
FILTER = re.compile(contract.DEFAULT_METRIC_FILTER)

# ----------------------------------------------------------------------------- what trials write
numbers_text = st.sampled_from(
    ["+Inf", "-Inf", "Inf", "NaN", "nan", "1e300", "-1e300", "1e400", "1e-400", "0x10", "1_0", "", "٣", "1" * 5000]
) | st.floats(allow_nan=True, allow_infinity=True).map(repr)
numbers_json = st.sampled_from(["Infinity", "-Infinity", "NaN", "1e999", "1" * 400, "1" * 5000, "-0", "1e300"]) | (
    st.integers(min_value=-(10**500), max_value=10**500).map(str)
)
odd_text = st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=40) | st.sampled_from(
    ["\u0000", "\ufeff", "\u202e", "\ud7ff", '"\\', "{", "]", "\n", "\r", "é" * 30, "𝔁" * 10]
)
nesting = st.integers(min_value=1, max_value=3000).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, "{" * n, '{"a":' * n + "1" + "}" * n, "[" * n])
)


def json_value(depth: int = 3) -> st.SearchStrategy[str]:
    """JSON-ish text (sometimes broken) with hostile numbers, strings and nesting."""
    scalar = numbers_json | odd_text.map(json.dumps) | st.sampled_from(["null", "true", "false", '"x"', "{", "["])
    if depth == 0:
        return scalar | nesting
    inner = json_value(depth - 1)
    return (
        scalar
        | nesting
        | st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
        | st.dictionaries(odd_text, inner, max_size=4).map(
            lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}"
        )
    )


RESULT_KEYS = ["status", "reason", "metrics", "best", "history", "epochs", "rank", "seconds", "info"]
termination_messages = (
    st.dictionaries(st.sampled_from(RESULT_KEYS) | odd_text, json_value(2), max_size=9).map(
        lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}"
    )
    | json_value()
    | st.text(max_size=200)
)
exposition_lines = st.tuples(
    st.sampled_from([contract.EPOCH_GAUGE, contract.METRIC_GAUGE, "accuracy", "loss_total", "# TYPE x gauge", "#"]),
    st.sampled_from(["", '{metric="score"}', '{metric="loss"}', "{", '{metric="\\"}', '{metric="é\\n"}'])
    | odd_text.map(lambda s: '{metric="' + s.replace("\\", "").replace('"', "") + '"}'),
    numbers_text,
    st.sampled_from(["", " 1700000000000", " x", '  # {a="b"} 1']),
).map(lambda t: f"{t[0]}{t[1]} {t[2]}{t[3]}")
expositions = st.lists(exposition_lines | odd_text, max_size=12).map("\n".join) | st.binary(max_size=300).map(
    lambda b: b.decode("utf-8", "replace")
)


def peak_bytes(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------------------- the engine's parsers
def check_reading(reading: Reading | None) -> None:
    if reading is None:
        return
    if reading.problem is not None:
        assert reading.values == {} and isinstance(reading.problem, str) and len(reading.problem) < 300
        return
    assert 1 <= reading.epoch <= MAX_STEP and isinstance(reading.epoch, int)
    assert all(isinstance(k, str) and math.isfinite(v) for k, v in reading.values.items())


@FUZZ
@given(expositions)
def test_the_engines_exposition_parser_never_raises(text: str) -> None:
    check_reading(parse_exposition(text))


@FUZZ
@given(st.binary(max_size=500))
def test_the_engines_scrape_path_reads_any_bytes(body: bytes) -> None:
    check_reading(parse_exposition(body.decode("utf-8", "replace")))  # as ScrapeSource.read decodes


def test_an_infinite_or_huge_epoch_is_a_problem_or_clamped() -> None:
    inf = parse_exposition("openautoglm_trial_epoch +Inf\n")
    assert inf is not None and inf.problem == "/metrics: openautoglm_trial_epoch is inf, not a finite number"
    huge = parse_exposition('openautoglm_trial_epoch 1e300\nopenautoglm_trial_metric{metric="score"} 1\n')
    assert huge == Reading(MAX_STEP, {"score": 1.0})


@FUZZ
@given(json_value() | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_the_prometheus_answer_parser_never_raises(text: str) -> None:
    for doc in (text, '{"status":"success","data":{"result":' + text + "}}"):
        samples, problem = read_vector(doc.encode())
        assert problem is None or (samples == [] and isinstance(problem, str))
        for s in samples:
            assert math.isfinite(float(s["value"][1])) and all(isinstance(v, str) for v in s["metric"].values())


@FUZZ
@given(termination_messages)
def test_a_termination_message_reads_without_raising(text: str) -> None:
    result, problem = TrialResult.read(text)
    assert problem is None or isinstance(problem, str)
    if result is None:
        return
    assert 0 <= result.epochs <= MAX_STEP and 0 <= result.rank <= MAX_STEP and math.isfinite(result.seconds)
    for values in (result.metrics, result.best):
        assert all(isinstance(v, float) and math.isfinite(v) for v in values.values())
    for curve in result.history.values():
        assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in curve)
    assert len(result.status) <= 256 and (result.reason is None or len(result.reason) <= 515)


@FUZZ
@given(
    st.dictionaries(st.text(max_size=8), st.floats(), max_size=4),
    st.lists(st.floats() | st.none(), max_size=30),
    st.integers(min_value=0, max_value=MAX_STEP),
    st.dictionaries(st.text(max_size=8), st.text(max_size=2000), max_size=3),
)
def test_the_runtimes_own_messages_read_back_without_a_problem(metrics, curve, epochs, info) -> None:
    text = encode(TrialResult("completed", "r" * 600, metrics, metrics, {"score": curve}, epochs, 1, 2.5, info))
    result, problem = TrialResult.read(text)
    assert result is not None and problem is None and result.epochs == epochs


# ----------------------------------------------------------------------------- the trial runtime's parsers
def only_value_errors(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ValueError as err:  # what the collectors catch: the line is skipped with this reason
        assert str(err)
        return None


@FUZZ
@given(st.lists(exposition_lines | odd_text, max_size=12).map("\n".join) | json_value())
def test_the_runtimes_line_parsers_raise_nothing_but_value_errors(line: str) -> None:
    text_values = trial_parsers.parse_text(line, FILTER)
    assert all(isinstance(v, float) for v in text_values.values())
    only_value_errors(lambda: trial_parsers.parse_json(line))
    report = only_value_errors(lambda: trial_parsers.push_parser(line))
    if report is not None and report.step is not None:
        assert math.isfinite(report.step) and abs(report.step) <= MAX_STEP
    values_step = only_value_errors(lambda: trial_parsers.parse_exposition(line, lambda name: True))
    if values_step is not None and values_step[1] is not None:
        assert math.isfinite(values_step[1]) and abs(values_step[1]) <= MAX_STEP


@FUZZ
@given(numbers_json, numbers_json)
def test_push_reports_with_hostile_numbers(step: str, value: str) -> None:
    line = f'{{"step": {step}, "metrics": {{"loss": {value}}}}}'
    report = only_value_errors(lambda: trial_parsers.push_parser(line))
    if report is not None:
        assert report.step is None or (math.isfinite(report.step) and abs(report.step) <= MAX_STEP)


# ----------------------------------------------------------------------------- memory at the limits
def line_of(n: int, unit: str) -> str:
    return (unit * (n // len(unit) + 1))[:n]


@pytest.mark.parametrize(
    ("name", "parse", "text"),
    [
        (
            "1 MiB of distinct metric samples",
            parse_exposition,
            "".join(f'openautoglm_trial_metric{{metric="m{i}"}} {i}\n' for i in range(30_000))[:SCRAPE_LIMIT_BYTES],
        ),
        ("1 MiB of empty lines", parse_exposition, "\n" * SCRAPE_LIMIT_BYTES),
        ("1 MiB of other samples", parse_exposition, line_of(SCRAPE_LIMIT_BYTES, "other_metric 1\n")),
        ("1 MiB of brackets", lambda t: read_vector(t.encode()), "[" * SCRAPE_LIMIT_BYTES),
        ("900-deep arrays", lambda t: read_vector(t.encode()), "[" * 900 + "]" * 900),
        (
            "1 MiB of one long list",
            lambda t: read_vector(t.encode()),
            "[" + ",".join(["0"] * ((SCRAPE_LIMIT_BYTES - 2) // 2)) + "]",
        ),
        ("64 KiB message", TrialResult.read, '{"info":[' + line_of(READ_LIMIT - 20, "1,") + "1]}"),
        ("64 KiB of nesting", TrialResult.read, "[" * READ_LIMIT),
        ("64 KiB line", lambda t: only_value_errors(lambda: trial_parsers.push_parser(t)), "[" * 65536),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)
def test_memory_stays_bounded_at_the_read_limits(name: str, parse: Callable[[str], Any], text: str) -> None:
    peak = peak_bytes(lambda: parse(text))
    assert peak < 24 * MiB, f"{name}: {peak / MiB:.1f} MiB"
