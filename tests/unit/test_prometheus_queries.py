"""metrics.source: prometheus, as a shared operator runs it (issue 21): the default query names the
job's namespace, so two namespaces running a job of the same name never read each other's curves;
a template's placeholders are filled by name and nothing else; a job that names no URL reads the
operator's Prometheus; and the operator asks only the servers its settings allow."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from helpers import digits_job

from openautoglm.config import Settings
from openautoglm.engine.metrics import PrometheusSource
from openautoglm.engine.trials import RUNNING, TrialObservation, WorkerObservation
from openautoglm.k8s.connections import ConnectionNotAllowed, check_prometheus
from openautoglm.validation import validate_document

#: The objective of each namespace's same-named job at epoch 3, as Prometheus holds them.
CURVES = {"team-a": 0.25, "team-b": 0.75}


class _Prometheus(BaseHTTPRequestHandler):
    """Answers /api/v1/query like Prometheus over the series of CURVES: a query that does not
    select a namespace aggregates over both (``max by (metric)``: team-b's value)."""

    queries: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["query"][0]
        self.queries.append(query)
        chosen = [ns for ns in CURVES if f'namespace="{ns}"' in query] or list(CURVES)
        if "openautoglm_trial_epoch" in query:
            result = [{"metric": {}, "value": [0, "3"]}]
        else:
            value = max(CURVES[ns] for ns in chosen)
            labels = {} if 'metric="' in query else {"metric": "accuracy"}
            result = [{"metric": labels, "value": [0, str(value)]}]
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Prometheus.queries = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _job(namespace: str, **prometheus: Any):
    doc = digits_job(name="same-name", metrics={"source": "prometheus", "prometheus": prometheus})
    doc["metadata"]["namespace"] = namespace
    return validate_document(doc)


def _read(source: PrometheusSource):
    return source.read(TrialObservation(2, [WorkerObservation(0, RUNNING)], 1))


def test_same_named_jobs_of_two_namespaces_read_their_own_curves(prometheus: str) -> None:
    for ns, value in CURVES.items():
        reading = _read(PrometheusSource(_job(ns, url=prometheus)))
        assert reading is not None and reading.problem is None
        assert (reading.epoch, reading.values) == (3, {"accuracy": value}), ns
    assert all('openautoglm_trial="2"' in q and 'openautoglm_job="same-name"' in q for q in _Prometheus.queries)


def test_a_metric_template_is_filled_by_name_only(prometheus: str) -> None:
    template = 'avg(my_gauge{namespace="{namespace}",tj="{job}",n="{trial}",metric="{metric}"})'
    reading = _read(PrometheusSource(_job("team-a", url=prometheus, query=template)))
    assert reading is not None and reading.values == {"accuracy": 0.25}
    assert 'avg(my_gauge{namespace="team-a",tj="same-name",n="2",metric="accuracy"})' in _Prometheus.queries


def test_a_job_without_a_url_reads_the_operators_prometheus(prometheus: str, monkeypatch) -> None:
    monkeypatch.setenv("OPENAUTOGLM_PROMETHEUS_URL", prometheus)
    reading = _read(PrometheusSource(_job("team-b")))
    assert reading is not None and reading.values == {"accuracy": 0.75}
    monkeypatch.delenv("OPENAUTOGLM_PROMETHEUS_URL")
    unset = _read(PrometheusSource(_job("team-b")))
    assert unset is not None and "no Prometheus" in (unset.problem or "")


@pytest.mark.parametrize(
    ("job_url", "own", "allowed", "ok"),
    [
        (None, "http://prometheus.monitoring:9090", (), True),  # inherits the operator's: always allowed
        ("http://prometheus.monitoring:9090/", "http://prometheus.monitoring:9090", (), True),
        ("http://PROMETHEUS.monitoring:9090", None, ("http://prometheus.monitoring:9090",), True),
        ("http://169.254.169.254/latest", "http://prometheus.monitoring:9090", (), False),
        ("http://prometheus.monitoring:9091", None, ("http://prometheus.monitoring:9090",), False),
        ("http://anything:1", None, ("*",), True),
        (None, None, (), False),  # nowhere to ask
    ],
)
def test_the_operator_asks_only_the_prometheus_its_settings_allow(job_url, own, allowed, ok) -> None:
    job = _job("team-a", **({"url": job_url} if job_url else {}))
    cfg = Settings(prometheus_url=own, allowed_prometheus_urls=allowed)
    if ok:
        check_prometheus(job, cfg)
    else:
        with pytest.raises(ConnectionNotAllowed):
            check_prometheus(job, cfg)
