"""The house rules hold for the whole repository, so that a newcomer's change meets them in the suite
rather than in review:

* ruff ([tool.ruff] in pyproject.toml): lint, including the size of a function (complexity, branches,
  statements), and format, over the shipped code, the tests and their harness, the benchmarks, the examples;
* mypy ([tool.mypy]) over the shipped code (operator/ and trial_image/), each remaining
  ``# type: ignore`` naming its error code and saying why;
* no module over MAX_MODULE_LINES lines and no class over MAX_CLASS_LINES in the shipped code, except
  those in SIZE_EXCEPTIONS (ruff measures functions, not modules or classes);
* every pytest marker registered in pyproject.toml, the one place, with ``--strict-markers``.
"""

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE = ["."]
SHIPPED = [ROOT / "operator" / "openautoglm", ROOT / "trial_image" / "openautoglm_trial"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

MAX_MODULE_LINES = 800
MAX_CLASS_LINES = 400
#: "path" (a module) or "path::Class" -> why it may be larger. A stale entry fails the test too.
SIZE_EXCEPTIONS: dict[str, str] = {
    "operator/openautoglm/engine/reconcile.py::Reconciler": (
        "the level-triggered pass (docs/architecture.md 'The step'): its steps share one pass's view of the trials "
        "and the crash-safety argument is made over the class as a whole"
    ),
}


def _shipped_modules() -> list[Path]:
    return sorted(p for root in SHIPPED for p in root.rglob("*.py"))


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff")
    cmd = [exe] if exe else [sys.executable, "-m", "ruff"]
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [["check", *CODE], ["format", "--check", *CODE]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    result = _ruff(*command)
    assert result.returncode == 0, f"ruff {' '.join(command)}:\n{result.stdout}{result.stderr}"


#: The rules on a function's size, and where pyproject.toml sets their limits.
_SIZE_RULES = {"C901": "mccabe.max-complexity", "PLR0912": "pylint.max-branches", "PLR0915": "pylint.max-statements"}


def test_every_exception_to_the_function_size_rules_is_still_needed():
    lint = PYPROJECT["tool"]["ruff"]["lint"]
    limits = []
    for rule in _SIZE_RULES.values():
        section, key = rule.split(".")
        limits += ["--config", f"lint.{rule}={lint[section][key]}"]
    result = _ruff(
        "check", "--isolated", "--select", ",".join(_SIZE_RULES), *limits, "--output-format", "json", "operator",
        "trial_image",
    )  # fmt: skip
    found = {(Path(v["filename"]).relative_to(ROOT).as_posix(), v["code"]) for v in json.loads(result.stdout)}
    excepted = {
        (path, code)
        for path, codes in lint["per-file-ignores"].items()
        if path.startswith(("operator/", "trial_image/"))
        for code in codes
        if code in _SIZE_RULES
    }
    assert not excepted - found, f"within the limits now: remove from per-file-ignores {sorted(excepted - found)}"


def test_mypy_is_clean(mypy_result):
    # The files and options are pyproject's; the run starts when the session has collected this test
    # (tests/conftest.py), and .mypy_cache/ (git-ignored) makes a second one take about a second.
    status, output = mypy_result
    assert status == 0, f"mypy:\n{output}"


#: ``# type: ignore[code, ...]`` then a reason, on the line or in the comment line above it.
_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[a-z-]+(?:,\s*[a-z-]+)*\])?(?P<after>.*)$")


def test_every_type_ignore_names_its_error_code_and_says_why():
    bare = []
    for path in _shipped_modules():
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = _IGNORE.search(line)
            if m is None:
                continue
            reason = m["after"].strip().startswith("#") or (i > 0 and lines[i - 1].strip().startswith("#"))
            if not m["codes"] or not reason:
                bare.append(f"{path.relative_to(ROOT)}:{i + 1}: {line.strip()}")
    assert not bare, "each `# type: ignore[code]` says why (after it, or in a comment above):\n" + "\n".join(bare)


def _oversized() -> dict[str, int]:
    found = {}
    for path in _shipped_modules():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if (n := len(text.splitlines())) > MAX_MODULE_LINES:
            found[rel] = n
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                if (n := node.end_lineno - node.lineno + 1) > MAX_CLASS_LINES:
                    found[f"{rel}::{node.name}"] = n
    return found


def test_no_module_or_class_grows_past_the_size_limits():
    oversized = _oversized()
    unexplained = {k: n for k, n in oversized.items() if k not in SIZE_EXCEPTIONS}
    assert not unexplained, (
        f"over {MAX_MODULE_LINES} lines (module) or {MAX_CLASS_LINES} (class): {unexplained}; "
        "split it by role, or add it to SIZE_EXCEPTIONS with the reason"
    )
    stale = sorted(set(SIZE_EXCEPTIONS) - set(oversized))
    assert not stale, f"within the limits now: remove {stale} from SIZE_EXCEPTIONS"


def _markers_used() -> set[str]:
    used = set()
    for path in (ROOT / "tests").rglob("*.py"):
        used |= set(re.findall(r"pytest\.mark\.([A-Za-z_]\w*)", path.read_text()))
    return used


#: pytest's own markers and those of the plugins in the dev extra (pytest-timeout, pytest-asyncio).
_PROVIDED = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings", "timeout", "asyncio"}


def test_every_marker_is_registered_in_pyproject_and_nowhere_else():
    ini = PYPROJECT["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in ini["addopts"].split()
    registered = {m.split(":")[0].strip() for m in ini["markers"]}
    assert _markers_used() - _PROVIDED <= registered, "register the marker in pyproject.toml"
    elsewhere = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("conftest.py")
        if re.search(r"addinivalue_line\(\s*[\"']markers", p.read_text())
    ]
    assert not elsewhere, f"markers are registered in pyproject.toml only, not in {elsewhere}"
