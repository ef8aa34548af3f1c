#!/usr/bin/env python
"""How long a built-in task's worker takes to reach training, before and after issue 10.

A 2-worker digits trial (examples/digits.yaml's task and settings, 1 epoch) is started as the
engine starts it (python -m openautoglm_trial, the engine's environment, both ranks), and per
repeat this records:

* ``to_training``: seconds from spawning rank 0 to its log line "training digits: ..." (written
  once model, optimizer and broadcast are done, right before the first step). Measured from
  outside, so it is the same clock for this checkout and for ``--before CHECKOUT`` (a
  ``git worktree`` of older code, run with PYTHONPATH pointing at it).
* ``startup_seconds``: the worker's own breakdown (interpreter, imports, data, rendezvous,
  model, first_step; see openautoglm_trial/builtin/startup.py), from its termination message, where
  the code reports it.
* floors in the same run: ``python -c pass``, ``import torch``, ``import torch, horovod.torch``.

Usage::

    python bench/worker_startup.py [--quick] [--repeats N] [--before CHECKOUT] [--out DIR]
    python bench/worker_startup.py --render bench/results/worker_startup.json

Writes ``worker_startup.json`` and ``worker_startup.md`` into ``--out`` (default bench/results;
``--quick`` writes to a temporary directory unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import yaml
from trial_ranks import render_again, write_results

from openautoglm.engine.worker import build_worker_env
from openautoglm.validation import validate_document
from openautoglm_trial import contract as c

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
RESULTS_DIR: Final = HERE / "results"
AIM: Final = 0.5  # start-up after <= half of before
AIM_FLOOR: Final = 1.1  # start-up vs a bare `import torch, horovod.torch`: what is left is torch's
PARAMS: Final = {"lr": 0.001, "batch_size": 64, "dropout": 0.1, "hidden": 128, "optimizer": "adam"}
PARAMS_ADAM: Final = {"beta1": 0.9, "beta2": 0.999}
PHASES: Final = ("interpreter", "imports", "data", "rendezvous", "model", "first_step")


def digits_job() -> Any:
    doc = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    doc["spec"]["trial"]["epochs"] = 1
    return validate_document(doc, "examples/digits.yaml")


def _base_env(code: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(c.RESERVED_ENV_PREFIXES)}
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code / "trial_image"), str(code / "operator")])
    return env


def one_trial(job: Any, workdir: Path, number: int, code: Path | None) -> dict[str, Any]:
    """Both ranks of one trial; rank 0's time to its "training" line and its breakdown."""
    hosts = [c.worker_address(job.name, number, rank) for rank in range(job.spec.trial.workers)]
    procs = []
    t0 = time.perf_counter()
    for rank, host in enumerate(hosts):
        wdir = workdir / f"t{number}-w{rank}"
        wdir.mkdir(parents=True)
        env = build_worker_env(
            job,
            number,
            rank,
            {**PARAMS, **PARAMS_ADAM},
            hosts,
            bind_address=host,
            termination_log=str(wdir / "termination-log"),
            rendezvous_port=29500 + number % 1000,
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "openautoglm_trial"],
                env={**_base_env(code), **env},
                cwd=wdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    to_training = None
    assert procs[0].stderr is not None
    for line in procs[0].stderr:
        if to_training is None and " training digits:" in line:
            to_training = time.perf_counter() - t0
    for p in procs:
        p.wait(120)
        if p.stderr is not None:
            p.stderr.close()
    assert to_training is not None, f"rank 0 never logged its training line (exit {procs[0].returncode})"
    result = json.loads((workdir / f"t{number}-w0" / "termination-log").read_text())
    assert result["status"] == "completed", result
    return {"to_training": to_training, "startup_seconds": (result.get("info") or {}).get("startup_seconds")}


def floor(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=_base_env(None))
    return time.perf_counter() - t0


def measure(code: Path | None, repeats: int, job: Any, first_number: int) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            runs.append(one_trial(job, Path(tmp), first_number + r, code))
    out: dict[str, Any] = {
        "to_training": [r["to_training"] for r in runs],
        "to_training_median": statistics.median(r["to_training"] for r in runs),
    }
    breakdowns = [r["startup_seconds"] for r in runs if r["startup_seconds"]]
    if breakdowns:
        out["startup_seconds_median"] = {
            k: statistics.median(b.get(k, 0.0) for b in breakdowns) for k in (*PHASES, "total")
        }
    return out


def render(doc: dict[str, Any]) -> str:
    now, before = doc["now"], doc.get("before")
    lines = [
        f"# Worker start-up ({'quick' if doc['quick'] else 'full'} run, {doc['machine']})",
        "",
        "A 2-worker digits trial (1 epoch); rank 0, spawn to its first training step.",
        "",
        "| code | spawn → training line, median (s) | runs (s) |",
        "|---|---|---|",
    ]
    for label, row in [(f"before: {doc.get('before_code', '')}", before), (f"now: {doc['code']}", now)]:
        if row:
            runs = ", ".join(f"{x:.2f}" for x in row["to_training"])
            lines.append(f"| {label} | {row['to_training_median']:.2f} | {runs} |")
    if "startup_seconds_median" in now:
        b = now["startup_seconds_median"]
        lines += [
            "",
            "Breakdown now (the worker's own marks, medians, seconds):",
            "",
            "| " + " | ".join(PHASES) + " | total |",
            "|" + "---|" * (len(PHASES) + 1),
            "| " + " | ".join(f"{b[k]:.2f}" for k in (*PHASES, "total")) + " |",
        ]
    f = doc["floors"]
    lines += [
        "",
        "Floors in the same run (s): "
        f"`python -c pass` {f['python']:.2f}; `import torch` {f['torch']:.2f}; "
        f"`import torch, horovod.torch` {f['torch_horovod']:.2f}.",
        "",
        "## Aims",
        "",
        "| aim | measured | met |",
        "|---|---|---|",
    ]
    for aim in doc["aims"]:
        lines.append(f"| {aim['aim']} | {aim['measured']} | {'met' if aim['met'] else 'not met'} |")
    lines += ["", "Reproduce: `python bench/worker_startup.py --before <worktree of the older commit>`", ""]
    return "\n".join(lines)


def aims_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    now = doc["now"]["to_training_median"]
    aims = []
    if doc.get("before"):
        ratio = now / doc["before"]["to_training_median"]
        aims.append(
            {
                "aim": f"built-in worker start-up <= {AIM:.0%} of before",
                "measured": f"{ratio:.0%} ({now:.2f} s vs {doc['before']['to_training_median']:.2f} s)",
                "met": ratio <= AIM,
            }
        )
    imports = doc["floors"]["torch_horovod"]
    aims.append(
        {
            "aim": f"start-up <= {AIM_FLOOR}x importing torch and horovod.torch alone",
            "measured": f"{now / imports:.2f}x ({now:.2f} s vs {imports:.2f} s)",
            "met": now / imports <= AIM_FLOOR,
        }
    )
    return aims


def _git_head(path: Path) -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=path, capture_output=True, text=True)
    return f"commit {head.stdout.strip()}" if head.returncode == 0 else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--before", type=Path, default=None, help="checkout of the older code")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--render", type=Path, default=None, help="only write the tables again from this JSON")
    args = parser.parse_args(argv)
    if args.render:
        render_again(args.render, aims_of, render)
        return 0
    repeats = args.repeats or (1 if args.quick else 5)
    out = args.out or (Path(tempfile.mkdtemp(prefix="worker-startup-")) if args.quick else RESULTS_DIR)
    job = digits_job()
    doc: dict[str, Any] = {
        "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "code": _git_head(ROOT),
        "floors": {
            "python": statistics.median(floor("pass") for _ in range(3)),
            "torch": statistics.median(floor("import torch") for _ in range(3)),
            "torch_horovod": statistics.median(floor("import torch, horovod.torch") for _ in range(3)),
        },
    }
    if args.before:
        doc["before_code"] = _git_head(args.before)
        doc["before"] = measure(args.before.resolve(), repeats, job, 0)
    doc["now"] = measure(None, repeats, job, 100)
    doc["aims"] = aims_of(doc)
    write_results(out, "worker_startup", doc, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
