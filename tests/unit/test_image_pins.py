"""The images' pins (issue 23): every ``pip`` line of both Dockerfiles runs with the constraints
file, and the constraints name the versions the project installs and tests.

Before, the operator builder's ``pip wheel ".[operator,...]"`` resolved the open ``torch>=2.1``
against the index and pulled the newest torch with its CUDA wheels (a 6.54 GB image).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
BUILT = ["Dockerfile", "trial_image/Dockerfile"]
TARGET = "/etc/openautoglm/constraints.txt"


def _constraints(name: str = "constraints/cpu.txt") -> dict[str, Requirement]:
    lines = (REPO / name).read_text().splitlines()
    reqs = [Requirement(line) for line in (raw.split("#")[0].strip() for raw in lines) if line]
    return {r.name: r for r in reqs}


def _pinned(name: str) -> Version:
    [spec] = _constraints()[name].specifier
    assert spec.operator == "==", spec
    return Version(spec.version)


def _stages(text: str) -> list[str]:
    return re.split(r"^FROM ", text.replace("\\\n", " "), flags=re.M)


def _default(dockerfile: str, arg: str) -> str:
    [value] = re.findall(rf"^ARG {arg}=(\S+)$", (REPO / dockerfile).read_text(), flags=re.M)
    return value


def test_every_package_is_pinned_exactly_and_torch_to_its_cpu_build() -> None:
    pins = _constraints()
    assert {"torch", "horovod", "transformers", "tokenizers"} <= set(pins)
    for name in pins:
        _pinned(name)
    # The local label: PyPI's torch of the same version (the CUDA build) cannot satisfy it.
    assert _pinned("torch").local == "cpu"


def _unconstrained(text: str) -> list[int]:
    """Indices of the stages that run pip (or the Horovod build, which does) without the constraints."""
    bad = []
    for i, stage in enumerate(_stages(text)[1:], start=1):
        pip = [m.start() for m in re.finditer(r"\bpip (install|wheel|download)\b|build-horovod-wheel", stage)]
        if not pip:
            continue
        env = re.search(rf"^ENV .*\bPIP_CONSTRAINT={re.escape(TARGET)}\b", stage, flags=re.M)
        copy = re.search(rf"^COPY \$\{{CONSTRAINTS\}} {re.escape(TARGET)}$", stage, flags=re.M)
        if not (env and copy and env.start() < min(pip) and copy.start() < min(pip)):
            bad.append(i)
        elif not re.search(r"^ARG CONSTRAINTS$", stage, flags=re.M):
            bad.append(i)
        elif re.search(r"PIP_CONSTRAINT=(?!/etc/openautoglm)|--no-constraint|-c /dev/null", stage):
            bad.append(i)  # something switches them off
    return bad


@pytest.mark.parametrize("dockerfile", BUILT)
def test_every_pip_line_runs_with_the_constraints(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text()
    assert _default(dockerfile, "CONSTRAINTS") == "constraints/cpu.txt"
    assert (REPO / "constraints/cpu.txt").is_file()
    assert _unconstrained(text) == []
    # The check sees a stage without them (the runtime stage, or a pip line before the COPY).
    stages = _stages(text)
    builder = next(i for i, stage in enumerate(stages) if " AS builder\n" in stage.split("\n", 1)[0] + "\n")
    assert _unconstrained(text.replace(f"PIP_CONSTRAINT={TARGET}", "", 1)) == [builder]
    assert _unconstrained(text.replace("FROM ${PYTHON_IMAGE}\n", "FROM ${PYTHON_IMAGE}\nRUN pip install six\n")) == [
        len(stages) - 1
    ]


def test_the_own_script_image_inherits_the_pins() -> None:
    text = (REPO / "examples/own-script/Dockerfile").read_text()
    assert re.search(r"^FROM openautoglm/trial:", text, flags=re.M)
    assert not re.search(r"^(ENV|ARG) .*PIP_CONSTRAINT", text, flags=re.M)


def test_the_pins_are_the_versions_the_project_installs() -> None:
    torch, horovod = _pinned("torch"), _pinned("horovod")
    install = (REPO / "scripts/install.sh").read_text()
    assert re.findall(r"pip install -q torch==(\S+)", install) == [torch.public]
    horovod_script = (REPO / "scripts/build-horovod-wheel.sh").read_text()
    assert re.findall(r"HOROVOD_VERSION:-([\d.]+)", horovod_script) == [str(horovod)]
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"horovod=={horovod}"' in pyproject
    assert set(re.findall(r"torch==([\d.]+)", pyproject)) == {torch.public}
    for dockerfile in BUILT:
        assert _default(dockerfile, "TORCH_VERSION") == torch.public
    assert _default("trial_image/Dockerfile", "HOROVOD_VERSION") == str(horovod)
    assert re.search(rf"\bHorovod {re.escape(str(horovod))}\b", horovod_script)


def test_the_pins_satisfy_every_declared_range() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    declared += [Requirement(r) for r in project["dependencies"]]
    requirements = (REPO / "trial_image/requirements.txt").read_text().splitlines()
    declared += [Requirement(line) for line in requirements if line.strip() and not line.startswith("#")]
    pins = _constraints()
    checked = set()
    for req in declared:
        if req.name in pins:
            assert req.specifier.contains(_pinned(req.name), prereleases=True), (str(req), str(pins[req.name]))
            checked.add(req.name)
    assert checked == set(pins)
