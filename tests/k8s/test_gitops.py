"""What GitOps tools read from a TuningJob: the Argo CD health check (deploy/argocd), run by a real
Lua interpreter on statuses made by the operator's own status builder. (`kubectl wait
--for=condition=Succeeded` against the harness: tests/k8s/test_spec_edits_cluster.py.)"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from openautoglm.engine.status import JobStatus
from openautoglm.k8s import builders

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "deploy" / "argocd" / "health-tuningjob.lua"
SNIPPET = ROOT / "deploy" / "argocd" / "argocd-cm-snippet.yaml"
LUA = shutil.which("lua5.4") or shutil.which("lua")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

pytestmark = pytest.mark.skipif(LUA is None, reason="lua5.4 missing: bash scripts/install-services.sh installs it")


def _lua(value: Any) -> str:
    """A Lua table constructor for a JSON value (what Argo CD hands the script as ``obj``)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid Lua escapes for this text
    if isinstance(value, list):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    return "{" + ", ".join(f"[{json.dumps(k)}] = {_lua(v)}" for k, v in value.items() if v is not None) + "}"


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    script = (
        f"obj = {_lua(obj)}\nlocal hs = dofile({json.dumps(str(HEALTH))})\nio.write(hs.status, '\\n', hs.message or '')"
    )
    out = subprocess.run([LUA, "-"], input=script, capture_output=True, text=True, timeout=30, check=True).stdout
    status, _, message = out.partition("\n")
    return status, message


def _engine_status(phase: str, reason: str | None = None, message: str | None = None) -> JobStatus:
    finished = 4 if phase in ("Succeeded", "Failed") else 1
    return JobStatus(
        phase=phase,
        reason=reason,
        message=message,
        counts={
            "running": 0 if finished == 4 else 2,
            "completed": finished,
            "pruned": 0,
            "failed": 0,
            "finished": finished,
            "max": 4,
        },
        best=None,
        pareto=[],
        recent=[],
        elapsed_seconds=3.0,
        remaining_seconds=None,
    )


def _job(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "openautoglm.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": "digits", "namespace": "ml", "generation": generation},
    }
    if status is not None:
        obj["status"] = status
    return obj


def _resource_status(
    phase: str,
    reason: str | None = None,
    message: str | None = None,
    *,
    generation: int = 1,
    refused: str | None = None,
) -> dict[str, Any]:
    return builders.build_resource_status(
        _engine_status(phase, reason, message),
        previous=None,
        generation=generation,
        start_time="2026-01-01T00:00:00Z",
        now=NOW,
        storage="journal",
        refused=refused,
    )


@pytest.mark.parametrize(
    ("phase", "reason", "health"),
    [
        ("Pending", None, "Progressing"),
        ("Running", None, "Progressing"),
        ("Succeeded", "MaxTrialsReached", "Healthy"),
        ("Succeeded", "TargetReached", "Healthy"),
        ("Failed", "MaxFailedTrialsReached", "Degraded"),
        ("Failed", "NoTrialCompleted", "Degraded"),
    ],
)
def test_argocd_health_follows_the_job_phase(phase: str, reason: str | None, health: str) -> None:
    status, message = argocd_health(_job(_resource_status(phase, reason, "4 trials")))
    assert status == health
    if reason:
        assert reason in message


def test_an_invalid_spec_is_degraded_and_says_why() -> None:
    obj = _job(
        builders.build_invalid_status(["spec.trial.workers: must be >= 1"], previous=None, generation=1, now=NOW)
    )
    assert argocd_health(obj) == ("Degraded", "InvalidSpec: spec.trial.workers: must be >= 1")


def test_a_refused_edit_is_degraded_while_the_job_goes_on() -> None:
    why = "spec.algorithm changed (sampler settings); use a new TuningJob for a fresh study"
    status = _resource_status("Running", generation=2, refused=why)
    assert status["phase"] == "Running"  # the job goes on with its old spec
    assert argocd_health(_job(status, generation=2)) == ("Degraded", f"{builders.SPEC_CHANGE_REFUSED}: {why}")


def test_a_generation_the_operator_has_not_seen_is_progressing_even_if_it_succeeded_before() -> None:
    # kubectl apply of a raised maxTrials on a finished job: until the operator observes
    # generation 2, the Succeeded status is about generation 1.
    status, message = argocd_health(_job(_resource_status("Succeeded", "MaxTrialsReached", generation=1), generation=2))
    assert (status, message) == ("Progressing", "Waiting for the operator to observe generation 2")
    assert argocd_health(_job(None)) == ("Progressing", "Waiting for the operator to pick up the TuningJob")


def test_the_argocd_cm_snippet_carries_the_shipped_script() -> None:
    doc = yaml.safe_load(SNIPPET.read_text())
    assert doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "argocd-cm"
    # Argo CD's key for a group/kind: resource.customizations.health.<group>_<kind>
    assert doc["data"]["resource.customizations.health.openautoglm.io_TuningJob"] == HEALTH.read_text()
