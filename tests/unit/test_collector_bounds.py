"""The trial supervisor's collectors skip a malformed or overlong line with a logged reason and go
on collecting (issue 21): on main a nested push record raised RecursionError in the collector's
thread (its ``except ValueError`` missed it), which ended the trial's metrics; an overflowing
integer raised OverflowError; a line without a newline was held in memory whole.
"""

from __future__ import annotations

import io
import logging
import re

from openautoglm_trial import contract
from openautoglm_trial.supervisor.collectors import FileCollector, PushCollector, StreamCollector, bounded_lines
from openautoglm_trial.supervisor.parsers import MAX_LINE, json_parser, text_parser
from openautoglm_trial.supervisor.recorder import Report

GOOD = b'{"step": 1, "metrics": {"loss": 0.5}}\n'
HOSTILE = [
    b"[" * 2000 + b"\n",  # RecursionError on main
    b'{"step": 1, "metrics": {"loss": ' + b"9" * 400 + b"}}\n",  # OverflowError on main
    b'{"step": 1e999, "metrics": {"loss": 1}}\n',  # an infinite step: no step
    b"{bad\n",
    b"\xff\xfe\x00garbage\n",
    b'{"step": 1, "metrics": ' + b"x" * (3 * MAX_LINE) + b"}\n",  # longer than a line may be
]


def test_the_push_collector_skips_hostile_lines_and_keeps_collecting(caplog) -> None:
    reports: list[Report] = []
    collector = PushCollector(reports.append)
    try:
        with open(collector.path, "ab") as f:
            f.write(b"".join(HOSTILE) + GOOD)
        with caplog.at_level(logging.WARNING):
            collector._read(final=True)  # one read on this thread: it must not raise
    finally:
        collector.cleanup()
    assert [r.values for r in reports] == [{"loss": float("inf")}, {"loss": 1.0}, {"loss": 0.5}]
    assert reports[1].step is None  # 1e999 is no step the recorder can key
    skipped = [r.getMessage() for r in caplog.records if "skipping a malformed line" in r.getMessage()]
    assert skipped and "nested deeper than 64 levels" in skipped[0]


def test_a_line_longer_than_the_limit_is_skipped_even_when_it_arrives_in_pieces(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"")
    reports: list[Report] = []
    collector = FileCollector(reports.append, path, json_parser, "collector file (json)")
    with open(path, "ab") as f:
        for _ in range(4):  # a line that grows by MAX_LINE between two polls, then ends
            f.write(b"x" * MAX_LINE)
            f.flush()
            collector._read()
        f.write(b'}\n{"accuracy": 0.9}\n')
    collector._read(final=True)
    assert [r.values for r in reports] == [{"accuracy": 0.9}]
    assert len(collector._partial) <= MAX_LINE


def test_text_lines_longer_than_a_filter_is_run_over_give_no_values() -> None:
    parse = text_parser(re.compile(contract.DEFAULT_METRIC_FILTER))
    assert parse("accuracy=0.5 loss=1e400").values == {"accuracy": 0.5, "loss": float("inf")}
    assert parse("a" * 100_000).values == {}  # Katib's filter is quadratic on a long word


def test_a_pipe_line_without_a_newline_is_read_in_bounded_pieces() -> None:
    stream = io.BytesIO(b"epoch=1 accuracy=0.5\n" + b"y" * (3 * MAX_LINE + 5) + b"\nepoch=2 accuracy=0.6\nlast=1")
    pieces = list(bounded_lines(stream))
    assert all(len(p) <= MAX_LINE for p, _ in pieces)
    assert [p for p, whole in pieces if whole] == [b"epoch=1 accuracy=0.5\n", b"epoch=2 accuracy=0.6\n", b"last=1"]
    reports: list[Report] = []
    collector = StreamCollector(reports.append, re.compile(contract.DEFAULT_METRIC_FILTER))
    collector.attach(io.BytesIO(b"y" * (2 * MAX_LINE) + b"=1\nepoch=3 accuracy=0.7\n"))
    collector._run()
    assert [r.values for r in reports] == [{"epoch": 3.0, "accuracy": 0.7}]
