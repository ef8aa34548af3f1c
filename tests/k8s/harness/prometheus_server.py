"""A real Prometheus (Debian's) for the cluster tests, with file-based service discovery written
here the way Kubernetes service discovery would find the targets in a cluster: the operator's
metrics port as the ServiceMonitor of deploy/prometheus/monitor.yaml scrapes it (its
`honorLabels`), and each running trial pod's `metrics` port with the labels that
deploy/prometheus-scrape/trial-pods-scrape-config.yaml's relabelling gives it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
MONITOR = ROOT / "deploy" / "prometheus" / "monitor.yaml"
TRIALS_SCRAPE = ROOT / "deploy" / "prometheus-scrape" / "trial-pods-scrape-config.yaml"
PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)  # Prometheus never reads half a file


class Prometheus:
    """`prometheus` with file-SD targets for the operator and the trial pods, scraping every second."""

    def __init__(self, workdir: Path, operator_port: int) -> None:
        self.dir = workdir / "prometheus"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        honor = any(e.get("honorLabels") for e in yaml.safe_load(MONITOR.read_text())["spec"]["endpoints"])
        trials_job = yaml.safe_load(TRIALS_SCRAPE.read_text())[0]
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "openautoglm-operator",
                    "honor_labels": honor,
                    "file_sd_configs": [{"files": [str(self.dir / "operator.json")], "refresh_interval": "1s"}],
                },
                {
                    "job_name": trials_job["job_name"],
                    "file_sd_configs": [{"files": [str(self.dir / "trials.json")], "refresh_interval": "1s"}],
                },
            ],
        }
        # As the ServiceMonitor's target: the Service's namespace and name as `namespace` and `job`.
        _write_json(
            self.dir / "operator.json",
            [
                {
                    "targets": [f"127.0.0.1:{operator_port}"],
                    "labels": {"namespace": "openautoglm-system", "service": "openautoglm-operator-metrics"},
                }
            ],
        )
        _write_json(self.dir / "trials.json", [])
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=open(self.dir / "prometheus.log", "wb"),
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("prometheus did not become ready:\n" + (self.dir / "prometheus.log").read_text()[-2000:])

    def trial_targets(self, pods: list[dict[str, Any]]) -> None:
        """The trial pods' /metrics as the relabelling of deploy/prometheus-scrape names them."""
        groups = []
        for pod in pods:
            ip, labels = (pod.get("status") or {}).get("podIP"), pod["metadata"].get("labels") or {}
            ports = [p for c in pod["spec"]["containers"] for p in c.get("ports", []) if p.get("name") == "metrics"]
            if not ip or not ports or "openautoglm.io/job" not in labels:
                continue
            groups.append(
                {
                    "targets": [f"{ip}:{ports[0]['containerPort']}"],
                    "labels": {
                        "openautoglm_job": labels["openautoglm.io/job"],
                        "openautoglm_trial": labels.get("openautoglm.io/trial", ""),
                        "openautoglm_rank": labels.get("openautoglm.io/rank", ""),
                        "namespace": pod["metadata"]["namespace"],
                    },
                }
            )
        _write_json(self.dir / "trials.json", groups)

    def query(self, path: str, **params: Any) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def query_labels(self, label: str, match: str, start: float, end: float) -> list[str]:
        url = f"{self.url}/api/v1/label/{label}/values?" + urllib.parse.urlencode(
            {"match[]": match, "start": start, "end": end}
        )
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())["data"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
