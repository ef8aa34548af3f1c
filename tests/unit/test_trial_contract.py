"""The trial contract is spelled once, in openautoglm_trial.contract, and both sides use it.

The operator writes a worker's environment (engine/worker.py, the TuningJob model's checks) and the
trial runtime reads it (environment.py, the supervisor): each test here ties a writer to its reader
through the contract's names, and the last ones guard against the contract being spelled again.
"""

from __future__ import annotations

import ast
import re
import signal
from pathlib import Path

import pytest
from helpers import DELETE, digits_job, mutate
from pydantic import ValidationError

from openautoglm.engine.worker import build_worker_env, worker_command
from openautoglm.spec import MetricsSource
from openautoglm.validation import validate_document
from openautoglm_trial import contract as c
from openautoglm_trial.environment import HorovodPlacement, read_placement
from openautoglm_trial.errors import SettingsError
from openautoglm_trial.supervisor.command import render

REPO = Path(__file__).resolve().parents[2]
SHIPPED = [REPO / "operator" / "openautoglm", REPO / "trial_image" / "openautoglm_trial"]
CONTRACT = REPO / "trial_image" / "openautoglm_trial" / "contract.py"


# ----------------------------------------------------------------------------- Horovod
def test_horovod_env_sets_exactly_what_horovodrun_sets():
    env = c.horovod_env(1, ["a", "b", "c"], 4242)
    assert tuple(env) == c.HOROVOD_ENV
    assert env == {
        "HOROVOD_RANK": "1",
        "HOROVOD_SIZE": "3",
        "HOROVOD_LOCAL_RANK": "0",
        "HOROVOD_LOCAL_SIZE": "1",
        "HOROVOD_CROSS_RANK": "1",
        "HOROVOD_CROSS_SIZE": "3",
        "HOROVOD_HOSTNAME": "b",
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": "a",
        "HOROVOD_GLOO_RENDEZVOUS_PORT": "4242",
        "HOROVOD_CONTROLLER": "gloo",
        "HOROVOD_CPU_OPERATIONS": "gloo",
    }
    assert c.horovod_env(0, ["a"])[c.HOROVOD_GLOO_RENDEZVOUS_PORT] == str(c.DEFAULT_RENDEZVOUS_PORT)


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_the_runtime_reads_the_placement_the_builder_writes(rank):
    hosts = ["w0", "w1", "w2"]
    env = {**c.horovod_env(rank, hosts, 4242), c.WORKER_HOSTS: ",".join(hosts)}
    assert read_placement(env) == HorovodPlacement(
        rank=rank,
        size=3,
        local_rank=0,
        local_size=1,
        cross_rank=rank,
        cross_size=3,
        hostname=hosts[rank],
        rendezvous_addr="w0",
        rendezvous_port=4242,
        worker_hosts=tuple(hosts),
    )


def test_the_engine_gives_every_worker_the_builders_variables():
    job = validate_document(digits_job())
    hosts = ["10.0.0.1", "10.0.0.2"]
    for rank in range(2):
        env = build_worker_env(job, 7, rank, {"lr": 0.1}, hosts, bind_address="0.0.0.0", rendezvous_port=4242)
        assert {k: env[k] for k in c.HOROVOD_ENV} == c.horovod_env(rank, hosts, 4242)
        assert read_placement(env).rank == rank


def test_the_engine_gives_a_torchrun_worker_what_the_runtime_reads():
    job = validate_document(mutate(digits_job(), "spec.trial.launcher", "torchrun"))
    hosts = ["10.0.0.1", "10.0.0.2"]
    port = c.master_port(job.name, "team-a", 7)
    for rank in range(2):
        env = build_worker_env(job, 7, rank, {"lr": 0.1}, hosts, bind_address="0.0.0.0", namespace="team-a")
        assert {k: env[k] for k in c.TORCHRUN_ENV} == c.torchrun_env(rank, hosts, port)
        assert not [k for k in env if k.startswith(c.HOROVOD_PREFIX)]
        placement = read_placement(env)
        assert (placement.rank, placement.size, placement.master_port, placement.torchrun) == (rank, 2, port, True)


# ----------------------------------------------------------------------------- placeholders
def test_one_placeholder_grammar_for_the_model_and_the_supervisor():
    item = "--lr=${trialParameters.lr},${trialParameters.bad name}"
    assert c.placeholders(item) == ["lr", "bad name"]
    # The supervisor fills what the grammar finds, and reports a name it cannot be.
    assert render(["train", "--lr=${trialParameters.lr}"], {"lr": 0.5}) == ["train", "--lr=0.5"]
    with pytest.raises(SettingsError, match="does not name a parameter"):
        render([item], {"lr": 0.5})
    # The model refuses a placeholder that names no parameter, found by the same grammar.
    doc = mutate(digits_job(), "spec.trial.task", DELETE)
    mutate(doc, "spec.trial.command", ["train", "${trialParameters.nope}"])
    with pytest.raises((ValueError, ValidationError), match=re.escape("${trialParameters.nope} names no parameter")):
        validate_document(doc)


# ----------------------------------------------------------------------------- reserved variables
@pytest.mark.parametrize("prefix", c.RESERVED_ENV_PREFIXES)
def test_a_users_env_may_not_set_the_contracts_variables(prefix):
    doc = mutate(digits_job(), "spec.trial.env", [{"name": f"{prefix}X", "value": "1"}])
    with pytest.raises((ValueError, ValidationError), match="set by the operator"):
        validate_document(doc)


def test_every_contract_variable_has_a_reserved_prefix():
    names = [v for k, v in vars(c).items() if k.isupper() and isinstance(v, str) and re.fullmatch(r"[A-Z_]+", v)]
    variables = [n for n in names if n.startswith(("OPENAUTOGLM", "HOROVOD"))]
    assert variables and all(n.startswith(c.RESERVED_ENV_PREFIXES) for n in variables)


# ----------------------------------------------------------------------------- ports, exit codes, image
def test_the_model_defaults_to_the_contracts_metrics_port():
    assert MetricsSource().port == c.DEFAULT_METRICS_PORT == 9090
    assert c.DEFAULT_RENDEZVOUS_PORT == 29400


def test_exit_codes_are_those_of_a_process_ended_by_sigterm():
    assert (c.EXIT_COMPLETED, c.EXIT_FAILED, c.EXIT_TERMINATED) == (0, 1, 128 + signal.SIGTERM)


def test_the_trial_image_exposes_the_contracts_ports_and_runs_what_the_engine_starts():
    dockerfile = (REPO / "trial_image" / "Dockerfile").read_text()
    final = re.split(r"^FROM ", dockerfile, flags=re.M)[-1]
    [expose] = re.findall(r"^EXPOSE (.+)$", final, flags=re.M)
    assert {int(p) for p in expose.split()} == {c.DEFAULT_METRICS_PORT, c.DEFAULT_RENDEZVOUS_PORT}
    [entry] = re.findall(r"^ENTRYPOINT (.+)$", final, flags=re.M)
    assert ast.literal_eval(entry) == worker_command(validate_document(digits_job()))
    # The whole package, subpackages included (supervisor/, builtin/, tasks/), not a file list.
    assert re.search(r"^COPY trial_image/openautoglm_trial /\S+/openautoglm_trial$", final, flags=re.M)


# ----------------------------------------------------------------------------- spelled once
def _literals(path: Path) -> list[tuple[int, object]]:
    return [
        (node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant)
    ]


def _spelled_again() -> list[str]:
    horovod = set(c.HOROVOD_ENV)
    found = []
    for root in SHIPPED:
        for path in sorted(root.rglob("*.py")):
            if path == CONTRACT:
                continue
            for line, value in _literals(path):
                if (
                    value in (c.DEFAULT_METRICS_PORT, c.DEFAULT_RENDEZVOUS_PORT)
                    and not isinstance(value, bool)
                    or value in horovod
                    # "OPENAUTOGLM_" alone is also the operator's own settings prefix (config.py)
                    or isinstance(value, str)
                    and (value == "HOROVOD_" or "'HOROVOD_'" in value)
                    or isinstance(value, str)
                    and "{trialParameters\\." in value
                ):
                    found.append(f"{path.relative_to(REPO)}:{line}: {value!r}")
    return found


def test_shipped_code_spells_the_contract_only_in_contract_py():
    assert not _spelled_again(), "use the names of openautoglm_trial.contract:\n" + "\n".join(_spelled_again())


def test_no_trial_module_defines_its_own_exit_codes():
    for path in (REPO / "trial_image" / "openautoglm_trial").rglob("*.py"):
        if path == CONTRACT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                assert not [n for n in names if n.startswith("EXIT_")], f"{path}: exit codes live in contract.py"
