"""A supervised program resumed from its own checkpoint: the supervisor's steps continue (issue 24).

The recorder with the steps file of the trial's checkpoint directory (unit level, the real file
on disk), and one real supervisor run twice over the same directory, as a retry does it.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from openautoglm_trial import contract
from openautoglm_trial.environment import ObjectiveMetric, Stopping
from openautoglm_trial.server import TrialMetrics
from openautoglm_trial.supervisor import stepfile
from openautoglm_trial.supervisor.recorder import Recorder, Report
from openautoglm_trial.supervisor.stepfile import StepFile

IDENTITY = stepfile.identity({"lr": 0.1, "hidden": 64}, 7)


class Run:
    """One run of a trial's supervisor: a recorder over the checkpoint directory, its gauges."""

    def __init__(self, directory: Path, *, writer: bool = True, ident: dict[str, Any] = IDENTITY, **stopping: Any):
        self.metrics = TrialMetrics()
        self.recorder = Recorder(
            (ObjectiveMetric("accuracy", "maximize"),),
            {"accuracy": "max", "loss": "min"},
            Stopping(**stopping),
            self.metrics,
            steps_file=StepFile(directory, ident, writer),
        )

    def report(self, **values: float) -> tuple[Any, int | None]:
        return self.recorder.add(Report(dict(values)))

    def epochs(self, *accuracies: float, first: int = 1) -> list[int | None]:
        """``epoch=N accuracy=A loss=1-A`` lines from epoch ``first``; the steps published."""
        return [self.report(epoch=first + i, accuracy=a, loss=1 - a)[1] for i, a in enumerate(accuracies)]

    def gauge(self) -> float | None:
        return self.metrics.registry.get_sample_value(contract.EPOCH_GAUGE)

    def history(self) -> dict[str, list[float | None]]:
        return self.recorder.result("completed", None, 1.0).history


def saved(directory: Path) -> dict[str, Any]:
    return json.loads((directory / stepfile.FILE).read_text())


def test_a_resumed_program_continues_the_numbering_and_the_whole_curve_counts(tmp_path):
    first = Run(tmp_path)
    assert first.epochs(0.5, 0.9, 0.6) == [1, 2, 3]
    doc = saved(tmp_path)
    assert doc["identity"] == IDENTITY and [s["key"] for s in doc["steps"]] == [1, 2, 3]
    assert not (tmp_path / (stepfile.FILE + ".tmp")).exists()
    # The retry's program printed "resuming after epoch 3": its first line is epoch 4.
    retry = Run(tmp_path)
    assert retry.gauge() == 0  # as a built-in task's: nothing of this run published yet
    assert retry.recorder.result("failed", "x", 1.0).epochs == 3
    assert retry.epochs(0.7, 0.8, first=4) == [4, 5]
    assert retry.gauge() == 5
    result = retry.recorder.result("completed", None, 1.0)
    assert result.epochs == 5
    assert result.history == {"accuracy": [0.5, 0.9, 0.6, 0.7, 0.8], "loss": pytest.approx([0.5, 0.1, 0.4, 0.3, 0.2])}
    # max/min over the whole trial: the best epoch was in the first run.
    assert result.metrics == {"accuracy": 0.9, "loss": pytest.approx(0.1)}
    assert [s["key"] for s in saved(tmp_path)["steps"]] == [1, 2, 3, 4, 5]


def test_a_program_resumed_from_an_older_checkpoint_replaces_the_epochs_it_repeats(tmp_path):
    Run(tmp_path).epochs(0.5, 0.6, 0.7, 0.8)
    retry = Run(tmp_path)
    # Its checkpoint is of epoch 2 (killed after printing 3 and 4 but before saving them):
    # batch losses, then epoch 3 again.
    assert retry.report(loss=0.9) == (None, None)
    assert retry.report(epoch=3, accuracy=0.65) == (None, 3)
    assert retry.gauge() == 3
    assert retry.history() == {"accuracy": [0.5, 0.6, 0.65], "loss": pytest.approx([0.5, 0.4, 0.9])}
    # The file holds what is recorded now: the first run's epoch 4 is gone with it.
    assert [s["key"] for s in saved(tmp_path)["steps"]] == [1, 2, 3]
    assert retry.epochs(0.75, first=4) == [4]
    assert retry.history()["accuracy"] == [0.5, 0.6, 0.65, 0.75]
    assert [s["values"]["accuracy"] for s in saved(tmp_path)["steps"]] == [0.5, 0.6, 0.65, 0.75]


def test_a_program_resumed_from_a_newer_checkpoint_leaves_the_unseen_epochs_empty(tmp_path):
    # Killed between its save of epoch 4 and our reading of its line: it resumes at 5.
    Run(tmp_path).epochs(0.5, 0.6, 0.7)
    retry = Run(tmp_path)
    assert retry.epochs(0.9, first=5) == [5]
    assert retry.history()["accuracy"] == [0.5, 0.6, 0.7, None, 0.9]
    # Keys that are not the step numbers (push steps of 100) are not gaps: no guessing.
    other = tmp_path / "other"
    first = Run(other)
    assert [first.report(epoch=100 * n, accuracy=0.5)[1] for n in (1, 2)] == [1, 2]
    assert Run(other).report(epoch=400, accuracy=0.6)[1] == 3


def test_patience_counts_the_epochs_of_earlier_runs(tmp_path):
    Run(tmp_path, patience=2).epochs(0.9, 0.5)
    retry = Run(tmp_path, patience=2)
    decision, step = retry.report(epoch=3, accuracy=0.6)
    assert step == 3 and decision is not None and decision.status == "completed"
    assert decision.reason == "early stopping: no improvement in 2 epochs (accuracy)"


def test_other_ranks_read_the_steps_but_only_rank_0_writes_them(tmp_path):
    Run(tmp_path).epochs(0.5, 0.6)
    before = (tmp_path / stepfile.FILE).read_text()
    rank1 = Run(tmp_path, writer=False)
    assert rank1.epochs(0.7, first=3) == [3]
    assert (tmp_path / stepfile.FILE).read_text() == before


def test_only_completed_steps_and_the_summarised_metrics_are_kept(tmp_path):
    run = Run(tmp_path)
    run.report(epoch=1, accuracy=0.5, loss=0.5, lr=0.1)
    run.report(loss=0.4)  # the next epoch's batch loss: that step is not complete
    assert saved(tmp_path)["steps"] == [{"key": 1, "values": {"accuracy": 0.5, "loss": 0.5}}]
    run.report(loss=math.nan, accuracy=0.6)
    assert json.loads((tmp_path / stepfile.FILE).read_text().replace("NaN", "null"))["steps"][1] == {
        "key": None,
        "values": {"loss": None, "accuracy": 0.6},
    }
    # Keyless steps (accuracy lines only) simply follow the earlier ones.
    assert Run(tmp_path).report(accuracy=0.7)[1] == 3


FOREIGN_FILES: dict[str, str | bytes] = {
    "another trial": json.dumps({"format": 1, "identity": stepfile.identity({"lr": 0.2}, 7), "steps": []}),
    "another seed": json.dumps({"format": 1, "identity": stepfile.identity({"lr": 0.1, "hidden": 64}, 8), "steps": []}),
    "a newer format": json.dumps({"format": 2, "identity": IDENTITY, "steps": []}),
    "not JSON": "{not json",
    "deep": "[" * 100_000,
    "a list": "[1, 2]",
    "not UTF-8": b"\xff\xfe{\x00",
    "steps not a list": json.dumps({"format": 1, "identity": IDENTITY, "steps": {"1": 0.5}}),
    "a bool key": json.dumps({"format": 1, "identity": IDENTITY, "steps": [{"key": True, "values": {}}]}),
    "a string value": json.dumps({"format": 1, "identity": IDENTITY, "steps": [{"key": 1, "values": {"a": "x"}}]}),
    "a huge key": json.dumps({"format": 1, "identity": IDENTITY, "steps": [{"key": 10**400, "values": {}}]}),
    "too many steps": json.dumps(
        {"format": 1, "identity": IDENTITY, "steps": [{"key": None, "values": {}}] * (stepfile.MAX_STEPS + 1)}
    ),
}


@pytest.mark.parametrize("content", FOREIGN_FILES.values(), ids=FOREIGN_FILES.keys())
def test_a_foreign_or_malformed_file_is_ignored_logged_and_overwritten(tmp_path, caplog, content):
    (tmp_path / stepfile.FILE).write_bytes(content if isinstance(content, bytes) else content.encode())
    with caplog.at_level(logging.WARNING, logger="openautoglm_trial"):
        run = Run(tmp_path)
    assert "ignoring the recorded steps in" in caplog.text
    assert run.epochs(0.5) == [1]
    assert saved(tmp_path) == {"format": 1, "identity": IDENTITY, "steps": [{"key": 1, "values": run_values(0.5)}]}


def run_values(accuracy: float) -> dict[str, float]:
    return {"accuracy": accuracy, "loss": 1 - accuracy}


def test_an_oversized_or_unreadable_file_is_ignored_and_an_unwritable_dir_logged_once(tmp_path, caplog):
    (tmp_path / stepfile.FILE).write_text(" " * (stepfile.MAX_CHARS + 1))
    with caplog.at_level(logging.WARNING, logger="openautoglm_trial"):
        assert Run(tmp_path).epochs(0.5) == [1]
    assert "longer than" in caplog.text
    (tmp_path / stepfile.FILE).unlink()
    (tmp_path / stepfile.FILE).mkdir()  # a directory in its place: unreadable and unwritable
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="openautoglm_trial"):
        run = Run(tmp_path)
        assert run.epochs(0.5, 0.6) == [1, 2]
    assert caplog.text.count("ignoring the recorded steps") == 1
    assert caplog.text.count("no longer recording steps") == 1
    assert run.history()["accuracy"] == [0.5, 0.6]


#: A program resuming from its own checkpoint in its argument's directory; it exits 1 right after
#: printing epoch ``argv[2]`` (a crash), so the trial's next run resumes after it.
RESUMING = """
import pathlib, sys
directory, crash = pathlib.Path(sys.argv[1]), int(sys.argv[2])
directory.mkdir(parents=True, exist_ok=True)
mine = directory / "mine.txt"
start = int(mine.read_text()) if mine.exists() else 0
for epoch in range(start + 1, 6):
    mine.write_text(str(epoch))
    print(f"epoch={epoch} accuracy={[0.5, 0.9, 0.6, 0.7, 0.8][epoch - 1]}", flush=True)
    if epoch == crash:
        sys.exit(1)
"""


def test_a_supervised_program_resumed_by_a_retry_reports_the_whole_trial(launch, tmp_path):
    checkpoints = tmp_path / "checkpoints" / "trial-3"
    env = {contract.CHECKPOINT_DIR: str(checkpoints)}

    def run(crash: int) -> dict[str, Any]:
        argv = [sys.executable, "-c", RESUMING, contract.CHECKPOINT_PLACEHOLDER, str(crash)]
        trial = launch(
            1,
            params={"lr": 0.1},
            objectives=[{"metric": "accuracy", "direction": "maximize"}],
            extra={contract.COMMAND: json.dumps(argv), **env},
        )
        trial.wait()
        return trial.results()[0]

    crashed = run(crash=3)
    assert crashed["status"] == "failed" and crashed["epochs"] == 3
    resumed = run(crash=0)
    assert resumed["status"] == "completed", resumed
    assert resumed["epochs"] == 5 and resumed["history"] == {"accuracy": [0.5, 0.9, 0.6, 0.7, 0.8]}
    assert resumed["metrics"] == {"accuracy": 0.9}
    assert [s["key"] for s in saved(checkpoints)["steps"]] == [1, 2, 3, 4, 5]
