#!/usr/bin/env python
"""What a trial checkpoint saves a retried trial, and what it costs per epoch (issue 24).

For each built-in task (digits, text-lm), a 2-worker trial of 10 epochs is started as the engine
starts it (``python -m openautoglm_trial``, ``build_worker_env`` with the trial's checkpoint
directory, both ranks on loopback), and in the same run:

* ``killed``: the first run; both ranks SIGKILLed once the checkpoint holds epoch 6 (a lost node);
* ``resumed``: the retry, same environment and directory (``OPENAUTOGLM_TRIAL_RUN=1``): it resumes
  after the checkpoint and trains the remaining epochs;
* ``scratch``: the baseline, the same trial from epoch 1 without a checkpoint directory: what a
  retry cost before checkpoints.

Wall times are from spawning the ranks to both having exited. ``resumed / scratch`` is the
headline (aim: under 60%). The resumed run's final value must equal the scratch run's (same
seed): it is checked, and recorded. Checkpoint cost per epoch is read from rank 0's log of the
killed and resumed runs ("checkpoint of epoch N: B bytes in S s" against "epoch N/10 (T s)").

Usage::

    python bench/checkpoint_resume.py [--quick] [--repeats N] [--out DIR]
    python bench/checkpoint_resume.py --render bench/results/checkpoint_resume.json

Writes ``checkpoint_resume.json`` and ``checkpoint_resume.md`` into ``--out`` (default
bench/results; ``--quick`` — digits only, 4 epochs killed after 2 — writes to a temporary
directory unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import torch
import yaml
from trial_ranks import git_head, render_again, result_of, start_ranks, write_results

from openautoglm.validation import validate_document
from openautoglm_trial import contract as c
from openautoglm_trial.builtin.checkpoint import FILE

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
RESULTS_DIR: Final = HERE / "results"
AIM: Final = 0.6  # the retry's wall time against a from-scratch rerun
#: per task: the job's task and objective, one configuration (what a trial trains)
TASKS: Final[dict[str, dict[str, Any]]] = {
    "digits": {
        "objective": {"metric": "accuracy", "direction": "maximize"},
        # batch 16 and a wider net: epochs long enough to be worth resuming (~0.3 s here)
        "params": {"lr": 0.001, "batch_size": 16, "dropout": 0.1, "hidden": 256, "optimizer": "adam"},
    },
    "text-lm": {
        "objective": {"metric": "loss", "direction": "minimize"},
        "params": {"lr": 0.001, "batch_size": 16, "dropout": 0.1, "optimizer": "adamw"},
    },
}
EPOCH_LINE: Final = re.compile(r"epoch (\d+)/\d+ \(([\d.]+)s\)")
SAVE_LINE: Final = re.compile(r"checkpoint of epoch (\d+): (\d+) bytes in ([\d.]+)s")


def job_for(task: str, epochs: int) -> Any:
    """examples/digits.yaml's job with this task, its objective, and ``epochs``."""
    doc = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    spec = doc["spec"]
    spec["objective"] = TASKS[task]["objective"]
    spec["trial"]["task"], spec["trial"]["epochs"] = task, epochs
    spec["parameters"] = [{"name": "lr", "type": "float", "low": 1e-4, "high": 1e-2, "log": True}]
    spec.pop("warmStart", None)
    return validate_document(doc, f"bench:{task}")


def saved_epoch(directory: Path) -> int:
    try:
        return int(torch.load(directory / FILE, weights_only=True)["epoch"])
    except (OSError, EOFError, RuntimeError, KeyError):
        return 0


def run_trial(
    job: Any, workdir: Path, number: int, checkpoint: Path | None, run: int, kill_after: int | None, label: str
) -> dict[str, Any]:
    """Both ranks of one run of a trial; with ``kill_after``, SIGKILL both once the checkpoint
    holds that epoch. Returns wall seconds, rank 0's result (if it wrote one) and log."""
    t0 = time.perf_counter()
    ranks = start_ranks(
        job,
        workdir,
        number,
        label,
        TASKS[job.spec.trial.task]["params"],
        # what the engine sets for a job with trial.checkpoint (this bench's job has none: it also
        # runs the trial from scratch)
        extra=None if checkpoint is None else {c.CHECKPOINT_DIR: str(checkpoint)},
        run=run,
    )
    procs = [p for p, _ in ranks]
    if kill_after is not None:
        assert checkpoint is not None
        while saved_epoch(checkpoint) < kill_after and all(p.poll() is None for p in procs):
            time.sleep(0.02)
        for p in reversed(procs):  # rank 1 first: the lost node
            p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(600)
    seconds = time.perf_counter() - t0
    rank0 = ranks[0][1]
    return {
        "seconds": seconds,
        "codes": [p.returncode for p in procs],
        "result": result_of(rank0),
        "log": (rank0 / "log").read_text(),
    }


def costs(*logs: str) -> dict[str, Any]:
    """Per-epoch training seconds and checkpoint cost from rank 0's logs."""
    epochs = {int(m.group(1)): float(m.group(2)) for log in logs for m in EPOCH_LINE.finditer(log)}
    saves = {int(m.group(1)): (int(m.group(2)), float(m.group(3))) for log in logs for m in SAVE_LINE.finditer(log)}
    both = sorted(set(epochs) & set(saves))
    save_s = [saves[e][1] for e in both]
    epoch_s = [epochs[e] for e in both]
    return {
        "epochs": len(both),
        "epoch_seconds_median": statistics.median(epoch_s),
        "save_seconds_median": statistics.median(save_s),
        "save_seconds_max": max(save_s),
        "bytes": saves[both[-1]][0],
        "save_share_median": statistics.median(s / max(t, 1e-9) for s, t in zip(save_s, epoch_s)),
    }


def measure(task: str, epochs: int, kill_after: int, repeats: int, first_number: int) -> dict[str, Any]:
    job = job_for(task, epochs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            # One trial number: the same seed (the engine derives it from the number) for all three.
            number = first_number + r
            ckpt = Path(tmp) / "checkpoints" / f"trial-{number}"
            killed = run_trial(job, Path(tmp), number, ckpt, 0, kill_after, "killed")
            at = saved_epoch(ckpt)
            resumed = run_trial(job, Path(tmp), number, ckpt, 1, None, "resumed")
            scratch = run_trial(job, Path(tmp), number, None, 0, None, "scratch")
            for name, run in (("resumed", resumed), ("scratch", scratch)):
                assert run["codes"] == [0, 0] and run["result"], f"{task} {name} run failed:\n{run['log'][-3000:]}"
            metric = TASKS[task]["objective"]["metric"]
            rows.append(
                {
                    "killed_after_epoch": at,
                    "killed_s": killed["seconds"],
                    "resumed_s": resumed["seconds"],
                    "scratch_s": scratch["seconds"],
                    "ratio": resumed["seconds"] / scratch["seconds"],
                    "resumed_value": resumed["result"]["metrics"][metric],
                    "scratch_value": scratch["result"]["metrics"][metric],
                    "equal": resumed["result"]["metrics"] == scratch["result"]["metrics"]
                    and resumed["result"]["history"] == scratch["result"]["history"],
                    "resumed_from_epoch": resumed["result"]["info"].get("resumed_from_epoch"),
                    "checkpoint_seconds": resumed["result"]["info"].get("checkpoint_seconds"),
                    "cost": costs(killed["log"], resumed["log"]),
                }
            )
    return {
        "task": task,
        "params": TASKS[task]["params"],
        "epochs": epochs,
        "kill_after": kill_after,
        "runs": rows,
        "ratio_median": statistics.median(r["ratio"] for r in rows),
        "resumed_s_median": statistics.median(r["resumed_s"] for r in rows),
        "scratch_s_median": statistics.median(r["scratch_s"] for r in rows),
        "all_equal": all(r["equal"] for r in rows),
    }


def render(doc: dict[str, Any]) -> str:
    lines = [
        f"# Checkpoint resume ({'quick' if doc['quick'] else 'full'} run, {doc['machine']})",
        "",
        f"A 2-worker trial of {doc['epochs']} epochs, both ranks SIGKILLed once the checkpoint holds epoch "
        f"{doc['kill_after']}; the retry resumes from it. Baseline in the same run: the same trial from "
        "scratch (no checkpoint), what a retry cost before. Wall time: spawn to both ranks exited.",
        "",
        "## The retry against a from-scratch rerun",
        "",
        "| task | killed after epoch | retry, resumed (s) | from scratch (s) | resumed / scratch | "
        "final value resumed | from scratch | identical |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in doc["tasks"]:
        for r in t["runs"]:
            lines.append(
                f"| {t['task']} | {r['killed_after_epoch']} | {r['resumed_s']:.2f} | {r['scratch_s']:.2f} | "
                f"{r['ratio']:.0%} | {r['resumed_value']:.6g} | {r['scratch_value']:.6g} | "
                f"{'yes' if r['equal'] else 'NO'} |"
            )
    lines += [
        "",
        "## Checkpoint cost per epoch (rank 0, killed and resumed runs)",
        "",
        "| task | epochs | epoch training, median (s) | save, median (s) | save, max (s) | save / epoch, median "
        "| checkpoint size (bytes) |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in doc["tasks"]:
        for r in t["runs"]:
            k = r["cost"]
            lines.append(
                f"| {t['task']} | {k['epochs']} | {k['epoch_seconds_median']:.3f} | {k['save_seconds_median']:.4f} | "
                f"{k['save_seconds_max']:.4f} | {k['save_share_median']:.1%} | {k['bytes']:,} |"
            )
    lines += ["", "## Aims", "", "| aim | measured | met |", "|---|---|---|"]
    for aim in doc["aims"]:
        lines.append(f"| {aim['aim']} | {aim['measured']} | {'met' if aim['met'] else 'not met'} |")
    lines += ["", f"Reproduce: `{doc['command']}`", ""]
    return "\n".join(lines)


def aims_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    aims = []
    for t in doc["tasks"]:
        aims.append(
            {
                "aim": f"{t['task']}: the retry's wall time < {AIM:.0%} of a from-scratch rerun",
                "measured": f"{t['ratio_median']:.0%} ({t['resumed_s_median']:.2f} s vs {t['scratch_s_median']:.2f} s)",
                "met": t["ratio_median"] < AIM,
            }
        )
        aims.append(
            {
                "aim": f"{t['task']}: the resumed run's final value equals the uninterrupted run's",
                "measured": "identical metrics and history" if t["all_equal"] else "differs",
                "met": t["all_equal"],
            }
        )
    return aims


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--render", type=Path, default=None, help="only write the tables again from this JSON")
    args = parser.parse_args(argv)
    if args.render:
        render_again(args.render, aims_of, render)
        return 0
    out = args.out or (Path(tempfile.mkdtemp(prefix="checkpoint-resume-")) if args.quick else RESULTS_DIR)
    epochs, kill_after = (4, 2) if args.quick else (10, 6)
    doc: dict[str, Any] = {
        "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "code": git_head(),
        "command": "python bench/checkpoint_resume.py" + (" --quick" if args.quick else ""),
        "epochs": epochs,
        "kill_after": kill_after,
        "load_before": os.getloadavg(),
        "tasks": [
            measure(task, epochs, kill_after, args.repeats, 100 + 10 * i)
            for i, task in enumerate(["digits"] if args.quick else list(TASKS))
        ],
        "load_after": os.getloadavg(),
    }
    doc["aims"] = aims_of(doc)
    write_results(out, "checkpoint_resume", doc, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
