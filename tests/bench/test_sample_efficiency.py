"""bench/sample_efficiency.py: the manual procedure, the accounting, and a --quick smoke run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from openautoglm import samplers
from openautoglm.validation import validate_document

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import inprocess  # noqa: E402
import sample_efficiency as se  # noqa: E402

DIGITS = next(b for b in se.PROFILES["full"] if b.task == "digits")
TABLES = ("### Per method", "### In the shape of the Open-AutoGLM claim", "### Pruning", "### Aims")


class FakeWorker:
    """Scores a configuration by a fixed rule; reports one value per epoch like a trial."""

    def __init__(self, score, epochs: int = 4) -> None:
        self.score, self.epochs, self.calls = score, epochs, []

    def run(self, job, number, params, report):
        self.calls.append((number, dict(params)))
        value = self.score(params)
        for epoch in range(1, self.epochs + 1):
            try:
                report(epoch, value * epoch / self.epochs)
            except optuna.TrialPruned:
                return "pruned", None, epoch
        return "complete", value, self.epochs


def job(method: se.Method, bench: se.TaskBench = DIGITS, seed: int = 1):
    return validate_document(se.build_job_document(bench, method, seed))


def record(number: int, state: str, value: float | None, seconds: float = 1.0):
    return inprocess.TrialRecord(number, {}, state, value, 4, 0.0, seconds, 0.0, seconds)


@pytest.mark.parametrize("bench", se.PROFILES["full"] + se.PROFILES["quick"], ids=lambda b: f"{b.task}-{b.epochs}ep")
def test_every_method_is_a_valid_tuning_job(bench):
    names = [m.name for m in se.methods(bench)]
    assert names[0] == "manual" and bench.shipped in names
    assert {"random", "tpe", "gp", "cmaes", "tpe+hyperband"} <= set(names)
    assert ("policy-gradient" in names) == ("policy-gradient" in samplers.SAMPLERS)
    # The headline task runs every sampler also without the defaults trial; the control does not.
    without = [n for n in names if n.endswith(se.NO_DEFAULTS)]
    assert len(without) == ((len(names) - 1) // 2 if bench.without_defaults else 0)
    for method in se.methods(bench):
        spec = job(method, bench).spec
        assert spec.trial.task == bench.task and spec.trial.epochs == bench.epochs
        assert spec.early_stopping.pruner == method.pruner
        assert spec.algorithm.start_from_defaults == method.defaults


def test_the_headline_task_has_headroom_and_a_whole_manual_procedure():
    text_lm = next(b for b in se.PROFILES["full"] if b.task == "text-lm")
    space = {p["name"] for p in se.tasks.default_search_space("text-lm")}
    assert {s.name for s in text_lm.sweeps} == space  # every parameter swept
    manual = se.Method("manual", None)
    records = inprocess.run_manual(FakeWorker(lambda p: 5.0), job(manual, text_lm), text_lm.sweeps, text_lm.passes)
    rounds = len(records)
    assert rounds >= 12 and text_lm.budget == rounds  # every method gets the manual procedure's rounds
    assert len(text_lm.engine_seeds) >= 3 and text_lm.without_defaults


def test_a_sampler_run_starts_from_the_defaults_only_when_asked():
    on = FakeWorker(lambda p: p["lr"], epochs=DIGITS.epochs)
    inprocess.run_sampler(on, job(se.Method("random", "random")))
    first = on.calls[0][1]
    assert (first["lr"], first["hidden"], first["optimizer"]) == (1e-3, 128, "adam")  # digits' defaults
    off = FakeWorker(lambda p: p["lr"], epochs=DIGITS.epochs)
    inprocess.run_sampler(off, job(se.Method("random", "random", defaults=False)))
    assert off.calls[0][1] != first


def test_manual_sweeps_one_parameter_at_a_time_and_keeps_the_best():
    # Best at lr 3e-3, hidden 256; everything else is neutral.
    def score(p: dict[str, Any]) -> float:
        return 0.9 - abs(p["lr"] - 3e-3) - (0.01 if p["hidden"] != 256 else 0.0)

    worker = FakeWorker(score)
    records = inprocess.run_manual(worker, job(se.Method("manual", None)), DIGITS.sweeps, passes=2)

    configs = [params for _, params in worker.calls]
    assert configs[0] == {
        "lr": 1e-3,
        "batch_size": 64,
        "hidden": 128,
        "layers": 2,
        "dropout": 0.1,
        "optimizer": "adam",
    }  # the task's defaults
    assert [c["lr"] for c in configs[1:5]] == [1e-4, 3e-4, 3e-3, 1e-2]  # x0.1 .. x10, x1 skipped
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == len(configs)  # no repeats
    assert [n for n, _ in worker.calls] == list(range(len(records)))  # trial numbers = rounds
    best = max(records, key=lambda r: r.value)
    assert best.params["lr"] == 3e-3 and best.params["hidden"] == 256
    # The second pass sweeps around the new best: lr x10 of 3e-3 is 0.03.
    assert any(c["lr"] == 0.03 for c in configs)
    assert all(r.epochs == 4 and r.state == "complete" for r in records)  # no pruning


def test_manual_skips_values_outside_the_search_space():
    worker = FakeWorker(lambda p: 0.5 if p["lr"] == 1e-4 else 0.1)
    inprocess.run_manual(worker, job(se.Method("manual", None)), DIGITS.sweeps[:1], passes=2)
    lrs = [params["lr"] for _, params in worker.calls]
    assert min(lrs) == 1e-4  # 1e-5 (x0.1 of the best, 1e-4) is below the space's low
    assert all(1e-4 <= lr <= 0.3 for lr in lrs)


def test_sampler_run_counts_pruned_trials_and_never_prunes_after_the_last_epoch():
    worker = FakeWorker(lambda p: p["lr"], epochs=DIGITS.epochs)
    records = inprocess.run_sampler(worker, job(se.Method("tpe+hyperband", "tpe", "hyperband")))

    assert len(records) == DIGITS.budget
    pruned = [r for r in records if r.state == "pruned"]
    assert pruned and all(r.epochs < DIGITS.epochs and r.value is None for r in pruned)
    assert all(r.epochs == DIGITS.epochs for r in records if r.state == "complete")
    assert all(r.ask_s >= 0 and r.run_s >= 0 and r.tell_s >= 0 for r in records)


def test_sampler_runs_are_reproducible_pruning_included():
    def run():
        worker = FakeWorker(lambda p: p["lr"], epochs=DIGITS.epochs)
        records = inprocess.run_sampler(worker, job(se.Method("tpe+hyperband", "tpe", "hyperband")))
        return [(r.params, r.state, r.epochs) for r in records]

    assert run() == run()


def test_trials_and_time_to_target_count_every_trial_up_to_the_first_that_reaches_it():
    records = [
        record(0, "complete", 0.90),
        record(1, "pruned", None),
        record(2, "complete", 0.97),
        record(3, "complete", 0.95),
    ]
    assert inprocess.improves(0.97, 0.95, "maximize") and not inprocess.improves(0.97, 0.95, "minimize")
    assert se.best_so_far(records, "maximize") == [0.90, 0.90, 0.97, 0.97]

    reached = se.seed_summary(records, "maximize", target=0.96)
    assert (reached["trials_to_target"], reached["time_to_target_s"]) == (3, 3.0)
    assert (reached["best"], reached["pruned"], reached["total_s"]) == (0.97, 1, 4.0)

    missed = se.seed_summary(records, "maximize", target=0.98)
    assert missed["trials_to_target"] is None and missed["time_to_target_s"] is None

    loss = se.seed_summary([record(0, "complete", 7.0), record(1, "complete", 6.5)], "minimize", 6.6)
    assert loss["trials_to_target"] == 2 and loss["best"] == 6.5


def test_spread_ranks_not_reached_last():
    assert se.spread([3, None, 5]) == {"median": 5, "min": 3, "max": None}
    assert se.spread([None, None, 2])["median"] is None
    assert se.median_target([0.97, None, 0.98, 0.96]) == 0.97


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("horovod") is None, reason="horovod is not installed")
def test_quick_run_writes_every_method_and_every_table(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "sample_efficiency.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = json.loads((tmp_path / "sample_efficiency.json").read_text())
    assert result["mode"] == "quick" and result["machine"]["horovod"]
    assert len(result["load_average"]["before"]) == 3 and result["runtime_s"] > 0
    assert set(result["tasks"]) == {"digits", "text-lm"}
    benches = {b.task: b for b in se.PROFILES["quick"]}
    for task in result["tasks"].values():
        assert isinstance(task["target"], float)
        assert list(task["methods"]) == [m.name for m in se.methods(benches[task["task"]])]
        for name, method in task["methods"].items():
            summary = method["summary"]
            assert summary["seeds"] == len(method["per_seed"]) >= 1, name
            assert isinstance(summary["best"]["median"], float), name
            assert summary["total_s"]["median"] > 0 and summary["trials_run"]["median"] >= 1, name
            for seed in method["per_seed"]:
                assert seed["trials"] and all("params" in t and "run_s" in t for t in seed["trials"])
        assert {"manual", "shipped"} <= set(task["claim"])
        if benches[task["task"]].engine_seeds:  # the shipped row at real cost, through the engine
            engine = task["engine"]
            assert engine["method"] == task["shipped"] and engine["seeds"] == len(benches[task["task"]].engine_seeds)
            assert all(r["phase"] == "Succeeded" and r["cpu_s"] > 0 for r in engine["runs"])
            assert task["claim"]["shipped"]["measured"].startswith("through the engine")
            # The manual procedure's rounds through the engine reproduce its in-process values
            # (same trial numbers, same seeds): only the cost differs.
            manual = task["engine_manual"]
            assert manual["seeds"] == len(benches[task["task"]].engine_seeds)
            inprocess = {s["seed"]: s for s in task["methods"]["manual"]["per_seed"]}
            for run in manual["per_seed"]:
                mine = inprocess[run["seed"]]["trials"]
                assert [t["params"] for t in run["trials"]] == [t["params"] for t in mine]
                assert [t["value"] for t in run["trials"]] == pytest.approx([t["value"] for t in mine], rel=1e-6)
                assert run["cpu_s"] > sum(t["cpu_s"] for t in run["trials"])  # the workers' CPU counted
            assert task["claim"]["manual_engine"]["minutes"] > 0
            assert "(both through the engine)" in task["aims"][1]["aim"]
        assert 0 <= task["pruning"]["epochs_cut"] <= 1
        assert all(isinstance(a["met"], bool) for a in task["aims"])

    md = (tmp_path / "sample_efficiency.md").read_text()
    assert md.count("## ") >= 2 and "Load average" in md
    for table in TABLES:
        assert md.count(table) == 2, table  # once per task
    for name in task["methods"]:
        assert f"| {name} |" in md

    # The tables are a function of the JSON alone.
    before = md
    (tmp_path / "sample_efficiency.md").unlink()
    assert se.main(["--render", str(tmp_path / "sample_efficiency.json")]) == 0
    assert (tmp_path / "sample_efficiency.md").read_text() == before
