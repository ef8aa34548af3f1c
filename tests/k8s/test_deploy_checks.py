"""deploy/ and the Dockerfiles as platform teams check them: checkov on every rendered kustomize
directory and on the Dockerfiles, hadolint on the Dockerfiles. Zero findings; each accepted one is
suppressed in place with its reason (checkov.io/skipN annotations, `# checkov:skip=`,
`# hadolint ignore=`), and these tests count the suppressions so a new one is a visible change.

The checkers live in their own virtual environment (scripts/install-checkers.sh): checkov pins
dependencies that the project's own must not be bent to.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_deploy import KUSTOMIZE

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("OPENAUTOGLM_CHECKERS", "/var/cache/openautoglm/checkers")) / "bin"
CHECKOV = shutil.which("checkov", path=str(TOOLS)) or shutil.which("checkov")
HADOLINT = shutil.which("hadolint", path=str(TOOLS)) or shutil.which("hadolint")
DOCKERFILES = ["Dockerfile", "trial_image/Dockerfile", "examples/own-script/Dockerfile"]
#: Accepted findings, each with its reason where it is suppressed.
SUPPRESSED = {
    "deploy/default": {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_38"},
    "deploy/dashboard": {"CKV_K8S_43", "CKV_K8S_15"},
    "Dockerfile": {"CKV_DOCKER_7", "CKV_DOCKER_2"},
    "trial_image/Dockerfile": {"CKV_DOCKER_7", "CKV_DOCKER_2"},
    "examples/own-script/Dockerfile": {"CKV_DOCKER_2"},
}
#: Directories without a workload: nothing suppressed, and fewer checks apply (a sample TuningJob,
#: one RoleBinding); checkov must still have looked at this many.
SMALL = {"deploy/samples": 0, "deploy/storage-secrets": 5}


def _checkov(path: Path, framework: str) -> dict:
    assert CHECKOV, "checkov is not installed: bash scripts/install-checkers.sh"
    proc = subprocess.run(
        [CHECKOV, "-f", str(path), "--framework", framework, "--output", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},  # offline: no guideline download
    )
    assert proc.stdout.strip(), proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    if not reports or reports == [{}] or all(r.get("check_type") is None for r in reports):
        return {"failed": [], "skipped": [], "passed": 0}  # nothing checkov knows in the file
    failed = [c for r in reports for c in r["results"].get("failed_checks", [])]
    skipped = [c for r in reports for c in r["results"].get("skipped_checks", [])]
    return {"failed": failed, "skipped": skipped, "passed": sum(r["summary"]["passed"] for r in reports)}


def _describe(checks: list[dict]) -> list[str]:
    return [f"{c['check_id']} {c['check_name']} ({c['resource']})" for c in checks]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not on PATH")
@pytest.mark.parametrize("directory", KUSTOMIZE)
def test_checkov_finds_nothing_in_the_rendered_manifests(directory: str, tmp_path: Path) -> None:
    proc = subprocess.run(["kubectl", "kustomize", str(REPO / directory)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(proc.stdout)
    result = _checkov(rendered, "kubernetes")
    assert not result["failed"], _describe(result["failed"])
    expected = (
        set()
        if directory in SMALL
        else SUPPRESSED["deploy/dashboard" if "dashboard" in directory else "deploy/default"]
    )
    assert {c["check_id"] for c in result["skipped"]} == expected
    assert result["passed"] >= SMALL.get(directory, 50)  # checkov did look


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_checkov_finds_nothing_in_the_dockerfiles(dockerfile: str) -> None:
    result = _checkov(REPO / dockerfile, "dockerfile")
    assert not result["failed"], _describe(result["failed"])
    assert {c["check_id"] for c in result["skipped"]} == SUPPRESSED[dockerfile]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_finds_nothing_in_the_dockerfiles(dockerfile: str) -> None:
    assert HADOLINT, "hadolint is not installed: bash scripts/install-checkers.sh"
    proc = subprocess.run([HADOLINT, "--no-color", str(REPO / dockerfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_suppression_gives_its_reason() -> None:
    for dockerfile in DOCKERFILES:
        lines = (REPO / dockerfile).read_text().splitlines()
        for i, line in enumerate(lines):
            if "checkov:skip=" in line:
                assert len(line.split(":", 2)[-1].strip()) > 20, f"{dockerfile}:{i + 1}: give the reason"
            if "hadolint ignore=" in line:
                above = lines[i - 1] if i else ""
                assert above.startswith("#") and "hadolint" not in above, f"{dockerfile}:{i + 1}: say why above"
    for manifest in (REPO / "deploy").rglob("*.yaml"):
        for i, line in enumerate(manifest.read_text().splitlines()):
            if "checkov.io/skip" in line:
                assert "=" in line and len(line.split("=", 1)[1].strip()) > 20, f"{manifest}:{i + 1}: give the reason"
