"""Trials under the torchrun launcher: a plain DDP script under the supervisor, every rank its own.

Real processes throughout, as in test_supervisor.py: ``python -m openautoglm_trial`` per rank with
the environment the engine builds for ``trial.launcher: torchrun`` (conftest.worker_envs), the
unchanged program (programs/ddp_script.py) joining over Gloo with ``init_process_group()``.
"""

from __future__ import annotations

import http.client
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from openautoglm_trial import contract
from openautoglm_trial.environment import Placement, rank_hint, read_launcher, read_placement
from openautoglm_trial.errors import SettingsError
from openautoglm_trial.supervisor.board import VALUE_LIMIT, BoardServer

DDP = str(Path(__file__).parent / "programs" / "ddp_script.py")
ACCURACY = [{"metric": "accuracy", "direction": "maximize"}]


def supervise_ddp(launch, args: list[str], *, size: int = 2, rank0_delay: float = 0.0, extra: dict | None = None):
    """Start ``size`` supervisors of the DDP script under torchrun (``{rank}`` becomes the rank)."""
    env = {contract.COMMAND: json.dumps([sys.executable, DDP, *args]), contract.ADDITIONAL_METRICS: '["loss"]'}
    return launch(
        size,
        rank0_delay=rank0_delay,
        launcher=contract.LAUNCHER_TORCHRUN,
        objectives=ACCURACY,
        extra={**env, **(extra or {})},
    )


def epoch_of(worker) -> float:
    """The epoch on the supervisor's /metrics (-1 while it does not answer)."""
    status, body = worker.get("/metrics")
    for line in body.splitlines() if status == 200 else []:
        if line.startswith(contract.EPOCH_GAUGE + " "):
            return float(line.split()[1])
    return -1.0


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for init to reap it is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ----------------------------------------------------------------------------- real trials
def test_two_ranks_of_a_plain_ddp_script_join_and_end_equal(launch, tmp_path):
    # What an image or a stray variable might carry: the program must see none of it (with
    # TORCHELASTIC_USE_AGENT_STORE rank 0 would wait for an agent's store that nobody serves).
    stray = {"TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RUN_ID": "x", "HOROVOD_TIMELINE": "/tmp/t"}
    trial = supervise_ddp(launch, ["--epochs", "3", "--save", str(tmp_path / "seen-{rank}.json")], extra=stray)
    assert trial.wait(timeout=120) == [0, 0], trial.logs()
    first, second = trial.results()
    assert first["status"] == second["status"] == "completed", trial.logs()
    assert (first["rank"], second["rank"]) == (0, 1)
    assert first["epochs"] == 3 and len(first["history"]["loss"]) == 3
    assert first["metrics"]["accuracy"] > 0.8, first
    assert first["history"]["loss"][-1] < first["history"]["loss"][0]

    seen = [json.loads((tmp_path / f"seen-{rank}.json").read_text()) for rank in range(2)]
    assert [(s["rank"], s["world_size"], s["joined"]) for s in seen] == [(0, 2, 2.0), (1, 2, 2.0)]
    # Seeded apart, equal at the end: DDP's broadcast and allreduced gradients did it.
    assert seen[0]["before"] != seen[1]["before"]
    assert seen[0]["after"] == seen[1]["after"] != seen[0]["before"]

    addresses = [w.address for w in trial.workers]
    port = int(trial.workers[0].env[contract.MASTER_PORT])
    for rank, s in enumerate(seen):
        env = s["env"]
        assert {k: env[k] for k in contract.TORCHRUN_ENV} == contract.torchrun_env(rank, addresses, port)
        assert env["MASTER_ADDR"] == addresses[0]
        assert [k for k in env if k.startswith(("HOROVOD_", "TORCHELASTIC_"))] == []


def test_one_torchrun_worker_needs_no_peer_and_no_board(launch, tmp_path):
    trial = supervise_ddp(launch, ["--epochs", "1", "--save", str(tmp_path / "seen.json")], size=1)
    assert trial.wait(timeout=60) == [0], trial.logs()
    assert trial.results()[0]["status"] == "completed"
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert (seen["world_size"], seen["env"]["MASTER_ADDR"]) == (1, trial.workers[0].address)


def test_sigterm_stops_both_ranks_of_a_torchrun_trial(launch, tmp_path):
    # Pruning and deletion end a trial with SIGTERM to every rank (pods deleted, processes signalled).
    trial = supervise_ddp(launch, ["--epochs", "200", "--epoch-seconds", "0.3", "--pid", str(tmp_path / "pid-{rank}")])
    deadline = time.monotonic() + 60
    while epoch_of(trial.workers[0]) < 1:
        assert time.monotonic() < deadline, trial.logs()
        assert all(w.process.poll() is None for w in trial.workers), trial.logs()
        time.sleep(0.1)
    pids = [int((tmp_path / f"pid-{rank}").read_text()) for rank in range(2)]
    sent = time.monotonic()
    trial.signal(signal.SIGTERM)
    assert trial.wait(timeout=30) == [143, 143], trial.logs()
    assert time.monotonic() - sent < 15
    for result in trial.results():
        assert result["status"] == "failed" and result["reason"] == "terminated"
    assert not [pid for pid in pids if _running(pid)], trial.logs()


def test_a_divergence_seen_by_rank_0_only_stops_every_rank(launch):
    # Only rank 0 prints; both programs then wait in collectives for ever. Rank 1's supervisor
    # learns of rank 0's decision from rank 0's board server (no Horovod store under torchrun).
    trial = supervise_ddp(launch, ["--diverge"], rank0_delay=1.0)
    assert trial.wait(timeout=90) == [0, 0], trial.logs()
    first, second = trial.results()
    assert first["status"] == second["status"] == "stopped", trial.logs()
    assert first["reason"] == second["reason"] == "diverged: loss is nan at epoch 1"


def test_a_bad_launcher_fails_before_the_program_starts(launch, tmp_path):
    marker = tmp_path / "pid-{rank}"
    trial = supervise_ddp(launch, ["--pid", str(marker)], size=1, extra={contract.LAUNCHER: "mpirun"})
    assert trial.wait(timeout=30) == [1], trial.logs()
    result = trial.results()[0]
    assert result["status"] == "failed"
    assert result["reason"] == "OPENAUTOGLM_LAUNCHER must be horovod or torchrun, got 'mpirun'"
    assert not (tmp_path / "pid-0").exists()


# ----------------------------------------------------------------------------- the contract
def test_torchrun_env_is_what_torchrun_sets_for_one_process_per_node():
    env = contract.torchrun_env(1, ["a", "b", "c"], 23456)
    assert tuple(env) == contract.TORCHRUN_ENV
    assert env == {
        "MASTER_ADDR": "a",
        "MASTER_PORT": "23456",
        "RANK": "1",
        "WORLD_SIZE": "3",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "GROUP_RANK": "1",
        "GROUP_WORLD_SIZE": "3",
        "ROLE_RANK": "1",
        "ROLE_WORLD_SIZE": "3",
        "ROLE_NAME": "default",
    }


def test_master_port_is_one_per_trial_clear_of_the_other_ports():
    ports = {contract.master_port("job", "ns", number) for number in range(200)}
    assert len(ports) > 190  # distinct for nearly every trial of a job (a hash, not a registry)
    assert contract.master_port("job", "ns", 7) == contract.master_port("job", "ns", 7)
    assert contract.master_port("job", "ns", 7) != contract.master_port("job", "other", 7)
    for port in ports:
        # below Linux's ephemeral range (another socket's bind cannot take it) and the rendezvous
        assert 20000 <= port < 29000 and port != contract.DEFAULT_RENDEZVOUS_PORT


def _torchrun(rank: int = 1, hosts: tuple[str, ...] = ("w0", "w1"), **changes: str) -> dict[str, str]:
    env = {
        contract.LAUNCHER: "torchrun",
        contract.WORKER_HOSTS: ",".join(hosts),
        **contract.torchrun_env(rank, hosts, 23456),
    }
    return {k: v for k, v in {**env, **changes}.items() if v is not None}


def test_the_runtime_reads_torchruns_placement():
    assert read_placement(_torchrun()) == Placement(
        rank=1,
        size=2,
        cross_rank=1,
        cross_size=2,
        hostname="w1",
        rendezvous_addr="w0",
        rendezvous_port=contract.DEFAULT_RENDEZVOUS_PORT,
        worker_hosts=("w0", "w1"),
        launcher="torchrun",
        master_port=23456,
    )
    assert read_placement({contract.LAUNCHER: "torchrun"}) == Placement(launcher="torchrun")
    # HOROVOD_* mean nothing under torchrun; RANK is the rank, for errors before settings too.
    assert read_placement(_torchrun(HOROVOD_RANK="0")).rank == 1
    assert rank_hint(_torchrun()) == 1 and rank_hint({"RANK": "1"}) == 0
    assert read_launcher({}) == read_launcher({contract.LAUNCHER: " "}) == "horovod"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({contract.LAUNCHER: "Torchrun"}, "OPENAUTOGLM_LAUNCHER must be horovod or torchrun, got 'Torchrun'"),
        ({"MASTER_ADDR": ""}, "WORLD_SIZE > 1 needs MASTER_ADDR and MASTER_PORT"),
        ({"RANK": "2"}, "RANK 2 is not below WORLD_SIZE 2"),
        ({"RANK": "x"}, "RANK must be an integer, got 'x'"),
        ({"MASTER_PORT": ""}, "MASTER_PORT must be a port other than 29400"),
        ({"MASTER_PORT": "29400"}, "MASTER_PORT must be a port other than 29400"),
        ({"MASTER_PORT": "70000"}, "MASTER_PORT must be a port other than 29400"),
        ({"LOCAL_RANK": "1"}, "each worker is its own node with one process"),
        ({"GROUP_WORLD_SIZE": "1"}, "each worker is its own node with one process"),
        ({contract.WORKER_HOSTS: "w0"}, "must list the address of all 2 ranks"),
        ({contract.WORKER_HOSTS: "w1,w0"}, "the first MASTER_ADDR 'w0'"),
    ],
)
def test_bad_torchrun_settings_name_the_variable(changes, words):
    with pytest.raises(SettingsError, match=words):
        read_placement(_torchrun(**changes))


def test_the_board_server_keeps_small_values_of_our_scope():
    server = BoardServer(("127.0.0.1", 0)).start()
    try:
        port = server.server_address[1]

        def request(method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request(method, path, body=body)
                response = connection.getresponse()
                return response.status, response.read()
            finally:
                connection.close()

        assert request("GET", "/openautoglm/stop") == (404, b"")
        assert request("PUT", "/openautoglm/rank_1", b"w1")[0] == 200
        assert request("GET", "/openautoglm/rank_1") == (200, b"w1")
        assert server.cache["openautoglm"] == {"rank_1": b"w1"}
        assert request("PUT", "/global/rank_1", b"w1")[0] == 404  # Horovod's scopes are not ours
        assert request("PUT", "/openautoglm/big", b"x" * (VALUE_LIMIT + 1))[0] == 413
        assert "big" not in server.cache["openautoglm"]
    finally:
        server.shutdown()
        server.server_close()
