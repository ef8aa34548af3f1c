#!/usr/bin/env python
"""Horovod against torch.distributed (DDP), and what ZeRO-1 saves per rank (issue 25).

For each built-in task (text-lm, the headline; digits), the same 2-worker trial (same params, same
trial number, so the same seed) is started as the engine starts it (``python -m
openautoglm_trial``, ``build_worker_env``, both ranks on loopback, Gloo) three ways, in one run:

* ``horovod``: ``trial.launcher: horovod`` (hvd.DistributedOptimizer): the time baseline;
* ``ddp``: ``trial.launcher: torchrun`` (DistributedDataParallel): the memory baseline;
* ``ddp+zero``: the same with ``taskSettings.zero: true`` (ZeroRedundancyOptimizer).

Recorded per run: the per-epoch training time from rank 0's log ("epoch N/E (T s)"; the median
over epochs 2..E, the first apart: it holds DDP's bucket rebuild and the allocator's warm-up),
spawn-to-exit wall time, each rank's optimizer state (``info.optimizer_state_bytes``: the bytes of
the optimizer's state tensors that rank holds, measured in the worker), and the final objective
value (ZeRO's must equal the unsharded run's within the stated tolerance). The configurations
alternate within each repeat, so drift of the machine's load hits all three alike.

Usage::

    python bench/ddp_zero.py [--quick] [--repeats N] [--out DIR]
    python bench/ddp_zero.py --render bench/results/ddp_zero.json

Writes ``ddp_zero.json`` and ``ddp_zero.md`` into ``--out`` (default bench/results; ``--quick`` —
digits only, 2 epochs, one repeat — writes to a temporary directory unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
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

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
RESULTS_DIR: Final = HERE / "results"
#: each rank's optimizer state with ZeRO at 2 ranks, against the unsharded state (ideal: 50%;
#: ZeRO hands out whole tensors, so the largest one sets how close it gets)
AIM_SHARE: Final = 0.6
#: ZeRO's final value against the unsharded run's, relative (see tests/trial/test_ddp.py)
TOLERANCE: Final = 1e-6
#: DDP's per-epoch time against Horovod's on the same task
AIM_TIME: Final = 1.2
CONFIGS: Final[dict[str, dict[str, Any]]] = {
    "horovod": {"launcher": "horovod", "settings": {}},
    "ddp": {"launcher": "torchrun", "settings": {}},
    "ddp+zero": {"launcher": "torchrun", "settings": {"zero": True}},
}
TASKS: Final[dict[str, dict[str, Any]]] = {
    "text-lm": {
        "objective": {"metric": "loss", "direction": "minimize"},
        "params": {"lr": 0.001, "batch_size": 16, "dropout": 0.1, "optimizer": "adamw"},
    },
    "digits": {
        "objective": {"metric": "accuracy", "direction": "maximize"},
        # 64 wide: ZeRO's whole-tensor split comes out near half (as in tests/trial/test_ddp.py)
        "params": {"lr": 0.003, "batch_size": 16, "dropout": 0.1, "hidden": 64, "optimizer": "adam"},
    },
}
EPOCH_LINE: Final = re.compile(r"epoch (\d+)/\d+ \(([\d.]+)s\)")


def job_for(task: str, config: str, epochs: int) -> Any:
    """examples/digits.yaml's job with this task, its objective, the configuration's launcher and
    task settings, and ``epochs``: checked by validate as a user's would be."""
    doc = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    spec = doc["spec"]
    spec["objective"] = TASKS[task]["objective"]
    trial = spec["trial"]
    trial["task"], trial["epochs"], trial["workers"] = task, epochs, 2
    trial["launcher"] = CONFIGS[config]["launcher"]
    trial["taskSettings"] = dict(CONFIGS[config]["settings"])
    spec["parameters"] = [{"name": "lr", "type": "float", "low": 1e-4, "high": 1e-2, "log": True}]
    spec.pop("warmStart", None)
    return validate_document(doc, f"bench:{task}:{config}")


def run_trial(job: Any, workdir: Path, number: int, label: str) -> dict[str, Any]:
    """Both ranks of one trial; wall seconds, exit codes, both results and rank 0's log."""
    t0 = time.perf_counter()
    ranks = start_ranks(job, workdir, number, label, TASKS[job.spec.trial.task]["params"])
    for p, _ in ranks:
        p.wait(900)
    return {
        "seconds": time.perf_counter() - t0,
        "codes": [p.returncode for p, _ in ranks],
        "results": [result_of(d) for _, d in ranks],
        "log": (ranks[0][1] / "log").read_text(),
    }


def epoch_times(log: str) -> list[float]:
    return [float(m.group(2)) for m in EPOCH_LINE.finditer(log)]


def measure(task: str, epochs: int, repeats: int, number: int) -> dict[str, Any]:
    jobs = {config: job_for(task, config, epochs) for config in CONFIGS}
    metric = TASKS[task]["objective"]["metric"]
    runs: dict[str, list[dict[str, Any]]] = {config: [] for config in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for config, job in jobs.items():
                run = run_trial(job, Path(tmp), number, f"{config}-{r}")
                ok = run["codes"] == [0, 0] and all(run["results"])
                assert ok, f"{task} {config} failed:\n{run['log'][-3000:]}"
                times = epoch_times(run["log"])
                runs[config].append(
                    {
                        "wall_s": run["seconds"],
                        "epoch_s": times,
                        "first_epoch_s": times[0],
                        "epoch_s_median": statistics.median(times[1:] or times),
                        "optimizer_state_bytes": [x["info"]["optimizer_state_bytes"] for x in run["results"]],
                        "distributed": run["results"][0]["info"].get("distributed"),
                        "value": run["results"][0]["metrics"][metric],
                    }
                )
    summary = {
        config: {
            "epoch_s_median": statistics.median(x["epoch_s_median"] for x in rows),
            "first_epoch_s_median": statistics.median(x["first_epoch_s"] for x in rows),
            "wall_s_median": statistics.median(x["wall_s"] for x in rows),
            "optimizer_state_bytes": rows[0]["optimizer_state_bytes"],
            "value": rows[0]["value"],
        }
        for config, rows in runs.items()
    }
    whole = summary["ddp"]["optimizer_state_bytes"][0]
    shares = summary["ddp+zero"]["optimizer_state_bytes"]
    plain, sharded = summary["ddp"]["value"], summary["ddp+zero"]["value"]
    return {
        "task": task,
        "params": TASKS[task]["params"],
        "epochs": epochs,
        "metric": metric,
        "runs": runs,
        "summary": summary,
        "zero_share_max": max(shares) / whole,
        "zero_shares_sum_equals_whole": sum(shares) == whole,
        "zero_value_relative_difference": abs(sharded - plain) / max(abs(plain), 1e-12),
        "ddp_over_horovod_epoch": summary["ddp"]["epoch_s_median"] / summary["horovod"]["epoch_s_median"],
        "zero_over_ddp_epoch": summary["ddp+zero"]["epoch_s_median"] / summary["ddp"]["epoch_s_median"],
    }


def render(doc: dict[str, Any]) -> str:
    lines = [
        f"# Horovod, DDP and ZeRO-1 ({'quick' if doc['quick'] else 'full'} run, {doc['machine']})",
        "",
        f"The same 2-worker trial of {doc['epochs']} epochs (same parameters and seed) under each "
        "configuration, started as the engine starts it, Gloo on loopback, on the CPU (not run on a GPU). "
        "Per-epoch time: rank 0's training time per epoch, median over epochs 2 and later (the first "
        "apart). Optimizer state: the bytes of the optimizer's state tensors each rank holds.",
        "",
        "## Per-epoch time of each launcher",
        "",
        "| task | configuration | epoch, median (s) | first epoch (s) | wall, spawn to exit (s) | vs horovod |",
        "|---|---|---|---|---|---|",
    ]
    for t in doc["tasks"]:
        base = t["summary"]["horovod"]["epoch_s_median"]
        for config, s in t["summary"].items():
            lines.append(
                f"| {t['task']} | {config} | {s['epoch_s_median']:.3f} | {s['first_epoch_s_median']:.3f} | "
                f"{s['wall_s_median']:.2f} | {s['epoch_s_median'] / base:.0%} |"
            )
    lines += [
        "",
        "## Optimizer state per rank, with and without ZeRO (2 ranks)",
        "",
        "| task | configuration | rank 0 (bytes) | rank 1 (bytes) | share of the unsharded state | final value |",
        "|---|---|---|---|---|---|",
    ]
    for t in doc["tasks"]:
        whole = t["summary"]["ddp"]["optimizer_state_bytes"][0]
        for config, s in t["summary"].items():
            r0, r1 = s["optimizer_state_bytes"]
            lines.append(
                f"| {t['task']} | {config} | {r0:,} | {r1:,} | {r0 / whole:.0%} / {r1 / whole:.0%} | "
                f"{t['metric']} {s['value']:.6g} |"
            )
    lines += ["", "## Aims", "", "| aim | measured | met |", "|---|---|---|"]
    for aim in doc["aims"]:
        lines.append(f"| {aim['aim']} | {aim['measured']} | {'met' if aim['met'] else 'not met'} |")
    lines += ["", f"Reproduce: `{doc['command']}`", ""]
    return "\n".join(lines)


def aims_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    aims = []
    for t in doc["tasks"]:
        aims += [
            {
                "aim": f"{t['task']}: with ZeRO each of 2 ranks holds <= {AIM_SHARE:.0%} of the optimizer state, "
                "the two together all of it",
                "measured": f"at most {t['zero_share_max']:.1%}; together "
                + ("exactly all" if t["zero_shares_sum_equals_whole"] else "NOT all"),
                "met": t["zero_share_max"] <= AIM_SHARE and t["zero_shares_sum_equals_whole"],
            },
            {
                "aim": f"{t['task']}: ZeRO's final value equals the unsharded run's within {TOLERANCE:g} relative",
                "measured": f"relative difference {t['zero_value_relative_difference']:.2g}",
                "met": t["zero_value_relative_difference"] <= TOLERANCE,
            },
            {
                "aim": f"{t['task']}: DDP's per-epoch time <= {AIM_TIME:.1f} x Horovod's",
                "measured": f"{t['ddp_over_horovod_epoch']:.2f} x (ZeRO over DDP: {t['zero_over_ddp_epoch']:.2f} x)",
                "met": t["ddp_over_horovod_epoch"] <= AIM_TIME,
            },
        ]
    return aims


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None, help="default 2 (quick: 1)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--render", type=Path, default=None, help="only write the tables again from this JSON")
    args = parser.parse_args(argv)
    if args.render:
        render_again(args.render, aims_of, render)
        return 0
    out = args.out or (Path(tempfile.mkdtemp(prefix="ddp-zero-")) if args.quick else RESULTS_DIR)
    epochs = 2 if args.quick else 5
    repeats = args.repeats or (1 if args.quick else 2)
    doc: dict[str, Any] = {
        "quick": args.quick,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "versions": {"torch": torch.__version__},
        "device": "cpu (no GPU on this machine: the CUDA paths were not run)",
        "code": git_head(),
        "command": "python bench/ddp_zero.py"
        + (" --quick" if args.quick else "")
        + (f" --repeats {args.repeats}" if args.repeats else ""),
        "epochs": epochs,
        "repeats": repeats,
        "load_before": os.getloadavg(),
        "tasks": [
            measure(task, epochs, repeats, 200 + 10 * i)
            for i, task in enumerate(["digits"] if args.quick else list(TASKS))
        ],
        "load_after": os.getloadavg(),
    }
    doc["aims"] = aims_of(doc)
    write_results(out, "ddp_zero", doc, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
