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

* ``one_job``, ``many_jobs``, ``large_study``: the operator in the emulated cluster (see
  bench/operator_cluster.py): one job against a bare driver; N jobs at once (no starvation, CPU
  per trial, memory, status size); a job whose study already holds 10,000 trials.

Usage::

    python bench/operator_scale.py [--quick] [--repeats N] [--out DIR] [--cases a,b]
                                   [--before JSON ...] [--operator-code CHECKOUT]

``--before``: the JSON of a run of this script against older code, shown beside this run's
numbers (given more than once, later files add the cases earlier ones lack). Older code: the
engine cases with ``PYTHONPATH`` pointing at a ``git worktree`` of an earlier commit; the
operator cases with ``--operator-code`` naming that worktree (the harness stays this one's).

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

import operator_cluster
import optuna

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
AIM_OPERATOR_RATIO: Final = 1.1  # operator vs bare driver, one job
AIM_CPU_RATIO: Final = 1.5  # operator CPU per trial, many jobs vs one job
AIM_STARVATION: Final = 2.0  # the worst job's longest slot wait vs the median job's
AIM_RSS_MIB: Final = 150.0  # operator memory after 10,000 trials
CASES: Final = ("local", "idle_pass", "one_job", "many_jobs", "large_study")


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
    base = {k: v for k, v in os.environ.items() if not k.startswith(c.RESERVED_ENV_PREFIXES)}
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

    def launch(self, number: int, params: dict[str, Any], attempt: int = 0) -> None:
        assert number == self.number, "an idle pass launched a trial"

    def tidy_checkpoints(self, keep: set[int], below: int) -> bool:
        return True  # no trial.checkpoint here

    def checkpoint_location(self, number: int) -> dict[str, str] | None:
        return None

    def retire(self, number: int, attempt: int, reason: str) -> None:
        raise AssertionError("an idle pass retried a trial")

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
    driver.study.add_trials(operator_cluster.finished_trials(finished))
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
def _before(doc: dict[str, Any], case: str, key: str) -> dict[Any, dict[str, Any]]:
    rows = (doc.get("before") or {}).get(case) or []
    return {r[key]: r for r in (rows if isinstance(rows, list) else [rows])}


def render(doc: dict[str, Any]) -> str:
    before = doc.get("before") or {}
    lines = [f"# Operator scale ({'quick' if doc['quick'] else 'full'} run, {doc['machine']})", ""]
    case_code = before.get("case_code") or {}
    if before:
        lines += [f"Before: {before.get('code', 'older code')}.", ""]

    def before_of(case: str) -> list[str]:
        return [f"Before: {case_code[case]}.", ""] if case in case_code else []

    if "local" in doc:
        old = _before(doc, "local", "parallelism")
        lines += [
            "## Local engine: zero-work trials against spawning the same processes",
            "",
            *before_of("local"),
            "| parallelism | trials | spawn only (s) | engine (s) | engine / spawn | overhead per trial (ms) "
            "| before: engine / spawn | before: overhead (ms) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in doc["local"]:
            o = old.get(row["parallelism"])
            was = f"{o['ratio']:.2f} | {o['overhead_ms_per_trial']:.0f}" if o else "– | –"
            lines.append(
                f"| {row['parallelism']} | {row['trials']} | {row['spawn_median']:.2f} | "
                f"{row['engine_median']:.2f} | {row['ratio']:.2f} | {row['overhead_ms_per_trial']:.0f} | {was} |"
            )
        lines.append("")
    if "idle_pass" in doc:
        old = _before(doc, "idle_pass", "finished")
        lines += [
            "## Idle pass against the number of finished trials",
            "",
            *before_of("idle_pass"),
            "| finished trials | pass median (ms) | pass p90 (ms) | vs 10 trials | re-open (s) "
            "| before: pass median (ms) | before: vs 10 |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in doc["idle_pass"]:
            o = old.get(row["finished"])
            was = f"{o['pass_ms_median']:.2f} | {o['vs_10']:.1f}×" if o else "– | –"
            lines.append(
                f"| {row['finished']:,} | {row['pass_ms_median']:.2f} | {row['pass_ms_p90']:.2f} | "
                f"{row['vs_10']:.1f}× | {row['reopen_seconds']:.2f} | {was} |"
            )
        lines.append("")
    if "one_job" in doc:
        r = doc["one_job"]
        o = before.get("one_job") if isinstance(before.get("one_job"), dict) else None
        was = f"{o['ratio']:.2f}" if o else "–"
        lines += [
            "## Operator, one job: zero-work trials against a bare driver through the same API",
            "",
            *before_of("one_job"),
            "| trials | parallelism | bare driver (s) | operator (s) | operator / bare | overhead per trial (ms) "
            "| CPU per trial, operator / bare (ms) | operator peak RSS (MiB) | status (bytes) "
            "| before: operator / bare |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {r['trials']} | {r['parallelism']} | {r['bare_median']:.2f} | {r['operator_median']:.2f} | "
            f"{r['ratio']:.2f} | {r['overhead_ms_per_trial']:.0f} | {r['operator_cpu_ms_per_trial']:.1f} / "
            f"{r['bare_cpu_ms_per_trial']:.1f} | {r['operator_peak_rss_mib']:.0f} | {r['status_bytes']:,} | "
            f"{was} |",
            "",
        ]
    if "many_jobs" in doc:
        r = doc["many_jobs"]
        o = before.get("many_jobs") if isinstance(before.get("many_jobs"), dict) else None
        lines += [
            f"## Many jobs on one operator: {r['jobs']} jobs × parallelism {r['parallelism']} × "
            f"{r['trials_per_job']} trials of {r['trial_seconds']:g} s",
            "",
            "Longest wait: per job, the longest time from a free slot (a trial's process exited, or the job "
            "applied) to its next trial's process starting.",
            "",
            *before_of("many_jobs"),
            "| code | wall (s) | all succeeded | longest wait, median job (s) | longest wait, worst job (s) "
            "| first trial started, worst job (s) | operator CPU per trial (ms) | operator peak RSS (MiB) "
            "| status, largest (bytes) | CPU: operator / harness / trials / machine (s) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, row in [("before", o), ("now", r)]:
            if row:
                lines.append(
                    f"| {label} | {row['wall_seconds']:.1f} | {'yes' if row['all_succeeded'] else 'no'} | "
                    f"{row['max_wait_s_median_job']:.1f} | {row['max_wait_s_worst_job']:.1f} | "
                    f"{max(j['first_start_s'] for j in row['per_job']):.1f} | "
                    f"{row['operator_cpu_ms_per_trial']:.1f} | {row['operator_peak_rss_mib']:.0f} | "
                    f"{row['status_bytes_max']:,} | {row['operator_cpu_seconds']:.0f} / "
                    f"{row['harness_cpu_seconds']:.0f} / {row['trial_processes_cpu_seconds']:.0f} / "
                    f"{row['machine_cpu_seconds']:.0f} |"
                )
        lines.append("")
    if "large_study" in doc:
        r = doc["large_study"]
        lines += [
            f"## A study of {r['finished_before']:,} finished trials under the operator",
            "",
            "| finished before | trials run | seconds | operator CPU per trial (ms) | RSS before (MiB) "
            "| peak RSS after (MiB) | status (bytes) |",
            "|---|---|---|---|---|---|---|",
            f"| {r['finished_before']:,} | {r['trials_run']} | {r['seconds']:.1f} | "
            f"{r['operator_cpu_ms_per_trial']:.0f} | {r['operator_rss_mib_before']:.0f} | "
            f"{r['operator_peak_rss_mib']:.0f} | {r['status_bytes']:,} |",
            "",
        ]
    lines += ["## Aims", "", "| aim | measured | met |", "|---|---|---|"]
    for aim in doc["aims"]:
        lines.append(f"| {aim['aim']} | {aim['measured']} | {'met' if aim['met'] else 'not met'} |")
    lines += ["", f"Reproduce: `python bench/operator_scale.py{' --quick' if doc['quick'] else ''}`", ""]
    return "\n".join(lines)


def aims_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    aims = []
    if "local" in doc:
        p1 = doc["local"][0]
        aims.append(
            {
                "aim": f"local engine at parallelism 1 <= {AIM_LOCAL_RATIO}x spawning alone",
                "measured": f"{p1['ratio']:.2f}x ({p1['overhead_ms_per_trial']:.0f} ms per trial)",
                "met": p1["ratio"] <= AIM_LOCAL_RATIO,
            }
        )
    if "idle_pass" in doc:
        largest = doc["idle_pass"][-1]
        at_10 = next(r["pass_ms_median"] for r in doc["idle_pass"] if r["finished"] == 10)
        aims.append(
            {
                "aim": f"idle pass at {largest['finished']:,} finished trials <= {AIM_IDLE_RATIO}x the pass at 10",
                "measured": f"{largest['vs_10']:.1f}x ({largest['pass_ms_median']:.2f} ms vs {at_10:.2f} ms)",
                "met": largest["vs_10"] <= AIM_IDLE_RATIO,
            }
        )
    if "one_job" in doc:
        r = doc["one_job"]
        aims.append(
            {
                "aim": f"operator <= {AIM_OPERATOR_RATIO}x the bare driver, one job",
                "measured": f"{r['ratio']:.2f}x ({r['overhead_ms_per_trial']:.0f} ms per trial)",
                "met": r["ratio"] <= AIM_OPERATOR_RATIO,
            }
        )
    if "many_jobs" in doc:
        r = doc["many_jobs"]
        starve = r["max_wait_s_worst_job"] / r["max_wait_s_median_job"]
        aims.append(
            {
                "aim": f"{r['jobs']} jobs x {r['parallelism']} complete, no job starves (worst job's longest wait "
                f"<= {AIM_STARVATION}x the median job's)",
                "measured": f"{r['trials_completed']} trials, all succeeded: {r['all_succeeded']}; worst / median "
                f"{starve:.2f}x ({r['max_wait_s_worst_job']:.1f} s vs {r['max_wait_s_median_job']:.1f} s)",
                "met": r["all_succeeded"] and starve <= AIM_STARVATION,
            }
        )
        if "one_job" in doc:
            ratio = r["operator_cpu_ms_per_trial"] / doc["one_job"]["operator_cpu_ms_per_trial"]
            aims.append(
                {
                    "aim": f"operator CPU per trial with {r['jobs']} jobs <= {AIM_CPU_RATIO}x one job's",
                    "measured": f"{ratio:.2f}x ({r['operator_cpu_ms_per_trial']:.1f} ms vs "
                    f"{doc['one_job']['operator_cpu_ms_per_trial']:.1f} ms)",
                    "met": ratio <= AIM_CPU_RATIO,
                }
            )
    if "large_study" in doc:
        r = doc["large_study"]
        aims.append(
            {
                "aim": f"operator RSS < {AIM_RSS_MIB:.0f} MiB after {r['completed']:,} trials",
                "measured": f"{r['operator_peak_rss_mib']:.0f} MiB peak",
                "met": r["operator_peak_rss_mib"] < AIM_RSS_MIB,
            }
        )
    return aims


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
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--before", type=Path, action="append", default=[], help="JSON of a run on older code")
    parser.add_argument("--operator-code", type=Path, default=None, help="checkout whose operator to run")
    parser.add_argument("--code", default=None, help="what code this run measured (recorded in the JSON)")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.operator_code:
        operator_cluster.OPERATOR_CODE["path"] = args.operator_code.resolve()
    repeats = args.repeats or (1 if args.quick else 3)
    out = args.out or (Path(tempfile.mkdtemp(prefix="operator-scale-")) if args.quick else RESULTS_DIR)
    doc: dict[str, Any] = {
        "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    if "local" in cases:
        trials = 10 if args.quick else 40
        doc["local"] = [local_case(trials, p, repeats) for p in (1, 8)]
    if "idle_pass" in cases:
        sizes = [0, 10, 1000] if args.quick else [0, 10, 1000, 10_000]
        idle = [idle_case(n, 20 if args.quick else 50) for n in sizes]
        at_10 = next(r["pass_ms_median"] for r in idle if r["finished"] == 10)
        for row in idle:
            row["vs_10"] = row["pass_ms_median"] / at_10
        doc["idle_pass"] = idle
    if "one_job" in cases:
        doc["one_job"] = operator_cluster.one_job_case(20 if args.quick else 100, 4 if args.quick else 8, repeats)
    if "many_jobs" in cases:
        sizes = (8, 3, 4, 0.5) if args.quick else (100, 5, 10, 1.0)
        doc["many_jobs"] = operator_cluster.many_jobs_case(*sizes)
    if "large_study" in cases:
        doc["large_study"] = operator_cluster.large_study_case(1000 if args.quick else 10_000, 10 if args.quick else 20)
    doc["aims"] = aims_of(doc)
    doc["code"] = args.code or _git_head()
    if args.before:
        merged: dict[str, Any] = {"case_code": {}}
        for path in args.before:
            old = json.loads(path.read_text())
            old.pop("before", None)
            for case in CASES:
                if case in old and case not in merged:
                    merged[case] = old[case]
                    merged["case_code"][case] = old.get("code", str(path))
        merged["code"] = "; ".join(dict.fromkeys(merged["case_code"].values()))
        doc["before"] = merged
    out.mkdir(parents=True, exist_ok=True)
    (out / "operator_scale.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "operator_scale.md").write_text(render(doc))
    print(render(doc))
    print(f"wrote {out / 'operator_scale.json'} and {out / 'operator_scale.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
