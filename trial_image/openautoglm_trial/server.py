"""The worker's HTTP endpoints: /metrics for the operator's scraper, /healthz and /readyz.

One small threaded server on ``OPENAUTOGLM_BIND_ADDRESS:OPENAUTOGLM_METRICS_PORT``. It starts
before Horovod so the liveness probe answers while the worker waits for its peers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from . import contract

log = logging.getLogger(__name__)


class TrialMetrics:
    """The trial's gauges in a private registry (nothing of the process leaks in)."""

    def __init__(self) -> None:
        """Create the registry and the gauges named in :mod:`.contract`."""
        self.registry = CollectorRegistry()
        self.metric = Gauge(
            contract.METRIC_GAUGE, "Latest value of each metric the task reports", ["metric"], registry=self.registry
        )
        self.epoch = Gauge(contract.EPOCH_GAUGE, "Epochs completed", registry=self.registry)
        self.step = Gauge(contract.STEP_GAUGE, "Optimizer steps done", registry=self.registry)
        self.learning_rate = Gauge(contract.LR_GAUGE, "Current learning rate", registry=self.registry)
        self.grad_norm = Gauge(contract.GRAD_NORM_GAUGE, "Norm of the averaged gradient", registry=self.registry)
        self.train_loss = Gauge(
            contract.LOSS_GAUGE, "Training loss of the last step, averaged over the workers", registry=self.registry
        )

    def report_step(self, step: int, learning_rate: float, grad_norm: float, train_loss: float) -> None:
        """Update the per-step gauges."""
        self.step.set(step)
        self.learning_rate.set(learning_rate)
        self.grad_norm.set(grad_norm)
        self.train_loss.set(train_loss)

    def report_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Publish the metrics of a completed epoch; the epoch is set last, so a scraper that
        sees epoch n also sees its metrics."""
        for name, value in metrics.items():
            self.metric.labels(metric=name).set(value)
        self.epoch.set(epoch)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class Health:
    """Liveness and readiness of the worker, updated by the training loop."""

    def __init__(self, stall_seconds: float = 300.0) -> None:
        """Create the state.

        Args:
            stall_seconds: how long the training loop may go without a heartbeat before the
                worker counts as stuck.
        """
        self.stall_seconds = stall_seconds
        self._ready = threading.Event()
        self._training = False
        self._last_beat = time.monotonic()

    def mark_ready(self) -> None:
        """Horovod is initialised and the data loaded."""
        self._ready.set()

    def start_training(self) -> None:
        """From now on, missing heartbeats mean the loop is stuck."""
        self._last_beat = time.monotonic()
        self._training = True

    def stop_training(self) -> None:
        """The loop has ended; evaluation of the result follows."""
        self._training = False

    def beat(self) -> None:
        """The training loop made progress."""
        self._last_beat = time.monotonic()

    @property
    def ready(self) -> bool:
        """Whether /readyz answers 200."""
        return self._ready.is_set()

    def live(self) -> tuple[bool, str]:
        """Whether /healthz answers 200, and why."""
        if not self._training:
            return True, "ok"
        idle = time.monotonic() - self._last_beat
        if idle > self.stall_seconds:
            return False, f"training loop stuck: no step for {idle:.0f}s"
        return True, "ok"


class TrialServer:
    """The threaded HTTP server serving /metrics, /healthz and /readyz."""

    def __init__(self, address: str, port: int, metrics: TrialMetrics, health: Health) -> None:
        """Bind the server (port 0 picks a free one).

        Args:
            address: address to bind.
            port: port to bind.
            metrics: source of /metrics.
            health: source of /healthz and /readyz.
        """
        handler = type("Handler", (_Handler,), {"metrics": metrics, "health": health})
        self._httpd = ThreadingHTTPServer((address, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return self._httpd.server_address[1]

    def start(self) -> TrialServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="trial-http", daemon=True)
        self._thread.start()
        log.info("serving /metrics, /healthz, /readyz on %s:%d", self._httpd.server_address[0], self.port)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    metrics: TrialMetrics
    health: Health

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.metrics.exposition(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            live, why = self.health.live()
            self._send(200 if live else 503, why.encode())
        elif path == "/readyz":
            ready = self.health.ready
            self._send(200 if ready else 503, b"ready" if ready else b"not ready")
        else:
            self._send(404, b"not found")

    def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        # Probes and scrapes every few seconds would drown the training log.
        pass
