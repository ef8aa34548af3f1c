"""One operator, several tenants (issue 21), against the real operator in the emulated cluster.

* Hostile neighbours: in one namespace, TuningJobs whose trials attack the shared operator through
  everything they control -- a 200 MiB /metrics, one trickled a byte every 1.5 s, one that never
  answers, an infinite epoch, a termination message nested 2,000 deep or full of overflowing
  numbers -- and a job whose PromQL template is a format-string bomb; in another namespace, a
  normal 8-trial job. The normal job ends with its exact trial count and passes under 1 s at the
  95th percentile, the operator never restarts and its peak RSS stays under 300 MiB, and each
  hostile trial is judged with a reason naming what was wrong.
* Secrets: a storage Secret whose key holds a password, not a URL, stalls the job naming the Secret
  and the key; the value appears nowhere (status, events, the operator's log and /metrics, file
  names on the studies volume). A libpq URL with ``password=`` in its query runs the job on the real
  PostgreSQL and is shown without it.
* Where the operator connects: a Prometheus or PostgreSQL a job names that the operator's settings
  do not list stalls the job (ConnectionNotAllowed) before anything is created.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from test_faults import _pass_buckets
from test_operator import TOY, Operator, apply

from openautoglm.engine.storage import open_storage

EVIL, GOOD = "team-evil", "team-good"
JOBS = "openautoglm.io/v1alpha1/tuningjobs"
#: Each hostile mode of tests/engine/toy_trial.py, and what its trials' records must say.
HOSTILE = {
    "huge-metrics": "larger than 1 MiB",
    "trickle-metrics": "within",
    "mute": "within",
    "inf-epoch": "epoch",
    "nested-result": "termination message",
    "overflow-result": "termination message",
}
PEAK_RSS_MIB = 300


def _toy(name: str, namespace: str, modes: list[str], *, parallelism: int, seconds: float) -> dict[str, Any]:
    return {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "objective": {"metric": "score", "direction": "maximize"},
            "budget": {"maxTrials": len(modes), "parallelism": parallelism, "maxFailedTrials": len(modes)},
            # No GP: the operator's memory is measured, and auto's first GP ask imports torch.
            "algorithm": {"sampler": "random", "seed": 21},
            "parameters": [
                {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
                {"name": "mode", "type": "categorical", "choices": sorted(set(modes))},
                {"name": "epoch_seconds", "type": "fixed", "value": seconds},
            ],
            "warmStart": [{"params": {"x": 0.1 + 0.05 * i, "mode": m}} for i, m in enumerate(modes)],
            "trial": {"command": [sys.executable, TOY], "epochs": 4, "workers": 1},
            "metrics": {"intervalSeconds": 0.5, "collector": {"kind": "native"}},
        },
    }


def _status(cluster, namespace: str, name: str) -> dict[str, Any]:
    return (cluster.get(JOBS, namespace, name) or {}).get("status") or {}


def _done(cluster, namespace: str, name: str) -> bool:
    return _status(cluster, namespace, name).get("phase") in ("Succeeded", "Failed")


def _study(op: Operator, namespace: str, name: str) -> list[optuna.trial.FrozenTrial]:
    [path] = (op.study_dir / namespace).glob(f"{name}-*.journal")
    return optuna.load_study(study_name=f"{namespace}/{name}", storage=open_storage(str(path))).get_trials()


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _create_unadmitted(cluster, doc: dict[str, Any]) -> None:
    """Store a TuningJob the CRD's rules would refuse, as one admitted by an older CRD is stored
    (a CRD upgrade does not re-validate what exists): the operator must stand on its own."""
    saved = cluster.call(lambda api: api.admission)
    cluster.call(lambda api: setattr(api, "admission", None))
    try:
        cluster.create(JOBS, doc, doc["metadata"]["namespace"])
    finally:
        cluster.call(lambda api: setattr(api, "admission", saved))


def _events(cluster, namespace: str) -> list[dict[str, Any]]:
    return json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]


def test_hostile_neighbours_do_not_stall_crash_or_bloat_the_operator(cluster, tmp_path):
    for ns in (EVIL, GOOD):
        cluster.create("v1/namespaces", {"metadata": {"name": ns}})
    operator = Operator(cluster, tmp_path)
    operator.start()
    try:
        operator.wait_up()
        for mode in HOSTILE:
            # 2 s epochs: a trial lives long enough for a read to meet its deadline before it exits
            # (a read cut short by the trial's exit is a worker gone, not a problem).
            apply(cluster, _toy(f"evil-{mode}", EVIL, [mode, mode], parallelism=2, seconds=2.0), tmp_path)
        bomb = _toy("evil-format-query", EVIL, ["ok"], parallelism=1, seconds=0.2)
        bomb["spec"]["metrics"] = {
            "source": "prometheus",
            "prometheus": {"url": "http://127.0.0.1:9/", "query": 'x{trial:300000000}{job.nope}"'},
        }
        _create_unadmitted(cluster, bomb)
        apply(cluster, _toy("normal", GOOD, ["ok"] * 8, parallelism=2, seconds=0.4), tmp_path)
        cluster.wait_for(
            lambda: _done(cluster, GOOD, "normal") and all(_done(cluster, EVIL, f"evil-{m}") for m in HOSTILE),
            420,
            "every job to finish",
        )
        bombed = cluster.wait_for(lambda: _done(cluster, EVIL, "evil-format-query"), 60, "the bomb's status")
        assert bombed
        assert operator.proc is not None and operator.proc.poll() is None, "the operator exited"
        peak = _peak_rss_mib(operator.proc.pid)
        metrics = operator.scrape()
        events = _events(cluster, EVIL)
    finally:
        operator.stop()

    # The neighbour: every trial once, passes never held up by the hostile jobs.
    normal = _status(cluster, GOOD, "normal")
    assert normal["phase"] == "Succeeded" and normal["trials"]["completed"] == 8, normal
    trials = _study(operator, GOOD, "normal")
    assert sorted(t.number for t in trials) == list(range(8)) and all(t.state.name == "COMPLETE" for t in trials)
    passes = _pass_buckets(metrics, "normal")
    assert passes["1.0"] >= 0.95 * passes["+Inf"] > 0, passes
    # The operator: one start, bounded memory (a 200 MiB body read whole cost ~1 GiB before).
    assert operator.starts == 1 and peak < PEAK_RSS_MIB, f"peak RSS {peak:.0f} MiB"

    # Each hostile trial judged, with a reason that names what was wrong.
    judged = {}
    for mode, says in HOSTILE.items():
        for t in _study(operator, EVIL, f"evil-{mode}"):
            assert t.state.is_finished(), (mode, t)
            why = " ".join(str(t.user_attrs.get(k) or "") for k in ("metrics_problem", "fail_reason", "stop_reason"))
            assert says in why, (mode, t.state.name, t.user_attrs)
            judged.setdefault(mode, []).append(f"{t.state.name}: {why.strip()[:120]}")
    assert len(judged) == len(HOSTILE)
    bomb_status = _status(cluster, EVIL, "evil-format-query")
    assert bomb_status["phase"] == "Failed" and "spec.metrics.prometheus.query" in json.dumps(bomb_status)
    warnings = {e["reason"] for e in events if e.get("type") == "Warning"}
    assert "TrialMetricsUnreadable" in warnings, warnings
    log = operator.log.read_text()
    assert "Traceback" not in log and "PassFailed" not in json.dumps(normal)
    print(
        f"\nnormal job passes by bucket: {passes}\noperator peak RSS: {peak:.0f} MiB\n"
        + "\n".join(f"{m}: {v}" for m, v in judged.items())
    )


# ----------------------------------------------------------------------------- Secrets
SECRET_VALUE = "S3cret-e2e-" + base64.b32encode(os.urandom(10)).decode().rstrip("=")


def _secret(cluster, namespace: str, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    cluster.create("v1/secrets", {"metadata": {"name": name, "namespace": namespace}, "data": encoded})


def _nowhere(cluster, operator: Operator, namespace: str, value: str) -> None:
    """``value`` is in no status, no event, not in the operator's log or /metrics, and in no file
    name (nor file) on the studies volume."""
    for obj in cluster.list(JOBS, namespace):
        assert value not in json.dumps(obj.get("status") or {}), obj["metadata"]["name"]
    assert value not in json.dumps(_events(cluster, namespace))
    assert value not in operator.log.read_text()
    assert value not in operator.scrape()
    for root, dirs, files in os.walk(operator.study_dir):
        for name in dirs + files:
            assert value not in name, os.path.join(root, name)
            path = Path(root) / name
            if path.is_file():
                assert value.encode() not in path.read_bytes(), path


def test_a_secret_value_is_used_only_as_a_url_and_never_shown(cluster, tmp_path, postgres_url):
    ns = "team-s"
    cluster.create("v1/namespaces", {"metadata": {"name": ns}})
    # The issue's case 4: the key names the password. And a libpq URL whose query holds one.
    _secret(cluster, ns, "db", {"url": postgres_url, "password": SECRET_VALUE})
    host = postgres_url.split("@", 1)[1]  # 127.0.0.1:PORT/openautoglm_test
    _secret(cluster, ns, "libpq", {"url": f"postgresql://{host}?user=postgres&password={SECRET_VALUE}"})
    wrong_key = _toy("wrong-key", ns, ["ok"] * 2, parallelism=2, seconds=0.2)
    wrong_key["spec"]["storage"] = {"postgres": {"secretRef": {"name": "db", "key": "password"}}}
    libpq = _toy("libpq", ns, ["ok"] * 2, parallelism=2, seconds=0.2)
    libpq["spec"]["storage"] = {"postgres": {"secretRef": {"name": "libpq", "key": "url"}}}
    operator = Operator(cluster, tmp_path)
    operator.start()
    try:
        apply(cluster, wrong_key, tmp_path)
        apply(cluster, libpq, tmp_path)
        stalled = cluster.wait_for(
            _stalled_in(cluster, ns, "wrong-key", "StorageSecretInvalid"), 60, "StorageSecretInvalid"
        )
        assert f"{ns}/db" in stalled["message"] and "'password'" in stalled["message"], stalled
        cluster.wait_for(lambda: _done(cluster, ns, "libpq"), 180, "the libpq job")
        _nowhere(cluster, operator, ns, SECRET_VALUE)
    finally:
        operator.stop()
    shown = _status(cluster, ns, "libpq")
    assert shown["phase"] == "Succeeded", shown
    assert shown["studyStorage"] == f"postgresql://postgres:***@{host}", shown["studyStorage"]
    assert not [p for p in cluster.pods(ns) if p["metadata"]["name"].startswith("wrong-key")]
    assert "Traceback" not in operator.log.read_text()


def _stalled_in(cluster, namespace: str, name: str, reason: str):
    def check() -> dict | None:
        conds = {c["type"]: c for c in _status(cluster, namespace, name).get("conditions", [])}
        stall = conds.get("Stalled") or {}
        return stall if stall.get("status") == "True" and stall.get("reason") == reason else None

    return check


# ----------------------------------------------------------------------------- connections
@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        (
            "metrics",
            {"source": "prometheus", "prometheus": {"url": "http://169.254.169.254:80/latest"}},
            "OPENAUTOGLM_ALLOWED_PROMETHEUS_URLS",
        ),
        ("storage", {"postgres": {"url": "postgresql://tuner@10.255.0.1:5432/other_team"}}, "10.255.0.1:5432"),
    ],
    ids=["prometheus", "postgres"],
)
def test_a_server_the_operator_may_not_reach_stalls_the_job(cluster, tmp_path, field, value, says):
    doc = _toy("elsewhere", "default", ["ok"], parallelism=1, seconds=0.2)
    doc["spec"][field] = value
    operator = Operator(cluster, tmp_path)
    operator.start()
    try:
        apply(cluster, doc, tmp_path)
        stalled = cluster.wait_for(
            _stalled_in(cluster, "default", "elsewhere", "ConnectionNotAllowed"), 60, "ConnectionNotAllowed"
        )
    finally:
        operator.stop()
    assert says in stalled["message"], stalled
    assert not [p for p in cluster.pods("default") if p["metadata"]["name"].startswith("elsewhere")]
    assert not list(operator.study_dir.rglob("elsewhere-*")), "a study was created for a refused job"
