"""Metric sources: where the engine reads the intermediate values of running trials.

``scrape`` (default) reads rank 0's /metrics itself; ``prometheus`` asks a Prometheus
server (for clusters that already scrape everything). Final values never come from
here but from the termination message, which survives the worker.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import math
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Protocol

from prometheus_client.parser import text_string_to_metric_families

from openautoglm.engine.trials import TrialObservation
from openautoglm.spec import TuningJob
from openautoglm_trial import contract as c
from openautoglm_trial.registry import Registry

#: A worker that does not answer in this time is simply read again next round.
SCRAPE_TIMEOUT_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class Reading:
    """The latest metrics of a trial: values at ``epoch`` completed epochs."""

    epoch: int
    values: dict[str, float]


class MetricSource(Protocol):
    def read(self, trial: TrialObservation) -> Reading | None: ...


def parse_exposition(text: str) -> Reading | None:
    """Parse the Prometheus text exposition of a trial worker."""
    epoch = None
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == c.EPOCH_GAUGE:
                epoch = int(sample.value)
            elif sample.name == c.METRIC_GAUGE and "metric" in sample.labels:
                values[sample.labels["metric"]] = sample.value
    if epoch is None or epoch < 1:
        return None
    return Reading(epoch, {k: v for k, v in values.items() if math.isfinite(v)})


class ScrapeSource:
    def __init__(self, job: TuningJob):
        self.job = job

    def read(self, trial: TrialObservation) -> Reading | None:
        leader = trial.leader
        if leader is None or leader.endpoint is None:
            return None
        try:
            with urllib.request.urlopen(f"http://{leader.endpoint}/metrics", timeout=SCRAPE_TIMEOUT_SECONDS) as r:
                return parse_exposition(r.read().decode())
        except (OSError, ValueError, http.client.HTTPException):
            # HTTPException: a worker that exits while its response is being read gives
            # IncompleteRead, which is not an OSError (it once killed the whole engine).
            return None  # not up yet, or gone: the termination message will tell


class PrometheusSource:
    """Reads ``openautoglm_trial_metric`` series labelled by the scrape config with the
    pod's ``openautoglm_io_job``/``openautoglm_io_trial`` labels (see deploy/prometheus)."""

    DEFAULT_QUERY = 'max by (metric) ({gauge}{{openautoglm_job="{job}",openautoglm_trial="{trial}"}})'

    def __init__(self, job: TuningJob):
        self.job = job
        cfg = job.spec.metrics.prometheus
        assert cfg is not None
        self.url = cfg.url.rstrip("/")
        self.query = cfg.query

    def _query(self, promql: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_SECONDS) as r:
            doc = json.load(r)
        return doc.get("data", {}).get("result", []) if doc.get("status") == "success" else []

    def read(self, trial: TrialObservation) -> Reading | None:
        fmt = {"job": self.job.name, "trial": trial.number}
        try:
            metric_q = (self.query or self.DEFAULT_QUERY).format(gauge=c.METRIC_GAUGE, **fmt)
            epoch_q = self.DEFAULT_QUERY.replace("max by (metric) ", "max ").format(gauge=c.EPOCH_GAUGE, **fmt)
            epochs = self._query(epoch_q)
            if not epochs:
                return None
            epoch = int(float(epochs[0]["value"][1]))
            if epoch < 1:
                return None  # no epoch finished yet
            values = {r["metric"].get("metric", ""): float(r["value"][1]) for r in self._query(metric_q)}
            return Reading(epoch, {k: v for k, v in values.items() if k and math.isfinite(v)})
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            return None


METRIC_SOURCES: Registry[Callable[[TuningJob], MetricSource]] = Registry("metric source")
METRIC_SOURCES.add("scrape", ScrapeSource)
METRIC_SOURCES.add("prometheus", PrometheusSource)


def build_metric_source(job: TuningJob) -> MetricSource:
    return METRIC_SOURCES[job.spec.metrics.source](job)
