"""Every sampler and pruner the CRD admits runs in the operator image.

There is no container engine here, so the image is reproduced as an import environment: the
distributions the Dockerfile installs (the project with the extras it names, and everything
they require, read from the installed packages' metadata) are the only importable non-stdlib
packages in a subprocess, which then builds each sampler of the CRD's enum and runs a few
ask/tell rounds on a conditional, mixed search space. A sampler that needs a package the image
lacks (the gp sampler needs torch) fails here, not at a cluster job's first trial.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
DIST = "openautoglm-tune"

#: Runs in the subprocess: only ``ALLOWED`` top-level packages (plus the stdlib) import.
_PROBE = r"""
import importlib.abc, json, sys
ALLOWED = set(json.loads(sys.argv[1]))
SAMPLERS, PRUNERS = json.loads(sys.argv[2]), json.loads(sys.argv[3])

class ImageOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or top in ALLOWED or top.startswith("_"):
            return None
        raise ModuleNotFoundError(f"No module named {top!r} (not in the operator image)", name=top)

sys.meta_path.insert(0, ImageOnly())
import optuna
from openautoglm.validation import validate_document
from openautoglm.samplers import build_sampler
from openautoglm.pruners import build_pruner
from openautoglm.space import suggest
optuna.logging.set_verbosity(optuna.logging.ERROR)

def job(sampler, pruner):
    return validate_document({"apiVersion": "openautoglm.io/v1alpha1", "kind": "TuningJob",
        "metadata": {"name": "probe"}, "spec": {
        "objective": {"metric": "score", "direction": "maximize"},
        "budget": {"maxTrials": 8}, "algorithm": {"sampler": sampler, "seed": 1},
        "earlyStopping": {"pruner": pruner, "settings": {"lower": 0.0} if pruner == "threshold" else {}},
        "parameters": [{"name": "x", "type": "float", "low": 0.0, "high": 1.0},
                       {"name": "n", "type": "int", "low": 1, "high": 4},
                       {"name": "opt", "type": "categorical", "choices": ["a", "b"]},
                       {"name": "y", "type": "float", "low": 1e-3, "high": 1.0, "log": True,
                        "when": {"opt": "a"}}],
        "trial": {"command": ["python", "train.py"]}}})

failures = {}
for sampler in SAMPLERS:
    try:
        spec = job(sampler, "none").spec
        study = optuna.create_study(direction="maximize", sampler=build_sampler(spec))
        for _ in range(6):   # past every sampler's start-up trials, into its model
            t = study.ask()
            params = suggest(t, spec)
            study.tell(t, params["x"] - 0.1 * params["n"])
    except Exception as exc:
        failures["sampler " + sampler] = f"{type(exc).__name__}: {exc}"
for pruner in PRUNERS:
    try:
        spec = job("random", pruner).spec
        study = optuna.create_study(direction="maximize", pruner=build_pruner(spec))
        t = study.ask(); t.report(0.5, 1); t.should_prune()
    except Exception as exc:
        failures["pruner " + pruner] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failures))
"""


def _image_extras() -> list[str]:
    """The extras the Dockerfile's runtime stage installs the project with."""
    final = re.split(r"^FROM ", (REPO / "Dockerfile").read_text(), flags=re.M)[-1]
    [extras] = re.findall(r'"openautoglm-tune\[([a-z,]+)\]"', final)
    return extras.split(",")


def _closure(dist: str, extras: list[str]) -> set[str]:
    """Names of the distributions ``pip install dist[extras]`` brings in."""
    seen: set[str] = set()
    todo = [(dist, tuple(extras))]
    while todo:
        name, wanted = todo.pop()
        key = name.lower().replace("_", "-")
        if (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        for raw in md.requires(name) or []:
            req = Requirement(raw)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(e) for e in envs):
                todo.append((req.name, tuple(sorted(req.extras))))
    return {k for k, _ in seen}


def _importable(dists: set[str]) -> set[str]:
    tops = set()
    for top, owners in md.packages_distributions().items():
        if any(o.lower().replace("_", "-") in dists for o in owners):
            tops.add(top)
    return tops | {"openautoglm", "openautoglm_trial"}


def _crd_enums() -> tuple[list[str], list[str]]:
    crd = yaml.safe_load((REPO / "crds" / "openautoglm.io_tuningjobs.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    return (spec["algorithm"]["properties"]["sampler"]["enum"], spec["earlyStopping"]["properties"]["pruner"]["enum"])


def _probe(allowed: set[str], samplers: list[str], pruners: list[str]) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(sorted(allowed)), json.dumps(samplers), json.dumps(pruners)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def image_packages() -> set[str]:
    dists = _closure(DIST, _image_extras())
    assert "kopf" in dists and "horovod" not in dists and "transformers" not in dists
    return _importable(dists)


def test_every_admitted_sampler_and_pruner_runs_in_the_operator_image(image_packages: set[str]) -> None:
    samplers, pruners = _crd_enums()
    assert "gp" in samplers and "policy-gradient" in samplers
    assert _probe(image_packages, samplers, pruners) == {}


def test_the_probe_catches_a_missing_package(image_packages: set[str]) -> None:
    # Without torch in the image (as before issue 8) the gp sampler cannot run: the probe says so.
    failures = _probe(image_packages - {"torch"}, ["gp", "tpe"], [])
    assert list(failures) == ["sampler gp"] and "torch" in failures["sampler gp"]


def test_the_operator_does_not_run_in_the_studies_volume() -> None:
    # Issue 21: a relative path the operator was handed (once, a Secret's value taken for a journal
    # name) landed among every team's journals because the image's working directory was the volume.
    text = (REPO / "Dockerfile").read_text()
    final_stage = text.rsplit("\nFROM ", 1)[-1]
    workdir = re.findall(r"^WORKDIR\s+(\S+)", final_stage, re.M)[-1]
    study_dir = re.search(r"OPENAUTOGLM_STUDY_DIR=(\S+)", final_stage).group(1)
    assert not (study_dir + "/").startswith(workdir.rstrip("/") + "/"), (workdir, study_dir)
    manager = yaml.safe_load((REPO / "deploy" / "manager" / "manager.yaml").read_text())
    [container] = manager["spec"]["template"]["spec"]["containers"]
    assert "workingDir" not in container or not container["workingDir"].startswith("/var/lib/openautoglm")
