"""The README and docs/ name only what exists: links, repository paths, modules and commands.

The pages are read by newcomers before the code, and moves (a module into a package, a test into
another tier) leave them stale without anyone noticing: issue 22 found a DESIGN.md that is not in
the repository, a test path that had moved and a layer diagram without a room. Each check below
reads the Markdown as a reader does: a relative link must lead to a file (and its #anchor to a
heading there), a path in backticks must be a file or folder of the repository, `python -m X` must
name a module, and every `openautoglm ...` command line shown must parse with the real CLI.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from openautoglm import cli

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])

#: The repository's own top-level entries: a backticked path starting with one of them is a claim
#: about this repository.
TOP_LEVEL = frozenset(p.name for p in REPO.iterdir() if not p.name.startswith(".")) | {".ci"}
#: File names a page shows as examples of the reader's own files, not ours.
READERS_FILES = frozenset({"tuningjob.yaml", "job.yaml", "experiment.yaml", "katib-experiment.yaml"})
#: Where a page's short path may start (`engine/driver.py`, `openautoglm_trial/contract.py`, `builtin/eager.py`).
ROOTS = (
    REPO,
    REPO / "operator",
    REPO / "operator" / "openautoglm",
    REPO / "trial_image",
    REPO / "trial_image" / "openautoglm_trial",
    REPO / "tests" / "k8s" / "harness",
)
PATH = re.compile(r"^[\w.-]+(?:/[\w.-]+)*/?$")
FILE_SUFFIXES = (".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".json", ".lua")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")


def _prose(text: str) -> str:
    """A page without its fenced code blocks."""
    return FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@functools.cache
def _anchors(page: Path) -> frozenset[str]:
    headings = re.findall(r"^#+\s+(.*)$", _prose(page.read_text()), re.MULTILINE)
    return frozenset(_slug(h) for h in headings)


@functools.cache
def _files() -> tuple[str, ...]:
    """Every file and folder of the working tree (relative, POSIX), for short-path lookups."""
    skip = {".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}
    found = []
    for path in REPO.rglob("*"):
        if not skip.intersection(path.relative_to(REPO).parts):
            found.append(path.relative_to(REPO).as_posix())
    return tuple(found)


def _exists(claim: str) -> bool:
    claim = claim.rstrip("/")
    if any((root / claim).exists() for root in ROOTS):
        return True
    # a short path (`supervisor/run.py`, `tasks/`): the tail of some path of the repository
    return any(f == claim or f.endswith("/" + claim) for f in _files())


def path_claims(text: str) -> list[str]:
    """The code spans of the prose that name a path of this repository."""
    claims = []
    for span in CODE_SPAN.findall(_prose(text)):
        span = span.strip()
        if not PATH.match(span) or span in READERS_FILES:
            continue
        first = span.split("/", 1)[0]
        if first in TOP_LEVEL or (span.rstrip("/").endswith(FILE_SUFFIXES) and not span.startswith(".")):
            claims.append(span)
    return claims


def console_paths(text: str) -> list[str]:
    """The words of the code blocks' command lines that name a path of this repository."""
    paths = []
    for block in FENCE.findall(text):
        for line in block.splitlines():
            if line.lstrip().startswith("$ "):
                words = shlex.split(re.sub(r"\s+#.*$", "", line), posix=True)
                paths += [
                    w
                    for w in words
                    if PATH.match(w)
                    and w.split("/", 1)[0] in TOP_LEVEL
                    and "/" in w
                    # not what a run writes (examples/.openautoglm/<job>/study.journal)
                    and not any(part.startswith(".") for part in w.split("/"))
                ]
    return paths


def command_lines(text: str) -> list[str]:
    """The `openautoglm ...` commands of the console blocks (prompt and trailing comment dropped)."""
    commands = []
    for block in FENCE.findall(text):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("$ openautoglm "):
                commands.append(re.sub(r"\s+#.*$", "", line[2:]))
    return commands


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_leads_somewhere(page: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading with that anchor in {resolved.name}")
    assert not broken, f"{page.name}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_backticked_path_exists(page: Path) -> None:
    missing = sorted({claim for claim in path_claims(page.read_text()) if not _exists(claim)})
    assert not missing, f"{page.name} names paths that are not in the repository: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_path_in_a_command_line_exists(page: Path) -> None:
    missing = sorted({path for path in console_paths(page.read_text()) if not (REPO / path).exists()})
    assert not missing, f"{page.name}: command lines name paths that are not in the repository: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_python_dash_m_names_a_module(page: Path) -> None:
    modules = set(re.findall(r"python3? -m ([\w.]+)", page.read_text())) - {"pytest", "pip", "venv"}
    missing = sorted(m for m in modules if importlib.util.find_spec(m) is None)
    assert not missing, f"{page.name}: `python -m` of modules that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_openautoglm_command_shown_parses(page: Path) -> None:
    refused = []
    for line in command_lines(page.read_text()):
        try:
            cli.build_parser().parse_args(shlex.split(line)[1:])
        except SystemExit:
            refused.append(line)
    assert not refused, f"{page.name}: command lines the CLI refuses: {refused}"


def test_the_checks_see_what_they_check() -> None:
    """A check that finds nothing to check passes vacuously: each finds its kind on these pages."""
    text = "\n".join(p.read_text() for p in PAGES)
    assert len(LINK.findall(_prose(text))) >= 10
    assert {"tests/unit/test_layers.py", "engine/driver.py", "deploy/default"} <= set(path_claims(text))
    assert any(line.startswith("openautoglm tune ") for line in command_lines(text))
    assert {"deploy/default", "scripts/build-images.sh", "examples/digits.yaml"} <= set(console_paths(text))
    assert "DESIGN.md" not in text, "the design document is not in the repository"


@pytest.mark.parametrize(
    ("stale", "kind"),
    [
        ("`openautoglm_trial/supervisor.py`", "moved into supervisor/"),
        ("`tests/k8s/test_dashboard_browser.py`", "a test in another tier"),
        ("`DESIGN.md`", "not in the repository"),
    ],
)
def test_a_stale_path_is_caught(stale: str, kind: str) -> None:
    """The path check fails on the kinds of staleness issue 22 found."""
    claims = path_claims(f"see {stale} here")
    assert claims and not all(_exists(c) for c in claims), kind


def test_anchors_are_github_s() -> None:
    assert _slug("Lost workers and `trial.retries`") == "lost-workers-and-trialretries"
    assert _slug("Editing a live job (kubectl apply, Argo CD, Flux)") == "editing-a-live-job-kubectl-apply-argo-cd-flux"
