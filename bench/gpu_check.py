#!/usr/bin/env python
"""Does a trial use the GPUs it is given? A check to run on a machine with NVIDIA GPUs (issue 25).

Through ``openautoglm tune`` (the local backend: every worker its own ``CUDA_VISIBLE_DEVICES``),
in one run:

* ``horovod``: one trial of the built-in digits task, 2 ranks, ``trial.launcher: horovod``;
* ``torchrun``: the same trial with ``trial.launcher: torchrun`` (``distributed: ddp``: DDP over
  NCCL when CUDA is visible);
* ``tuning``: a short tuning job (4 trials, parallelism 2, 1 worker each, TPE).

Each run must end Succeeded, and while it runs ``nvidia-smi`` is sampled: the processes on each
GPU are the proof that the ranks trained on CUDA and did not all share one device. With fewer GPUs
than 2 ranks, the ranks share one (Horovod's Gloo build then copies through the host; NCCL refuses
two ranks on one device, so the torchrun run is expected to fail there: recorded, not hidden).

Without a CUDA device (no driver, no GPU, CPU torch) it prints ``skipped: ...`` and exits 0.

Usage::

    python bench/gpu_check.py [--out DIR] [--epochs N]

Writes ``gpu_check.json`` and ``gpu_check.md`` into ``--out`` (default bench/results; a skipped
check writes only where ``--out`` says). Exit status: 0 when every run succeeded on CUDA (or the
check was skipped), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

import yaml

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
RESULTS_DIR: Final = HERE / "results"
#: A run longer than this has hung (a short digits job takes well under a minute on a GPU).
RUN_SECONDS: Final = 600
SAMPLE_SECONDS: Final = 0.5


def gpus() -> list[dict[str, str]]:
    """The GPUs CUDA sees here (index, uuid, name), none without a driver or a CUDA torch."""
    import torch

    if not torch.cuda.is_available():
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,uuid,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return [
            {"index": str(i), "uuid": "", "name": torch.cuda.get_device_name(i)}
            for i in range(torch.cuda.device_count())
        ]
    rows = [[f.strip() for f in line.split(",")] for line in out.splitlines() if line.strip()]
    return [{"index": r[0], "uuid": r[1], "name": r[2]} for r in rows if len(r) == 3]


def job(name: str, launcher: str, *, workers: int, trials: int, parallelism: int, epochs: int) -> dict[str, Any]:
    """examples/digits.yaml cut short: this launcher, these workers and trials."""
    doc = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    spec["budget"] = {"maxTrials": trials, "parallelism": parallelism, "maxFailedTrials": 0}
    spec.pop("earlyStopping", None)
    trial = spec["trial"]
    trial.update(epochs=epochs, workers=workers, launcher=launcher)
    trial.pop("resources", None)
    return doc


class Sampler:
    """``nvidia-smi``'s compute processes, sampled while a run lasts: GPU uuid -> pids seen, MiB."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=False,
                ).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            for line in out.splitlines():
                fields = [f.strip() for f in line.split(",")]
                if len(fields) != 3 or not fields[2].isdigit():
                    continue
                gpu = self.seen.setdefault(fields[1], {"pids": set(), "peak_mib": 0})
                gpu["pids"].add(int(fields[0]))
                gpu["peak_mib"] = max(gpu["peak_mib"], int(fields[2]))

    def summary(self) -> dict[str, dict[str, Any]]:
        return {uuid: {"processes": len(g["pids"]), "peak_mib": g["peak_mib"]} for uuid, g in self.seen.items()}


def run(name: str, doc: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """``openautoglm tune`` of ``doc``: its phase, wall time, and the GPUs its processes used."""
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    status_file = workdir / f"{name}.status.json"
    cmd = [sys.executable, "-m", "openautoglm.cli", "tune", str(path), "--quiet", "--fresh"]
    cmd += ["--workdir", str(workdir / "work"), "--json", str(status_file)]
    t0 = time.perf_counter()
    with Sampler() as sampler:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_SECONDS, check=False)
            code, tail = done.returncode, (done.stdout + done.stderr)[-3000:]
        except subprocess.TimeoutExpired:
            code, tail = None, f"timed out after {RUN_SECONDS} s"
    status = json.loads(status_file.read_text()) if status_file.exists() else {}
    used = sampler.summary()
    return {
        "name": name,
        "launcher": doc["spec"]["trial"]["launcher"],
        "workers": doc["spec"]["trial"]["workers"],
        "trials": doc["spec"]["budget"]["maxTrials"],
        "exit_code": code,
        "phase": status.get("phase"),
        "seconds": round(time.perf_counter() - t0, 1),
        "gpus_used": used,
        "on_cuda": bool(used),
        "ok": status.get("phase") == "Succeeded" and bool(used),
        "output_tail": tail if status.get("phase") != "Succeeded" else "",
    }


def render(result: dict[str, Any]) -> str:
    if result["status"] == "skipped":
        return f"# GPU check\n\nskipped: {result['reason']}\n"
    lines = [
        "# GPU check",
        "",
        f"{result['date']}, {result['machine']}; GPUs: "
        + ", ".join(f"{g['index']}: {g['name']}" for g in result["gpus"]),
        "",
        "| run | launcher | workers x trials | phase | s | GPUs used (processes, peak MiB) | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        used = "; ".join(f"{u[-8:]}: {g['processes']}, {g['peak_mib']}" for u, g in r["gpus_used"].items()) or "none"
        lines.append(
            f"| {r['name']} | {r['launcher']} | {r['workers']} x {r['trials']} | {r['phase']} | {r['seconds']} "
            f"| {used} | {'yes' if r['ok'] else 'NO'} |"
        )
    lines += ["", f"Status: **{result['status']}**", ""]
    return "\n".join(lines)


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu_check.md").write_text(render(result))
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="where the results go (default bench/results)")
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)
    found = gpus()
    if not found:
        result = {"status": "skipped", "reason": "no CUDA device visible (no driver, no GPU, or a CPU torch)"}
        print(f"skipped: {result['reason']}")
        if args.out:
            write(result, args.out)
        return 0
    ranks = f"2 ranks on {len(found)} GPU{'s' * (len(found) > 1)}"
    print(f"GPU check: {', '.join(g['name'] for g in found)}; {ranks}", flush=True)
    plan = {
        "horovod": job("gpu-horovod", "horovod", workers=2, trials=1, parallelism=1, epochs=args.epochs),
        "torchrun": job("gpu-torchrun", "torchrun", workers=2, trials=1, parallelism=1, epochs=args.epochs),
        "tuning": job("gpu-tuning", "horovod", workers=1, trials=4, parallelism=2, epochs=args.epochs),
    }
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        runs = []
        for name, doc in plan.items():
            runs.append(run(name, doc, Path(tmp)))
            print(f"{name}: {runs[-1]['phase']} in {runs[-1]['seconds']} s, GPUs {runs[-1]['gpus_used']}", flush=True)
    result = {
        "status": "passed" if all(r["ok"] for r in runs) else "failed",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.node()} ({platform.machine()}, python {platform.python_version()})",
        "gpus": found,
        "runs": runs,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }
    write(result, args.out or RESULTS_DIR)
    return 0 if result["status"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
