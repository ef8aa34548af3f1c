"""issue 25: `openautoglm tune` gives each local worker its own GPU (CUDA_VISIBLE_DEVICES), never all
of them to every trial; without GPUs every worker gets CUDA_VISIBLE_DEVICES="" (the CPU).

The pool is checked as a function; the backend with real worker processes, whose environment is read
from /proc (no GPU is needed to see which one a worker was given).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from openautoglm.local.backend import LocalBackend
from openautoglm.local.gpus import GpuPool, gpus_per_worker, visible_gpus
from openautoglm.validation import validate_document


def job(workers: int = 2, **trial: Any) -> Any:
    return validate_document(
        {
            "apiVersion": "openautoglm.io/v1alpha1",
            "kind": "TuningJob",
            "metadata": {"name": "gpus"},
            "spec": {
                "objective": {"metric": "loss", "direction": "minimize"},
                "budget": {"maxTrials": 4, "parallelism": 4},
                "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}],
                "trial": {"command": ["python", "-c", "import time; time.sleep(60)"], "workers": workers, **trial},
            },
        }
    )


# ============================================================================= the pool
def test_live_workers_never_share_a_gpu_while_one_is_free() -> None:
    pool = GpuPool(["0", "1", "2", "3"])
    live: set[tuple[int, int]] = set()

    def take(worker: tuple[int, int]) -> str:
        live.add(worker)
        return pool.take(worker, 1, lambda w: w in live)

    assert [take((0, 0)), take((0, 1)), take((1, 0)), take((1, 1))] == ["0", "1", "2", "3"]
    live -= {(0, 0), (0, 1)}  # trial 0 ended: its GPUs are free again
    assert sorted([take((2, 0)), take((2, 1))]) == ["0", "1"]
    assert len({pool.held()[w] for w in live}) == len(live) == 4


def test_more_workers_than_gpus_share_them_evenly_round_robin() -> None:
    pool = GpuPool(["a", "b", "c"])
    given = [pool.take((n, 0), 1, lambda w: True) for n in range(7)]
    assert given == ["a", "b", "c", "a", "b", "c", "a"]
    assert max(Counter(given).values()) - min(Counter(given).values()) <= 1


def test_a_worker_asking_for_two_gets_two_distinct_gpus() -> None:
    pool = GpuPool(["0", "1", "2", "3"])
    first = pool.take((0, 0), 2, lambda w: True)
    second = pool.take((0, 1), 2, lambda w: True)
    assert (first, second) == ("0,1", "2,3")
    assert pool.take((1, 0), 8, lambda w: True).split(",") == ["0", "1", "2", "3"]  # at most all of them


def test_no_gpus_means_the_cpu() -> None:
    assert GpuPool([]).take((0, 0), 1, lambda w: True) == ""
    assert GpuPool(["0"]).take((0, 0), 0, lambda w: True) == ""  # nvidia.com/gpu: 0


def test_which_gpus_are_shared_out() -> None:
    assert visible_gpus("0,2", {"CUDA_VISIBLE_DEVICES": "1"}) == ["0", "2"]  # --gpus first
    assert visible_gpus("none", {"CUDA_VISIBLE_DEVICES": "1"}) == []
    assert visible_gpus(None, {"CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb"}) == ["GPU-aa", "GPU-bb"]
    assert visible_gpus(None, {"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus(None, {"CUDA_VISIBLE_DEVICES": "-1"}) == []  # CUDA's "hide all"
    assert visible_gpus(None, {"CUDA_VISIBLE_DEVICES": "3,-1,4"}) == ["3"]  # CUDA stops at an invalid one


def test_a_worker_gets_its_gpu_limit() -> None:
    assert gpus_per_worker(job()) == 1
    gpu = {"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "2"}}
    assert gpus_per_worker(job(resources=gpu)) == 2


# ============================================================================= the backend
def _visible(backend: LocalBackend, number: int, rank: int) -> str | None:
    pid = backend._pid(number, rank)
    assert pid is not None
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"CUDA_VISIBLE_DEVICES=")]
    return found[0] if found else None


def test_each_local_worker_gets_its_own_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner sees four GPUs; two trials of two workers: four workers, four GPUs. A trial
    launched after one ended gets the GPUs that trial gave back."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    backend = LocalBackend(job(), tmp_path, base_dir=tmp_path)
    try:
        backend.launch(0, {"x": 0.1})
        backend.launch(1, {"x": 0.2})
        given = {(n, r): _visible(backend, n, r) for n in (0, 1) for r in (0, 1)}
        assert sorted(given.values()) == ["0", "1", "2", "3"], given
        assert (tmp_path / "trials" / "t0" / "w1" / "gpus").read_text() == given[(0, 1)]
        backend.release(0)
        backend.launch(2, {"x": 0.3})
        assert sorted([_visible(backend, 2, 0), _visible(backend, 2, 1)]) == sorted([given[(0, 0)], given[(0, 1)]])
    finally:
        backend.close()


def test_without_gpus_every_worker_runs_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    backend = LocalBackend(job(workers=1), tmp_path, base_dir=tmp_path)
    try:
        backend.launch(0, {"x": 0.1})
        assert _visible(backend, 0, 0) == ""
    finally:
        backend.close()
    explicit = LocalBackend(job(workers=1), tmp_path / "none", base_dir=tmp_path, gpus=[])
    try:
        explicit.launch(0, {"x": 0.1})
        assert _visible(explicit, 0, 0) == ""
    finally:
        explicit.close()


def test_tune_gpus_option_is_what_the_workers_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`openautoglm tune --gpus 1,3`: a trial's two workers get GPU 1 and GPU 3, whatever the
    runner's CUDA_VISIBLE_DEVICES says (each worker notes what it was given in a file)."""
    from openautoglm import cli

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    seen = tmp_path / "seen"
    seen.mkdir()
    program = (
        "import os, pathlib; pathlib.Path(os.environ['SEEN'], os.environ['CUDA_VISIBLE_DEVICES']).touch(); "
        "print('loss=1')"
    )
    doc = {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": "gpus"},
        "spec": {
            "objective": {"metric": "loss", "direction": "minimize"},
            "budget": {"maxTrials": 1, "parallelism": 1},
            "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}],
            "trial": {
                "command": ["python", "-c", program],
                "workers": 2,
                "env": [{"name": "SEEN", "value": str(seen)}],
            },
        },
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert cli.main(["tune", str(path), "--gpus", "1,3", "--quiet", "--workdir", str(tmp_path / "work")]) == 0
    assert sorted(p.name for p in seen.iterdir()) == ["1", "3"]
