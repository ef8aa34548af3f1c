"""Metric sources: where the engine reads the intermediate values of running trials.

``scrape`` (default) reads rank 0's /metrics itself; ``prometheus`` asks a Prometheus
server (for clusters that already scrape everything). Final values never come from
here but from the termination message, which survives the worker.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Final, Protocol

from prometheus_client.parser import text_string_to_metric_families

from openautoglm import promql
from openautoglm.config import Settings
from openautoglm.config import load as load_settings
from openautoglm.engine.trials import TrialObservation
from openautoglm.spec import TuningJob
from openautoglm_trial import boundedhttp, boundedjson
from openautoglm_trial import contract as c
from openautoglm_trial.registry import Entry, Registry

#: A worker that has not answered completely in this time (connecting, headers and body
#: together) is read again next round. OPENAUTOGLM_SCRAPE_DEADLINE_SECONDS overrides it.
SCRAPE_DEADLINE_SECONDS: Final = 2.0
#: The largest /metrics (or Prometheus) answer read; a larger one is refused unread.
#: OPENAUTOGLM_SCRAPE_LIMIT_BYTES overrides it.
SCRAPE_LIMIT_BYTES: Final = 1024 * 1024
#: Lines of the two gauges parsed from one exposition (the trial runtime exports at most 64 metrics).
MAX_METRICS: Final = 1024
#: A metric name longer than this is no metric of a TuningJob.
MAX_METRIC_NAME: Final = 256
#: The exposition lines of the two gauges the engine reads (no other line is parsed).
_OUR_LINES: Final = re.compile(rf"^[ \t]*(?:{c.EPOCH_GAUGE}|{c.METRIC_GAUGE})[{{ \t].*$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Reading:
    """The latest metrics of a trial: values at ``epoch`` completed epochs.

    A reading with a ``problem`` holds no values: the trial answered, but with something that
    cannot be read (too large, too slow, malformed). The reconciler records the problem on the
    trial; a trial that is simply not up yet gives no reading at all (None).
    """

    epoch: int
    values: dict[str, float]
    problem: str | None = None

    @classmethod
    def unreadable(cls, problem: str) -> Reading:
        return cls(0, {}, problem)


class MetricSource(Protocol):
    """Reads a running trial's latest metrics; never raises (a malformed answer is a reading
    with a problem). A source may say how long one read can take at most (``deadline_seconds``):
    the pass waits that long for readings taken side by side (default SCRAPE_DEADLINE_SECONDS)."""

    def read(self, trial: TrialObservation) -> Reading | None: ...


#: ``spec.metrics.source`` -> (job) -> the source; the names are spec.MetricsSource.source's.
METRIC_SOURCES: Registry[Entry[Callable[[TuningJob], MetricSource]]] = Registry("metric source")


def parse_exposition(text: str) -> Reading | None:
    """Parse the Prometheus text exposition of a trial worker; never raises.

    Returns:
        The epoch (clamped to MAX_STEP) and the finite metric values; None before the first
        epoch; a reading with a problem for a page that cannot be read.
    """
    try:
        epoch, values = _gauges(text)
    except Exception as err:  # prometheus_client's parser meets text it was not written for
        return Reading.unreadable(f"/metrics is no Prometheus exposition ({type(err).__name__})")
    if epoch is None:
        return None
    if not math.isfinite(epoch):
        return Reading.unreadable(f"/metrics: {c.EPOCH_GAUGE} is {epoch}, not a finite number")
    if epoch < 1:
        return None
    return Reading(int(min(epoch, c.MAX_STEP)), {k: v for k, v in values.items() if math.isfinite(v)})


def _gauges(text: str) -> tuple[float | None, dict[str, float]]:
    """The epoch gauge and the metric gauge's values. Only the lines of these two gauges reach
    prometheus_client's parser, at most MAX_METRICS of them: it keeps every sample of a family in
    memory, and a megabyte of other samples would cost tens of megabytes."""
    ours = [m.group(0) for m in itertools.islice(_OUR_LINES.finditer(text), MAX_METRICS + 1)]
    epoch = None
    values: dict[str, float] = {}
    for family in text_string_to_metric_families("\n".join(ours) + "\n"):
        for sample in family.samples:
            if sample.name == c.EPOCH_GAUGE:
                epoch = sample.value
            elif sample.name == c.METRIC_GAUGE and "metric" in sample.labels:
                name = sample.labels["metric"]
                if len(name) <= MAX_METRIC_NAME:
                    values[name] = sample.value
    return epoch, values


def read_limits(limit_bytes: int | None, deadline_seconds: float | None, settings: Settings) -> tuple[int, float]:
    """(largest answer in bytes, deadline in seconds) of one metrics read: those given, else the settings'."""
    return (
        settings.scrape_limit_bytes if limit_bytes is None else limit_bytes,
        settings.scrape_deadline_seconds if deadline_seconds is None else deadline_seconds,
    )


@METRIC_SOURCES.register("scrape", description="rank 0's /metrics, read by the engine itself")
class ScrapeSource:
    """Reads rank 0's /metrics: at most ``limit_bytes``, within ``deadline_seconds`` in all."""

    def __init__(self, job: TuningJob, *, limit_bytes: int | None = None, deadline_seconds: float | None = None):
        self.job = job
        self.limit_bytes, self.deadline_seconds = read_limits(limit_bytes, deadline_seconds, load_settings())

    def read(self, trial: TrialObservation) -> Reading | None:
        leader = trial.leader
        if leader is None or leader.endpoint is None:
            return None
        url = f"http://{leader.endpoint}/metrics"
        try:
            body = boundedhttp.get(url, limit_bytes=self.limit_bytes, deadline_seconds=self.deadline_seconds)
        except boundedhttp.FetchError as err:
            # Not up yet, or exiting mid-answer: nothing to say, the termination message will
            # tell. Too large, too slow, not HTTP: the trial's problem, recorded on it.
            return None if err.gone else Reading.unreadable(f"/metrics: {err}")
        return parse_exposition(body.decode("utf-8", "replace"))


@METRIC_SOURCES.register("prometheus", description="the trial's gauges, asked of a Prometheus server by PromQL")
class PrometheusSource:
    """Reads a trial's gauges from a Prometheus server (``metrics.prometheus``) by PromQL: the
    job's ``query`` template (:mod:`openautoglm.promql`: ``{namespace}``, ``{job}``, ``{trial}``,
    ``{metric}``, nothing evaluated) or the default, which selects the series deploy/prometheus-scrape
    labels with the trial pod's namespace, job and trial. The server is the job's ``url``, else the
    operator's (OPENAUTOGLM_PROMETHEUS_URL; in a cluster the operator checks either against its
    allow-list before the job starts). One deadline covers the whole read (both queries), and each
    answer is read to at most ``limit_bytes``."""

    def __init__(self, job: TuningJob, *, limit_bytes: int | None = None, deadline_seconds: float | None = None):
        self.job = job
        settings = load_settings()
        cfg = job.spec.metrics.prometheus
        self.url = ((cfg.url if cfg else None) or settings.prometheus_url or "").rstrip("/")
        self.query = (cfg.query if cfg else None) or promql.DEFAULT_QUERY
        self.limit_bytes, self.deadline_seconds = read_limits(limit_bytes, deadline_seconds, settings)
        #: A local run's job has no namespace: Prometheus sees it as "default" (the file-SD labels).
        self.namespace = job.metadata.namespace or "default"
        #: The metric a ``{metric}`` template is filled with: the one the pruner reads.
        self.metric = job.spec.objective.objectives[0].metric

    def _query(self, text: str, deadline: float) -> list[dict]:
        """The samples of an instant vector query, each ``{"metric": {label: value}, "value":
        [time, "<finite number>"]}``, answered before ``deadline`` (time.monotonic()).

        Raises:
            ValueError: the answer could not be read in time (with the reason).
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise ValueError(f"Prometheus: no complete answer within {self.deadline_seconds:g} s")
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": text})
        try:
            body = boundedhttp.get(url, limit_bytes=self.limit_bytes, deadline_seconds=left)
        except boundedhttp.FetchError as err:
            raise ValueError(f"Prometheus: {err}") from None
        samples, problem = read_vector(body)
        if problem is not None:
            raise ValueError(f"Prometheus: {problem}")
        return samples

    def read(self, trial: TrialObservation) -> Reading | None:
        if not self.url:
            return Reading.unreadable(
                "no Prometheus to ask: metrics.prometheus.url and OPENAUTOGLM_PROMETHEUS_URL unset"
            )
        names: dict[str, str | int] = {
            "namespace": self.namespace,
            "job": self.job.name,
            "trial": trial.number,
            "metric": self.metric,
        }
        deadline = time.monotonic() + self.deadline_seconds
        try:
            epochs = self._query(promql.fill(promql.EPOCH_QUERY, names), deadline)
            epoch = float(epochs[0]["value"][1]) if epochs else 0.0  # finite: read_vector keeps no other
            if epoch < 1:
                return None  # not scraped yet, or no epoch finished yet
            samples = self._query(promql.fill(self.query, names), deadline)
        except ValueError as err:  # the server's answer (or a template: the model checked it)
            return Reading.unreadable(str(err)[:300])
        if promql.uses_metric(self.query):
            # One metric asked by name: its series need no `metric` label.
            values = {self.metric: float(samples[0]["value"][1])} if samples else {}
        else:
            values = {s["metric"].get("metric", ""): float(s["value"][1]) for s in samples}
        return Reading(int(min(epoch, c.MAX_STEP)), {k: v for k, v in values.items() if k})


def read_vector(body: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """The samples of a Prometheus instant-vector answer (``/api/v1/query``); never raises.

    Returns:
        (samples, None), each sample ``{"metric": {str: str}, "value": [time, str]}`` whose value
        is a finite number (a sample whose value is not is left out); ([], None) for an answer
        whose status is not "success"; ([], problem) for one that cannot be read.
    """
    try:
        doc = boundedjson.loads(body.decode("utf-8", "replace"), max_chars=SCRAPE_LIMIT_BYTES)
    except ValueError as err:
        return [], f"answer unreadable: {err}"
    if not isinstance(doc, dict):
        return [], "answer unreadable: not a JSON object"
    if doc.get("status") != "success":
        return [], None
    data = doc.get("data")
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list):
        return [], "answer unreadable: no data.result list"
    return [s for s in map(_sample, result) if s is not None], None


def _sample(raw: Any) -> dict[str, Any] | None:
    """One vector sample with string labels and a finite value, or None."""
    if not isinstance(raw, dict) or not isinstance(raw.get("metric"), dict):
        return None
    value = raw.get("value")
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[1], str) or len(value[1]) > 64:
        return None
    try:
        number = float(value[1])
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    labels = {str(k): v for k, v in raw["metric"].items() if isinstance(v, str) and len(v) <= MAX_METRIC_NAME}
    return {"metric": labels, "value": [value[0], value[1]]}


def build_metric_source(job: TuningJob) -> MetricSource:
    """The source ``spec.metrics.source`` names, reading for ``job``."""
    return METRIC_SOURCES[job.spec.metrics.source].factory(job)
