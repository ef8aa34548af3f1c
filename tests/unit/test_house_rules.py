"""The house rules (pyproject.toml [tool.ruff]) hold for the whole repository: lint and format
(the shipped code, the tests and their harness, the benchmarks, the examples)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE = ["."]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff")
    cmd = [exe] if exe else [sys.executable, "-m", "ruff"]
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [["check", *CODE], ["format", "--check", *CODE]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    result = _ruff(*command)
    assert result.returncode == 0, f"ruff {' '.join(command)}:\n{result.stdout}{result.stderr}"
