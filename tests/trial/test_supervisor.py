"""The trial supervisor: users' unchanged programs (tests/trial/programs) as trial workers.

Real processes throughout: ``python -m openautoglm_trial`` with ``OPENAUTOGLM_COMMAND`` in the
pod environment the backends build (see conftest.worker_envs), the program as its child.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from openautoglm_trial import contract
from openautoglm_trial.environment import ObjectiveMetric, Stopping
from openautoglm_trial.errors import SettingsError
from openautoglm_trial.server import TrialMetrics
from openautoglm_trial.supervisor import command
from openautoglm_trial.supervisor.collectors import PrometheusCollector
from openautoglm_trial.supervisor.parsers import parse_exposition, parse_json, parse_text
from openautoglm_trial.supervisor.recorder import Recorder, Report

PROGRAMS = Path(__file__).parent / "programs"
KATIB = str(PROGRAMS / "katib_program.py")
ACCURACY = [{"metric": "accuracy", "direction": "maximize"}]
DEFAULT_FILTER = __import__("re").compile(contract.DEFAULT_METRIC_FILTER)


def supervise(
    launch,
    argv: list[str],
    *,
    size: int = 1,
    collector: dict[str, Any] | None = None,
    objectives: list[dict[str, str]] | None = None,
    additional: list[str] | None = None,
    strategies: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    stopping: dict[str, Any] | None = None,
    extra: dict[str, str] | None = None,
    rank0_delay: float = 0.0,
):
    """Start ``size`` supervisors of ``argv`` (``{rank}`` in an item becomes the rank)."""
    env = {contract.COMMAND: json.dumps(argv)}
    if collector is not None:
        env[contract.COLLECTOR] = json.dumps(collector)
    if additional is not None:
        env[contract.ADDITIONAL_METRICS] = json.dumps(additional)
    if strategies is not None:
        env[contract.METRIC_STRATEGIES] = json.dumps(strategies)
    return launch(
        size,
        rank0_delay=rank0_delay,
        params=params,
        stopping=stopping,
        objectives=ACCURACY if objectives is None else objectives,
        extra={**env, **(extra or {})},
    )


def metrics_of(worker) -> dict[str, Any]:
    """The supervisor's /metrics: {"epoch": n, metric name: value}, or {} if not answering."""
    status, body = worker.get("/metrics")
    if status != 200:
        return {}
    values: dict[str, Any] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == contract.METRIC_GAUGE:
                values[sample.labels["metric"]] = sample.value
            elif sample.name == contract.EPOCH_GAUGE:
                values["epoch"] = sample.value
    return values


def wait_for(predicate, trial, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll until ``predicate()`` holds while every worker runs."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {timeout}s\n{trial.logs()}"
        assert all(w.process.poll() is None for w in trial.workers), trial.logs()
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- collectors
def test_stdout_katib_lines_live_metrics_and_result(launch, tmp_path):
    go = tmp_path / "go"
    trial = supervise(
        launch,
        [
            sys.executable,
            KATIB,
            "--accuracy",
            "0.5",
            "0.7",
            "0.6",
            "--loss",
            "1.2",
            "0.8",
            "0.9",
            "--wait-for",
            str(go),
        ],
        additional=["loss"],
        strategies={"loss": "min"},
    )
    worker = trial.workers[0]
    # While the program waits before its last epoch, its values are on *our* /metrics.
    wait_for(lambda: metrics_of(worker).get("epoch") == 2, trial, what="epoch 2 on /metrics")
    live = metrics_of(worker)
    assert live["accuracy"] == pytest.approx(0.7) and live["loss"] == pytest.approx(0.8)
    assert worker.get("/readyz")[0] == 200 and worker.get("/healthz")[0] == 200
    go.touch()
    assert trial.wait(timeout=20) == [0], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "completed" and result["reason"] is None
    assert result["epochs"] == 3
    assert result["history"] == {"accuracy": [0.5, 0.7, 0.6], "loss": [1.2, 0.8, 0.9]}
    assert result["metrics"] == {"accuracy": 0.7, "loss": 0.8}  # max (direction), min (given)
    assert result["best"] == {"accuracy": 0.7}
    log = worker.log()
    assert "epoch=3 accuracy=0.6 loss=0.9" in log and "a line without metrics" in log


def test_parameters_fill_one_argv_item_each_and_inactive_ones_drop(launch, tmp_path):
    canary = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    recorded = tmp_path / "argv.json"
    tag = f"$(touch {canary}); `touch {canary}` a b"
    trial = supervise(
        launch,
        [
            sys.executable,
            KATIB,
            "--record-argv",
            str(recorded),
            "--epochs",
            "1",
            "--lr=${trialParameters.lr}",
            "${trialParameters.tag}",
            "--flag=${trialParameters.flag}",
            "--layers",
            "${trialParameters.layers}",
            "--beta1=${trialParameters.beta1}",
            "--opt=${trialParameters.optimizer}-${trialParameters.lr}",
        ],
        params={"lr": 0.0001, "tag": tag, "flag": True, "layers": 3, "optimizer": "adam"},
    )
    assert trial.wait(timeout=20) == [0], trial.logs()
    assert json.loads(recorded.read_text()) == [
        "--record-argv",
        str(recorded),
        "--epochs",
        "1",
        "--lr=0.0001",
        tag,
        "--flag=true",
        "--layers",
        "3",
        "--opt=adam-0.0001",
    ]
    assert not canary.exists()
    assert "dropping command item '--beta1=${trialParameters.beta1}'" in trial.workers[0].log()


def test_file_collector_text_lines(launch, tmp_path):
    # The file appears only after the program has run a while; loss follows its default
    # strategy (latest) as an additional metric.
    path = tmp_path / "metrics-{rank}.log"
    trial = supervise(
        launch,
        [sys.executable, KATIB, "--mode", "file-text", "--file", str(path), "--file-delay", "0.5"],
        collector={"kind": "file", "path": str(path), "format": "text"},
        additional=["loss"],
    )
    assert trial.wait(timeout=20) == [0], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "completed", result
    assert result["history"]["accuracy"] == [0.6, 0.7, 0.8]
    assert result["metrics"] == {"accuracy": 0.8, "loss": pytest.approx(0.9)}
    assert result["epochs"] == 3


def test_file_collector_json_lines(launch, tmp_path):
    # Katib's JSON format: numbers or numeric strings; timestamp and text fields are no metrics.
    path = tmp_path / "metrics.json"
    trial = supervise(
        launch,
        [sys.executable, KATIB, "--mode", "file-json", "--file", str(path)],
        collector={"kind": "file", "path": str(path), "format": "json"},
        objectives=[{"metric": "loss", "direction": "minimize"}],
        additional=["accuracy"],
    )
    assert trial.wait(timeout=20) == [0], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "completed", result
    assert result["history"]["loss"] == pytest.approx([1.3, 1.1, 0.9])
    assert result["best"] == {"loss": pytest.approx(0.9)}
    assert result["metrics"]["accuracy"] == 0.8
    assert set(result["history"]) == {"loss", "accuracy"}


def test_push_client(launch):
    trial = supervise(
        launch,
        [sys.executable, str(PROGRAMS / "push_program.py")],
        collector={"kind": "push"},
        params={"lr": 0.003},
        additional=["Validation-accuracy"],
        strategies={"Validation-accuracy": "max"},
    )
    assert trial.wait(timeout=20) == [0], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "completed", result
    assert result["history"]["accuracy"] == pytest.approx([0.3, 0.6, 0.9])
    assert result["metrics"] == pytest.approx({"accuracy": 0.9, "Validation-accuracy": 0.3})
    assert "pushed" in trial.workers[0].log()


def test_push_client_without_a_supervisor_prints_katib_lines(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(PROGRAMS.parents[2] / "trial_image"),
        contract.PARAMS: json.dumps({"lr": 0.001}),
    }
    out = subprocess.run(
        [sys.executable, str(PROGRAMS / "push_program.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    lines = out.splitlines()
    assert lines[0] == "epoch=1 accuracy=0.1 loss=1.0 Validation-accuracy=0.1"
    assert parse_text(lines[2], DEFAULT_FILTER) == {
        "epoch": 3.0,
        "accuracy": 0.3,
        "loss": pytest.approx(1 / 3),
        "Validation-accuracy": pytest.approx(0.3),
    }


def test_prometheus_collector_scrapes_the_programs_own_endpoint(launch):
    port = free_port()
    trial = supervise(
        launch,
        [
            sys.executable,
            KATIB,
            "--mode",
            "prometheus",
            "--port",
            str(port),
            "--epochs",
            "2",
            "--epoch-seconds",
            "1.3",
            "--then-sleep",
            "1.5",
        ],
        collector={"kind": "prometheus", "port": port},
        additional=["loss"],
    )
    assert trial.wait(timeout=20) == [0], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "completed", result
    assert result["metrics"]["accuracy"] == pytest.approx(0.7)
    assert result["metrics"]["loss"] == pytest.approx(1.1)
    assert result["history"]["accuracy"][-1] == pytest.approx(0.7)
    assert 1 <= result["epochs"] <= 2


# ----------------------------------------------------------------------------- endings
def test_sigterm_reaches_the_program_and_ends_as_terminated(launch, tmp_path):
    marker = tmp_path / "sigterm"
    trial = supervise(
        launch, [sys.executable, KATIB, "--wait-for", str(tmp_path / "never"), "--sigterm-marker", str(marker)]
    )
    wait_for(lambda: metrics_of(trial.workers[0]).get("epoch") == 2, trial, what="epoch 2")
    sent = time.monotonic()
    trial.signal(signal.SIGTERM)
    assert trial.wait(timeout=15) == [143], trial.logs()
    assert time.monotonic() - sent < 5
    assert marker.read_text() == "SIGTERM"
    result = trial.results()[0]
    assert result["status"] == "failed" and result["reason"] == "terminated"
    assert result["epochs"] == 2 and result["history"]["accuracy"] == [0.6, 0.7]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--exit-code", "3"], "the program exited with code 3: training done"),
        (["--raise-error", "boom"], "the program exited with code 1: ValueError: boom"),
    ],
)
def test_a_crash_fails_with_the_exit_code_and_last_stderr_line(launch, args, reason):
    trial = supervise(launch, [sys.executable, KATIB, "--epochs", "1", *args])
    assert trial.wait(timeout=20) == [1], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "failed" and result["reason"] == reason
    assert result["history"]["accuracy"] == [0.6]  # what was collected is kept


def test_exit_0_without_the_objective_fails_saying_what_was_reported(launch):
    trial = supervise(launch, [sys.executable, KATIB, "--no-objective"])
    assert trial.wait(timeout=20) == [1], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "failed"
    assert result["reason"] == (
        "the program exited 0 without reporting the objective metric "
        "'accuracy' (collector stdout; it reported: epoch, loss)"
    )


def test_nan_loss_stops_the_program(launch):
    started = time.monotonic()
    # After the NaN the program would sleep 30 s: the supervisor must stop it.
    trial = supervise(launch, [sys.executable, KATIB, "--loss", "1.0", "nan", "0.5"])
    assert trial.wait(timeout=20) == [0], trial.logs()
    assert time.monotonic() - started < 15
    result = trial.results()[0]
    assert result["status"] == "stopped"
    assert result["reason"] == "diverged: loss is nan at epoch 2"
    assert result["history"]["accuracy"] == [0.6, 0.7]
    assert result["info"]["exit_code"] == -signal.SIGTERM
    assert "NaN" not in trial.workers[0].termination_log.read_text()


def test_patience_ends_the_trial_as_completed(launch):
    trial = supervise(
        launch,
        [
            sys.executable,
            KATIB,
            "--epochs",
            "6",
            "--epoch-seconds",
            "0.3",
            "--accuracy",
            "0.5",
            "0.4",
            "0.5",
            "0.9",
            "0.9",
            "0.9",
        ],
        stopping={"patience": 2},
    )
    assert trial.wait(timeout=20) == [0], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "completed"
    assert result["reason"] == "early stopping: no improvement in 2 epochs (accuracy)"
    assert result["epochs"] == 3 and result["metrics"]["accuracy"] == 0.5


@pytest.mark.parametrize(
    ("argv", "collector", "words"),
    [
        (["no-such-program-zz9"], None, "the program 'no-such-program-zz9' was not found on PATH"),
        ([sys.executable, KATIB], "{not json", f"{contract.COLLECTOR} is not valid JSON"),
        ([sys.executable, KATIB], {"kind": "stdout", "filter": "(unclosed"}, "is not a valid regular expression"),
        ([sys.executable, KATIB], {"kind": "stdout", "filter": r"(\w+)=\d+"}, "needs two groups"),
        ([sys.executable, KATIB], {"kind": "file"}, "path is required for the file collector"),
        ([sys.executable, "--x=${trialParameters.}"], None, "does not name a parameter"),
    ],
)
def test_bad_inputs_fail_before_the_program_starts(launch, argv, collector, words):
    extra = {}
    if isinstance(collector, str):
        extra[contract.COLLECTOR] = collector
        collector = None
    started = time.monotonic()
    trial = supervise(launch, argv, collector=collector, extra=extra)
    assert trial.wait(timeout=20) == [1], trial.logs()
    assert time.monotonic() - started < 10
    result = trial.results()[0]
    assert result["status"] == "failed" and words in result["reason"], result


def test_a_program_that_is_not_executable(launch, tmp_path):
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/sh\necho epoch=1 accuracy=1\n")
    trial = supervise(launch, [str(script)])
    assert trial.wait(timeout=20) == [1], trial.logs()
    assert trial.results()[0]["reason"] == (f"the program '{script}' cannot be executed: Permission denied")


# ----------------------------------------------------------------------------- Horovod
@pytest.mark.horovod
def test_two_ranks_of_a_plain_horovod_script(launch):
    trial = supervise(launch, [sys.executable, str(PROGRAMS / "hvd_script.py")], size=2, additional=["loss", "size"])
    assert trial.wait(timeout=60) == [0, 0], trial.logs()
    first, second = trial.results()
    for rank, result in enumerate((first, second)):
        assert result["rank"] == rank
        assert result["status"] == "completed", trial.logs()
    # 1 + 2 allreduced over both ranks.
    assert first["metrics"] == pytest.approx({"accuracy": 0.3, "loss": 1 / 3, "size": 2.0})
    assert first["epochs"] == 1


@pytest.mark.horovod
def test_a_divergence_seen_by_rank_0_only_stops_every_rank(launch):
    # Only rank 0 prints; both programs then wait in collectives for ever. Rank 1's supervisor
    # learns of rank 0's decision through the rendezvous store and stops its program too.
    trial = supervise(launch, [sys.executable, str(PROGRAMS / "hvd_script.py"), "--diverge"], size=2, rank0_delay=1.0)
    assert trial.wait(timeout=60) == [0, 0], trial.logs()
    first, second = trial.results()
    assert first["status"] == second["status"] == "stopped"
    assert first["reason"] == second["reason"] == "diverged: loss is nan at epoch 1"


# ----------------------------------------------------------------------------- pure parts
def test_render_formats_values():
    params = {"s": "a b", "t": True, "f": False, "i": 7, "x": 1e-05, "y": 0.1, "n": None}
    assert command.render(
        [
            "p",
            "${trialParameters.s}",
            "-t=${trialParameters.t}",
            "-f=${trialParameters.f}",
            "${trialParameters.i}",
            "${trialParameters.x}",
            "${trialParameters.y}",
            "${trialParameters.n}",
            "--gone=${trialParameters.z}",
        ],
        params,
    ) == ["p", "a b", "-t=true", "-f=false", "7", "1e-05", "0.1", "null"]
    with pytest.raises(SettingsError, match="empty"):
        command.render(["${trialParameters.z}"], {})
    assert command.render([r"--re=\1${trialParameters.s}"], params) == [r"--re=\1a b"]


def test_default_filter_reads_exponents_nan_and_katib_names():
    line = "INFO epoch=2 Validation-accuracy=0.91 lr=1e-3 val.loss=-2.5E+2 loss=nan grad_norm=inf step: 4 note=abc"
    values = parse_text(line, DEFAULT_FILTER)
    assert values["epoch"] == 2 and values["Validation-accuracy"] == 0.91
    assert values["lr"] == 0.001 and values["val.loss"] == -250.0
    assert math.isnan(values["loss"]) and values["grad_norm"] == math.inf
    assert "note" not in values and "step" not in values
    assert parse_json('{"loss": "0.5", "acc": 1, "ok": true, "timestamp": 3, "t": "x"}') == {"loss": 0.5, "acc": 1.0}


def test_exposition_accepts_plain_gauges_counters_and_our_own_form():
    text = (
        "# TYPE accuracy gauge\naccuracy 0.75\n"
        "# TYPE samples_total counter\nsamples_total 10\n"
        "# TYPE python_gc_total counter\npython_gc_total 5\n"
        f'# TYPE {contract.METRIC_GAUGE} gauge\n{contract.METRIC_GAUGE}{{metric="f1"}} 0.5\n'
        f"# TYPE {contract.EPOCH_GAUGE} gauge\n{contract.EPOCH_GAUGE} 4\n"
    )
    values, step = parse_exposition(text, lambda name: name in {"accuracy", "samples", "f1"})
    assert values == {"accuracy": 0.75, "samples": 10.0, "f1": 0.5} and step == 4


def _recorder(**stopping: Any) -> Recorder:
    return Recorder(
        (ObjectiveMetric("accuracy", "maximize"),),
        {"accuracy": "max", "loss": "latest"},
        Stopping(**stopping),
        TrialMetrics(),
    )


def test_steps_without_a_step_metric_and_with_late_epoch_lines():
    recorder = _recorder()
    for values in (
        {"loss": 2.0},
        {"loss": 1.5},
        {"accuracy": 0.5},
        {"loss": 1.0},
        {"accuracy": 0.6},
        {"accuracy": 0.4, "loss": 0.9},
    ):
        recorder.add(Report(values))
    result = recorder.result("completed", None, 1.0)
    assert result.history == {"accuracy": [0.5, 0.6, 0.4], "loss": [1.5, 1.0, 0.9]}
    # Batch losses before "epoch=0 ..." belong to that epoch; epoch 0 is step 1.
    recorder = _recorder()
    for values in (
        {"loss": 2.0},
        {"epoch": 0, "accuracy": 0.5},
        {"epoch": 1, "loss": 1.0},
        {"epoch": 1, "accuracy": 0.7},
    ):
        recorder.add(Report(values))
    result = recorder.result("completed", None, 1.0)
    assert result.history == {"accuracy": [0.5, 0.7], "loss": [2.0, 1.0]} and result.epochs == 2


def test_gradient_norm_above_the_limit_stops():
    recorder = _recorder(max_grad_norm=100.0)
    assert recorder.add(Report({"epoch": 1, "grad_norm": 50.0}))[0] is None
    decision, _ = recorder.add(Report({"epoch": 2, "grad_norm": 500.0}))
    assert decision is not None and decision.status == "stopped"
    assert decision.reason == ("diverged: gradient norm (grad_norm) 500 exceeds maxGradNorm 100 at epoch 2")
    assert _recorder(divergence_check=False).add(Report({"loss": math.nan}))[0] is None


def test_scrapes_pass_on_changes_or_everything_on_a_new_step():
    reports: list[Report] = []
    collector = PrometheusCollector(reports.append, ["http://127.0.0.1:1/metrics"], lambda name: True, "epoch")
    assert collector._changes({"accuracy": 0.5, "loss": 1.0}, None) == ({"accuracy": 0.5, "loss": 1.0}, None)
    assert collector._changes({"accuracy": 0.5, "loss": 0.8}, None) == ({"loss": 0.8}, None)
    assert collector._changes({"accuracy": 0.5, "loss": 0.8}, None) == ({}, None)
    # With a step, a new step repeats everything (the same accuracy twice is two epochs).
    assert collector._changes({"accuracy": 0.5, "epoch": 1.0}, None) == ({"accuracy": 0.5, "epoch": 1.0}, 1.0)
    assert collector._changes({"accuracy": 0.5, "epoch": 2.0}, None) == ({"accuracy": 0.5, "epoch": 2.0}, 2.0)
    assert collector._changes({"accuracy": 0.5, "epoch": 2.0}, None) == ({}, None)
