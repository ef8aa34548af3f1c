#!/usr/bin/env python
"""Overhead that should not grow: the engine's cost per trial and per pass, each against its floor
measured in the same run.

Cases (issue 10):

* ``local``: zero-work trials (bench/zero_trial.py: write the result, exit) through
  ``openautoglm tune``'s engine (``run_local``: the driver, the local backend, real processes),
  against spawning the same processes with the same environment and waiting for them, at
  parallelism 1 and 8. Overhead per trial = (engine - spawn) / trials.
* ``idle_pass``: one pass of the driver over a journal study holding 0, 10, 1,000 (and, without
  ``--quick``, 10,000) finished trials and one running trial that reports nothing new: what a pass
  costs when there is nothing to do, against the same pass at 10 trials; and what re-opening the
  study costs.

Not here yet (issue 10 is open): the operator against a bare driver through the same API, and
100 jobs on one operator.

Usage::

    python bench/operator_scale.py [--quick] [--repeats N] [--out DIR] [--before JSON]

``--before``: the JSON of a run of this script against older code (e.g. ``PYTHONPATH`` pointing at
a ``git worktree`` of an earlier commit), shown beside this run's numbers.

Writes ``operator_scale.json`` and ``operator_scale.md`` into ``--out`` (default
bench/results; ``--quick`` writes to a temporary directory unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import optuna
from optuna.distributions import FloatDistribution

from openautoglm.engine import attrs
from openautoglm.engine.driver import Driver
from openautoglm.engine.metrics import Reading
from openautoglm.engine.trials import RUNNING, TrialObservation, WorkerObservation
from openautoglm.engine.worker import build_worker_env
from openautoglm.local.runner import run_local
from openautoglm.validation import validate_document
from openautoglm_trial import contract as c

HERE: Final = Path(__file__).resolve().parent
RESULTS_DIR: Final = HERE / "results"
ZERO_TRIAL: Final = HERE / "zero_trial.py"
AIM_LOCAL_RATIO: Final = 1.2  # local engine at parallelism 1 vs spawning alone
AIM_IDLE_RATIO: Final = 2.0  # idle pass at 10,000 finished trials vs at 10


def zero_work_job(name: str, trials: int, parallelism: int) -> Any:
    return validate_document(
        {
            "apiVersion": "openautoglm.io/v1alpha1",
            "kind": "TuningJob",
            "metadata": {"name": name},
            "spec": {
                "objective": {"metric": "score", "direction": "maximize"},
                "budget": {"maxTrials": trials, "parallelism": parallelism, "maxFailedTrials": 0},
                "algorithm": {"sampler": "random", "seed": 1},
                "earlyStopping": {"pruner": "none"},
                "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}],
                "trial": {"command": [sys.executable, str(ZERO_TRIAL)], "epochs": 1, "workers": 1},
                "metrics": {"intervalSeconds": 0.5, "collector": {"kind": "native"}},
            },
        }
    )


# ----------------------------------------------------------------------------- local
def spawn_floor(job: Any, workdir: Path, trials: int, parallelism: int) -> float:
    """Seconds to start the same processes with the same environment, ``parallelism`` at a time."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAUTOGLM_", "HOROVOD_"))}
    t0 = time.perf_counter()
    running: list[subprocess.Popen] = []
    for number in range(trials):
        wdir = workdir / f"t{number}"
        wdir.mkdir(parents=True)
        host = c.worker_address(job.name, number, 0)
        env = build_worker_env(
            job, number, 0, {"x": 0.5}, [host], bind_address=host, termination_log=str(wdir / "termination-log")
        )
        running.append(
            subprocess.Popen(
                [sys.executable, str(ZERO_TRIAL)],
                env={**base, **env},
                cwd=wdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        if len(running) == parallelism:
            running.pop(0).wait()  # as the engine: the next starts when the oldest has finished
    for proc in running:
        proc.wait()
    return time.perf_counter() - t0


def engine_run(job: Any, workdir: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    result = run_local(job, workdir=workdir, base_dir=HERE)
    seconds = time.perf_counter() - t0
    assert result.status.phase == "Succeeded", result.status
    return seconds, result.status.counts["completed"]


def local_case(trials: int, parallelism: int, repeats: int) -> dict[str, Any]:
    spawn, engine = [], []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            job = zero_work_job(f"zero-p{parallelism}-r{r}", trials, parallelism)
            spawn.append(spawn_floor(job, Path(tmp) / "spawn", trials, parallelism))
            seconds, completed = engine_run(job, Path(tmp) / "engine")
            assert completed == trials
            engine.append(seconds)
    s, e = statistics.median(spawn), statistics.median(engine)
    return {
        "trials": trials,
        "parallelism": parallelism,
        "repeats": repeats,
        "spawn_seconds": spawn,
        "engine_seconds": engine,
        "spawn_median": s,
        "engine_median": e,
        "ratio": e / s,
        "overhead_ms_per_trial": 1000 * (e - s) / trials,
    }


# ----------------------------------------------------------------------------- idle pass
class _OneRunningTrial:
    """A backend whose one trial keeps running and reports nothing new: an idle pass."""

    def __init__(self, number: int) -> None:
        self.number = number

    def observe(self) -> dict[int, TrialObservation]:
        return {self.number: TrialObservation(self.number, [WorkerObservation(0, RUNNING, None)], 1)}

    def launch(self, number: int, params: dict[str, Any]) -> None:
        assert number == self.number, "an idle pass launched a trial"

    def stop(self, number: int, reason: str) -> None:
        raise AssertionError("an idle pass stopped a trial")

    def release(self, number: int) -> None:
        raise AssertionError("an idle pass released a trial")

    def update(self, job: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _NoReading:
    def read(self, trial: TrialObservation) -> Reading | None:
        return None


def _study_with(finished: int, path: Path) -> tuple[Any, str]:
    job = zero_work_job("idle", finished + 1000, 1)
    url = str(path)
    driver = Driver.open(job, url, _OneRunningTrial(finished), metrics=_NoReading())
    dist = {"x": FloatDistribution(0.0, 1.0)}
    batch = [
        optuna.trial.create_trial(
            params={"x": (i % 997) / 997},
            distributions=dist,
            value=(i % 997) / 997,
            user_attrs={attrs.TRIAL_PARAMS: {"x": (i % 997) / 997}},
        )
        for i in range(finished)
    ]
    driver.study.add_trials(batch)
    driver.step()  # asks and "launches" the running trial
    driver.step()  # marks it launched
    driver.close()
    return job, url


def idle_case(finished: int, passes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        job, url = _study_with(finished, Path(tmp) / "study.journal")
        t0 = time.perf_counter()
        driver = Driver.open(job, url, _OneRunningTrial(finished), metrics=_NoReading())
        reopen = time.perf_counter() - t0
        driver.step()
        times = []
        for _ in range(passes):
            t = time.perf_counter()
            driver.step()
            times.append(time.perf_counter() - t)
        assert len(driver.study.get_trials(deepcopy=False)) == finished + 1
    return {
        "finished": finished,
        "passes": passes,
        "pass_ms_median": 1000 * statistics.median(times),
        "pass_ms_p90": 1000 * sorted(times)[int(0.9 * (len(times) - 1))],
        "reopen_seconds": reopen,
    }


# ----------------------------------------------------------------------------- report
def render(doc: dict[str, Any]) -> str:
    before = doc.get("before") or {}
    old_local = {r["parallelism"]: r for r in before.get("local", [])}
    old_idle = {r["finished"]: r for r in before.get("idle_pass", [])}
    lines = [f"# Operator scale ({'quick' if doc['quick'] else 'full'} run, {doc['machine']})", ""]
    if before:
        lines += [f"Before: the same script on {before.get('code', 'older code')}.", ""]
    lines += [
        "## Local engine: zero-work trials against spawning the same processes",
        "",
        "| parallelism | trials | spawn only (s) | engine (s) | engine / spawn | overhead per trial (ms) "
        "| before: engine / spawn | before: overhead (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in doc["local"]:
        old = old_local.get(row["parallelism"])
        was = f"{old['ratio']:.2f} | {old['overhead_ms_per_trial']:.0f}" if old else "– | –"
        lines.append(
            f"| {row['parallelism']} | {row['trials']} | {row['spawn_median']:.2f} | "
            f"{row['engine_median']:.2f} | {row['ratio']:.2f} | {row['overhead_ms_per_trial']:.0f} | {was} |"
        )
    lines += [
        "",
        "## Idle pass against the number of finished trials",
        "",
        "| finished trials | pass median (ms) | pass p90 (ms) | vs 10 trials | re-open (s) "
        "| before: pass median (ms) | before: vs 10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in doc["idle_pass"]:
        old = old_idle.get(row["finished"])
        was = f"{old['pass_ms_median']:.2f} | {old['vs_10']:.1f}×" if old else "– | –"
        lines.append(
            f"| {row['finished']:,} | {row['pass_ms_median']:.2f} | {row['pass_ms_p90']:.2f} | "
            f"{row['vs_10']:.1f}× | {row['reopen_seconds']:.2f} | {was} |"
        )
    lines += ["", "## Aims", "", "| aim | measured | met |", "|---|---|---|"]
    for aim in doc["aims"]:
        lines.append(f"| {aim['aim']} | {aim['measured']} | {'met' if aim['met'] else 'not met'} |")
    lines += ["", f"Reproduce: `python bench/operator_scale.py{' --quick' if doc['quick'] else ''}`", ""]
    return "\n".join(lines)


def _git_head() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
        return f"commit {head.stdout.strip()}" if head.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the test suite's smoke run)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--before", type=Path, default=None, help="JSON of a run against older code")
    parser.add_argument("--code", default=None, help="what code this run measured (recorded in the JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    repeats = args.repeats or (1 if args.quick else 3)
    out = args.out or (Path(tempfile.mkdtemp(prefix="operator-scale-")) if args.quick else RESULTS_DIR)
    trials = 10 if args.quick else 40
    local = [local_case(trials, p, repeats) for p in (1, 8)]
    sizes = [0, 10, 1000] if args.quick else [0, 10, 1000, 10_000]
    idle = [idle_case(n, 20 if args.quick else 50) for n in sizes]
    at_10 = next(r["pass_ms_median"] for r in idle if r["finished"] == 10)
    for row in idle:
        row["vs_10"] = row["pass_ms_median"] / at_10
    largest = idle[-1]
    p1 = local[0]
    aims = [
        {
            "aim": f"local engine at parallelism 1 <= {AIM_LOCAL_RATIO}x spawning alone",
            "measured": f"{p1['ratio']:.2f}x ({p1['overhead_ms_per_trial']:.0f} ms per trial)",
            "met": p1["ratio"] <= AIM_LOCAL_RATIO,
        },
        {
            "aim": f"idle pass at {largest['finished']:,} finished trials <= {AIM_IDLE_RATIO}x the pass at 10",
            "measured": f"{largest['vs_10']:.1f}x ({largest['pass_ms_median']:.2f} ms vs {at_10:.2f} ms)",
            "met": largest["vs_10"] <= AIM_IDLE_RATIO,
        },
    ]
    doc = {
        "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "local": local,
        "idle_pass": idle,
        "aims": aims,
        "code": args.code or _git_head(),
    }
    if args.before:
        doc["before"] = json.loads(args.before.read_text())
        doc["before"].pop("before", None)
    out.mkdir(parents=True, exist_ok=True)
    (out / "operator_scale.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "operator_scale.md").write_text(render(doc))
    print(render(doc))
    print(f"wrote {out / 'operator_scale.json'} and {out / 'operator_scale.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
