"""Collectors: how the supervisor reads the metrics of a program that knows nothing of us.

* ``stdout``: ``name=value`` pairs in the lines the program prints (Katib's StdOut collector);
  every line is echoed to the supervisor's stdout so the logs stay complete.
* ``file``: the same lines, or one JSON object per line, appended to a file the program writes
  (Katib's File collector); the file may appear late, be truncated or be replaced.
* ``prometheus``: the program's own /metrics, scraped every second.
* ``push``: ``openautoglm_trial.report(step, **metrics)`` appends JSON lines to a private file
  (``OPENAUTOGLM_PUSH_FILE``) that the supervisor tails: no port, no socket, nothing to lose
  when the program exits right after its last report.

Every collector hands :class:`~.recorder.Report` objects to a sink, from its own thread; the
formats themselves are parsed in :mod:`.parsers`.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, cast

from .. import boundedhttp, contract
from ..errors import SettingsError
from ..registry import Entry, Registry
from .parsers import MAX_LINE, json_parser, parse_exposition, parse_text, push_parser, text_parser
from .recorder import GRAD_NORM_NAMES, Report

log = logging.getLogger(__name__)

Sink = Callable[[Report], None]

FORMATS: Final = ("text", "json")
POLL_SECONDS: Final = 0.2
SCRAPE_INTERVAL_SECONDS: Final = 1.0
SCRAPE_TIMEOUT_SECONDS: Final = 2.0
#: the largest /metrics page of the program read (a program exporting more is a bug of its own)
SCRAPE_LIMIT_BYTES: Final = 4 * 1024 * 1024
#: bytes of a metrics file read at once (a file that grew by gigabytes is read in steps)
FILE_READ_BYTES: Final = 1024 * 1024
#: malformed lines of a file logged (then only counted)
BAD_LINES_LOGGED: Final = 3
#: a reader still blocked this long after the program exited is abandoned (a grandchild
#: holding the pipe open must not keep the trial from ending)
DRAIN_SECONDS: Final = 5.0


@dataclass(frozen=True)
class CollectorSpec:
    """``OPENAUTOGLM_COLLECTOR``, parsed and checked."""

    kind: str = "stdout"
    filter: re.Pattern[str] = re.compile(contract.DEFAULT_METRIC_FILTER)
    path: str | None = None
    format: str = "text"
    port: int | None = None
    metrics_path: str = "/metrics"
    step_metric: str = contract.DEFAULT_STEP_METRIC

    @classmethod
    def parse(cls, raw: Any) -> CollectorSpec:
        """Check the decoded JSON object.

        Args:
            raw: the decoded ``OPENAUTOGLM_COLLECTOR`` (None: the stdout default).

        Returns:
            The collector spec.

        Raises:
            SettingsError: a field is missing, of the wrong type, or the filter is no regex
                with two groups.
        """
        name = contract.COLLECTOR
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise SettingsError(f"{name} must be a JSON object, got {type(raw).__name__}")
        kind = raw.get("kind") or "stdout"
        if kind not in COLLECTORS:
            raise SettingsError(f"{name}.kind: {COLLECTORS.unknown(kind)}")
        fmt = raw.get("format") or "text"
        if fmt not in FORMATS:
            raise SettingsError(f"{name}.format must be text or json, got {fmt!r}")
        path, port = raw.get("path"), raw.get("port")
        if kind == "file" and (not isinstance(path, str) or not path):
            raise SettingsError(
                f"{name}.path is required for the file collector: the file the program writes its metrics to"
            )
        if kind == "prometheus" and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
            raise SettingsError(
                f"{name}.port must be the port of the program's /metrics "
                f"(1-65535) for the prometheus collector, got {port!r}"
            )
        metrics_path = raw.get("metricsPath") or "/metrics"
        step_metric = raw.get("stepMetric") or contract.DEFAULT_STEP_METRIC
        if not isinstance(metrics_path, str) or not metrics_path.startswith("/"):
            raise SettingsError(f"{name}.metricsPath must start with '/', got {metrics_path!r}")
        if not isinstance(step_metric, str):
            raise SettingsError(f"{name}.stepMetric must be a metric name, got {step_metric!r}")
        return cls(
            kind=kind,
            filter=_compile_filter(raw.get("filter")),
            path=path,
            format=fmt,
            port=port,
            metrics_path=metrics_path,
            step_metric=step_metric,
        )


def _compile_filter(text: Any) -> re.Pattern[str]:
    if text is None or text == "":
        return re.compile(contract.DEFAULT_METRIC_FILTER)
    if not isinstance(text, str):
        raise SettingsError(f"{contract.COLLECTOR}.filter must be a string, got {text!r}")
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise SettingsError(f"{contract.COLLECTOR}.filter {text!r} is not a valid regular expression: {exc}") from None
    if pattern.groups < 2:
        raise SettingsError(f"{contract.COLLECTOR}.filter {text!r} needs two groups: the metric name and its value")
    return pattern


# ----------------------------------------------------------------------------- collectors
class Collector:
    """Base: a thread that feeds reports to a sink until the program has exited."""

    def __init__(self, sink: Sink) -> None:
        """Create the collector.

        Args:
            sink: receives every report, from the collector's thread.
        """
        self.sink = sink
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def describe(self) -> str:
        """Where the metrics come from, for the reason of a failed trial."""
        raise NotImplementedError

    def child_env(self) -> dict[str, str]:
        """Variables the program needs to report (push file)."""
        return {}

    def cleanup(self) -> None:
        """Remove what the collector created."""

    def start(self) -> None:
        """Start reading (after the program started)."""
        self._thread = threading.Thread(target=self._run, name=f"collect-{type(self).__name__}", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """The program has exited: read what is left and stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(DRAIN_SECONDS)

    def _run(self) -> None:
        raise NotImplementedError

    def _emit(self, values: dict[str, float], step: float | None = None) -> None:
        if values:
            self.sink(Report(values, step))


class StreamCollector(Collector):
    """Reads the program's stdout pipe line by line, echoes it and parses ``name=value``."""

    def __init__(self, sink: Sink, pattern: re.Pattern[str]) -> None:
        """Create the collector; :meth:`attach` gives it the pipe."""
        super().__init__(sink)
        self.pattern = pattern
        self._stream: IO[bytes] | None = None

    def describe(self) -> str:
        """See :meth:`Collector.describe`."""
        return "collector stdout"

    def attach(self, stream: IO[bytes]) -> None:
        """The program's stdout."""
        self._stream = stream

    def finish(self) -> None:
        """Wait for the end of the stream (EOF comes once the program and its children exit)."""
        if self._thread is not None:
            self._thread.join(DRAIN_SECONDS)

    def _run(self) -> None:
        assert self._stream is not None
        out = _stdout_buffer()
        long_lines = 0
        for raw, whole in bounded_lines(self._stream):
            _echo(out, raw)
            if whole:
                self._emit(parse_text(raw.decode("utf-8", "replace"), self.pattern))
            else:
                long_lines += 1
                if long_lines <= BAD_LINES_LOGGED:
                    log.warning("stdout: not parsing a line longer than %d bytes", MAX_LINE)


class FileCollector(Collector):
    """Tails a file the program appends to: ``name=value`` lines or JSON lines."""

    def __init__(self, sink: Sink, path: Path, parse: Callable[[str], Report | None], label: str) -> None:
        """Create the collector; call before starting the program.

        Args:
            sink: receives the reports.
            path: the file (may not exist yet).
            parse: one complete line -> a report, or None.
            label: description for failure reasons.
        """
        super().__init__(sink)
        self.path = path
        self.parse = parse
        self.label = label
        self._file: IO[bytes] | None = None
        self._inode: int | None = None
        self._partial = b""
        self._overlong = False  # inside a line longer than MAX_LINE: skipped up to its newline
        self._bad_lines = 0
        # A file left from before (a restarted container) is not this run's: read only what
        # is appended from now on, unless it is truncated or replaced.
        self._skip: tuple[int, int] | None = None
        try:
            stat = path.stat()
            self._skip = (stat.st_ino, stat.st_size)
            log.warning("%s exists already: reading only what is appended to it", path)
        except OSError:
            pass

    def describe(self) -> str:
        """See :meth:`Collector.describe`."""
        exists = "" if self._inode is not None else ", never created"
        return f"{self.label} {self.path}{exists}"

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self._read()
        self._read(final=True)
        if self._file is not None:
            self._file.close()

    def _read(self, final: bool = False) -> None:
        self._reopen_if_replaced()
        if self._file is None:
            return
        while chunk := self._file.read(FILE_READ_BYTES):
            self._feed(chunk)
            if len(chunk) < FILE_READ_BYTES:
                break
        if final and self._partial and not self._overlong:
            self._line(self._partial)
        if final:
            self._partial, self._overlong = b"", False

    def _feed(self, chunk: bytes) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if self._overlong:  # the end of a line already too long
                self._overlong = False
                continue
            self._line(line)
        if len(self._partial) > MAX_LINE:
            self._skip_line(f"longer than {MAX_LINE} bytes", self._partial[:200].decode("utf-8", "replace"))
            self._partial, self._overlong = b"", True

    def _reopen_if_replaced(self) -> None:
        try:
            stat = self.path.stat()
        except OSError:
            return  # not there yet (or removed): keep what we have
        if self._file is not None and stat.st_ino == self._inode:
            if stat.st_size < self._file.tell():  # truncated in place: start over
                self._file.seek(0)
                self._partial, self._overlong = b"", False
            return
        if self._file is not None:
            self._file.close()
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            log.warning("cannot open %s: %s", self.path, exc)
            self._file = None
            return
        self._inode, self._partial, self._overlong = stat.st_ino, b"", False
        skip = self._skip
        if skip is not None and skip[0] == stat.st_ino and skip[1] <= stat.st_size:
            self._file.seek(skip[1])
        self._skip = None

    def _line(self, raw: bytes) -> None:
        if len(raw) > MAX_LINE:
            self._skip_line(f"longer than {MAX_LINE} bytes", raw[:200].decode("utf-8", "replace"))
            return
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            report = self.parse(text)
        except ValueError as exc:  # the parsers raise nothing else (parsers.py)
            self._skip_line(str(exc), text)
            return
        if report is not None and report.values:
            self.sink(report)

    def _skip_line(self, why: str, text: str) -> None:
        """A malformed line is skipped, never the end of the collector; the first few are logged."""
        self._bad_lines += 1
        if self._bad_lines <= BAD_LINES_LOGGED:
            log.warning("%s: skipping a malformed line (%s): %r", self.path, why, text[:200])


class PushCollector(FileCollector):
    """Tails the private JSON-lines file that :func:`openautoglm_trial.report` appends to."""

    def __init__(self, sink: Sink) -> None:
        """Create the file in a private directory (before the program starts)."""
        self.directory = Path(tempfile.mkdtemp(prefix="openautoglm-push-"))
        super().__init__(sink, self.directory / "metrics.jsonl", push_parser, "collector push")
        self.path.touch()  # the client appends; it never creates a file of its own here

    def describe(self) -> str:
        """See :meth:`Collector.describe`."""
        return "collector push (openautoglm_trial.report)"

    def child_env(self) -> dict[str, str]:
        """See :meth:`Collector.child_env`."""
        return {contract.PUSH_FILE: str(self.path)}

    def cleanup(self) -> None:
        """See :meth:`Collector.cleanup`."""
        shutil.rmtree(self.directory, ignore_errors=True)


class PrometheusCollector(Collector):
    """Scrapes the program's own /metrics every second."""

    def __init__(self, sink: Sink, urls: list[str], wanted: Callable[[str], bool], step_metric: str) -> None:
        """Create the collector.

        Args:
            sink: receives the reports.
            urls: where the program's /metrics may answer, tried in order.
            wanted: whether a metric name is of interest.
            step_metric: the step metric (a new value passes every value on).
        """
        super().__init__(sink)
        self.urls = urls
        self.wanted = wanted
        self.step_metric = step_metric
        self._previous: dict[str, float] = {}
        self._previous_step: float | None = None
        self._answered: str | None = None
        self._last_error = "not scraped yet"

    def describe(self) -> str:
        """See :meth:`Collector.describe`."""
        if self._answered is not None:
            return f"collector prometheus {self._answered}"
        return f"collector prometheus {self.urls[0]}, never answered: {self._last_error}"

    def _run(self) -> None:
        while True:
            started = time.monotonic()
            self._scrape()
            if self._stop.wait(max(0.0, SCRAPE_INTERVAL_SECONDS - (time.monotonic() - started))):
                return  # the program is gone: its last values are those of the last scrape

    def _scrape(self) -> None:
        for url in [self._answered] if self._answered else self.urls:
            try:
                body = boundedhttp.get(url, limit_bytes=SCRAPE_LIMIT_BYTES, deadline_seconds=SCRAPE_TIMEOUT_SECONDS)
            except boundedhttp.FetchError as exc:
                self._last_error = str(exc)  # not up yet, exited mid-answer, too large, too slow
                continue
            text = body.decode("utf-8", "replace")
            self._answered = url
            try:
                values, step = parse_exposition(text, self.wanted)
            except ValueError as exc:
                self._last_error = f"unparsable exposition: {exc}"
                return
            self._emit(*self._changes(values, step))
            return

    def _changes(self, values: dict[str, float], step: float | None) -> tuple[dict[str, float], float | None]:
        """A scrape repeats everything: pass on what changed, or everything on a new step."""
        if step is None:
            step = values.get(self.step_metric)
        previous, self._previous = self._previous, dict(values)
        previous_step, self._previous_step = self._previous_step, step
        if step is not None and step != previous_step:
            return values, step
        changed = {
            name: value for name, value in values.items() if name not in previous or not _same(previous[name], value)
        }
        return changed, (step if changed else None)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def prometheus_wanted(names: Iterable[str], step_metric: str) -> Callable[[str], bool]:
    """Which scraped names are metrics: the recorded ones, the step, and what the watch reads."""
    known = frozenset(names) | {step_metric} | set(GRAD_NORM_NAMES)
    return lambda name: name in known or "loss" in name.lower()


def scrape_urls(bind_address: str | None, port: int, path: str) -> list[str]:
    """Where the program's /metrics may answer: the worker's address, then loopback."""
    hosts = [h for h in (bind_address,) if h and h not in ("0.0.0.0", "::")] + ["127.0.0.1"]
    return [f"http://{host}:{port}{path}" for host in dict.fromkeys(hosts)]


# ----------------------------------------------------------------------------- the registry
#: kind -> (its settings, the sink, the recorded metric names, the worker's bind address) -> Collector.
#: The keys are ``metrics.collector.kind`` of the TuningJob (spec.Collector.kind, less native).
CollectorFactory = Callable[[CollectorSpec, Sink, Iterable[str], "str | None"], Collector]
COLLECTORS: Registry[Entry[CollectorFactory]] = Registry("collector")


@COLLECTORS.register("stdout", description="name=value pairs in the lines the program prints")
def _stdout(spec: CollectorSpec, sink: Sink, names: Iterable[str], bind: str | None) -> Collector:
    return StreamCollector(sink, spec.filter)


@COLLECTORS.register("file", description="the same lines, or JSON lines, appended to a file the program writes")
def _file(spec: CollectorSpec, sink: Sink, names: Iterable[str], bind: str | None) -> Collector:
    assert spec.path is not None
    parse = json_parser if spec.format == "json" else text_parser(spec.filter)
    return FileCollector(sink, Path(spec.path), parse, f"collector file ({spec.format})")


@COLLECTORS.register("prometheus", description="the program's own /metrics, scraped every second")
def _prometheus(spec: CollectorSpec, sink: Sink, names: Iterable[str], bind: str | None) -> Collector:
    assert spec.port is not None
    return PrometheusCollector(
        sink,
        scrape_urls(bind, spec.port, spec.metrics_path),
        prometheus_wanted(names, spec.step_metric),
        spec.step_metric,
    )


@COLLECTORS.register("push", description="openautoglm_trial.report(step, **metrics), through a private file")
def _push(spec: CollectorSpec, sink: Sink, names: Iterable[str], bind: str | None) -> Collector:
    return PushCollector(sink)


def bounded_lines(stream: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
    """The lines of a pipe, each as (bytes, whole): a line longer than MAX_LINE comes in pieces
    of at most MAX_LINE bytes with whole=False (to echo, not to parse), so a program printing
    a gigabyte without a newline costs MAX_LINE of memory, not a gigabyte."""
    inside_long = False
    for piece in iter(lambda: stream.readline(MAX_LINE), b""):
        ends = piece.endswith(b"\n")
        yield piece, not inside_long and (ends or len(piece) < MAX_LINE)
        inside_long = not ends


def _stdout_buffer() -> IO[bytes]:
    # A stdout without .buffer is taken for a binary stream already (an embedding's stand-in).
    return sys.stdout.buffer if hasattr(sys.stdout, "buffer") else cast(IO[bytes], sys.stdout)


def _echo(out: IO[bytes], raw: bytes) -> None:
    try:
        out.write(raw)
        out.flush()
    except (OSError, ValueError):
        pass  # our own stdout is gone: keep collecting


def echo_lines(stream: IO[bytes], out: IO[bytes], keep: Any) -> None:
    """Copy a pipe to ``out`` line by line, appending each line to ``keep`` (a deque).

    Args:
        stream: the program's stderr.
        out: our stderr.
        keep: a bounded deque of the last lines (for the reason of a failure).
    """
    for raw, _ in bounded_lines(stream):
        _echo(out, raw)
        line = raw.decode("utf-8", "replace").rstrip()
        if line.strip():
            keep.append(line)
