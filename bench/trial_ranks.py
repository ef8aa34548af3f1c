"""What the benchmarks that start trial workers themselves share: the ranks of one trial started as
the local backend starts them (the engine's own environment builder, no engine around them), and
the results written as every benchmark here writes them (JSON + a markdown table, or the tables
again from a JSON).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openautoglm.engine.worker import build_worker_env
from openautoglm_trial import contract as c

ROOT = Path(__file__).resolve().parent.parent


def base_env() -> dict[str, str]:
    """This process's environment without the trial contract's variables: the contract sets them."""
    return {k: v for k, v in os.environ.items() if not k.startswith(c.RESERVED_ENV_PREFIXES)}


def start_ranks(
    job: Any,
    workdir: Path,
    number: int,
    label: str,
    params: dict[str, Any],
    extra: dict[str, str] | None = None,
    **env: Any,
) -> list[tuple[subprocess.Popen, Path]]:
    """Start every rank of trial ``number`` (``python -m openautoglm_trial``, each in its own
    ``t<number>-<label>-w<rank>`` directory with its log there). ``extra``: variables set on top;
    ``env``: more keywords of build_worker_env (checkpoint_dir, run, ...). Returns each rank's
    process and directory."""
    hosts = [c.worker_address(job.name, number, rank) for rank in range(job.spec.trial.workers)]
    started = []
    for rank, host in enumerate(hosts):
        wdir = workdir / f"t{number}-{label}-w{rank}"
        wdir.mkdir(parents=True)
        worker_env = build_worker_env(
            job,
            number,
            rank,
            dict(params),
            hosts,
            bind_address=host,
            termination_log=str(wdir / "termination-log"),
            rendezvous_port=29500 + number % 1000,
            # as the local backend: Gloo on loopback, where every rank lives
            extra={c.HOROVOD_GLOO_IFACE: "lo", "GLOO_SOCKET_IFNAME": "lo", **(extra or {})},
            **env,
        )
        with open(wdir / "log", "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "openautoglm_trial"],
                env={**base_env(), **worker_env},
                cwd=wdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append((proc, wdir))
    return started


def result_of(wdir: Path) -> dict[str, Any] | None:
    """A rank's termination message, if it wrote one."""
    path = wdir / "termination-log"
    return json.loads(path.read_text()) if path.exists() else None


def git_head() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return f"commit {head.stdout.strip()} + working tree" if head.returncode == 0 else str(ROOT)


def write_results(out: Path, name: str, doc: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> None:
    """``<out>/<name>.json`` and ``<out>/<name>.md``, and the tables on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / f"{name}.md").write_text(render(doc))
    print(render(doc))
    print(f"wrote {out / f'{name}.json'} and {out / f'{name}.md'}")


def render_again(path: Path, aims_of: Callable[[dict[str, Any]], Any], render: Callable[[dict[str, Any]], str]) -> None:
    """``--render``: the aims and the tables again from a results JSON (the measurements untouched)."""
    doc = json.loads(path.read_text())
    doc["aims"] = aims_of(doc)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    path.with_suffix(".md").write_text(render(doc))
    print(render(doc))
