"""issue 25: the trial image's CUDA build, chosen by build arguments alone (not built here: no CUDA,
no registry). What can be checked without building: the CPU build is the one it always was by
default, the CUDA one takes CUDA torch and builds Horovod with NCCL, and its pins match the CPU's.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "trial_image" / "Dockerfile"


def _pins(name: str) -> dict[str, Version]:
    lines = (REPO / name).read_text().splitlines()
    reqs = [Requirement(line) for line in (raw.split("#")[0].strip() for raw in lines) if line]
    return {r.name: Version(next(iter(r.specifier)).version) for r in reqs}


def _stages() -> dict[str, str]:
    """Stage name (or its index) -> its instructions, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    parts = re.split(r"^FROM ", text, flags=re.M)[1:]
    out = {}
    for i, part in enumerate(parts):
        first, _, body = part.partition("\n")
        named = re.search(r" AS (\S+)", first)
        out[named.group(1) if named else str(i)] = first + "\n" + body
    return out


def _default(arg: str) -> str:
    [value] = re.findall(rf"^ARG {arg}=(\S+)$", DOCKERFILE.read_text(), flags=re.M)
    return value


def test_the_cuda_pins_are_the_cpu_pins_with_cuda_torch() -> None:
    cpu, cuda = _pins("constraints/cpu.txt"), _pins("constraints/cuda.txt")
    assert set(cuda) == set(cpu)
    assert {k: v for k, v in cuda.items() if k != "torch"} == {k: v for k, v in cpu.items() if k != "torch"}
    assert cuda["torch"].public == cpu["torch"].public
    assert cuda["torch"].local is not None and cuda["torch"].local.startswith("cu")


def test_by_default_the_builder_starts_from_the_python_base_as_it_is() -> None:
    """The CPU build: the builder FROM PYTHON_IMAGE itself, so its steps are those it always had (the
    CUDA stages are not used, and neither BuildKit nor buildah pulls or builds an unused stage)."""
    stages = _stages()
    assert _default("BUILDER_IMAGE") == "${PYTHON_IMAGE}"
    assert stages["builder"].startswith("${BUILDER_IMAGE} AS builder\n")
    # the runtime stage takes nothing of CUDA's toolchain
    runtime = list(stages.values())[-1]
    assert runtime.startswith("${PYTHON_IMAGE}\n") and "toolchain" not in runtime and "cuda" not in runtime.lower()


def test_the_cuda_builder_builds_horovod_with_nccl_from_the_cuda_image() -> None:
    cuda = _stages()["toolchain-cuda"]
    assert _stages()["cuda"].startswith("${CUDA_IMAGE} AS cuda")
    assert re.search(r"\bHOROVOD_GPU_OPERATIONS=NCCL\b", cuda)
    assert re.search(r"\bHOROVOD_GPU=CUDA\b", cuda)
    assert re.search(r"\bHOROVOD_BUILD_CUDA_CC_LIST=\$\{CUDA_CC_LIST\}", cuda)
    assert "COPY --from=cuda /usr/local/cuda-${CUDA_VERSION} /usr/local/cuda" in cuda
    # the documented command names the CUDA pins and a CUDA index whose label is theirs
    header = DOCKERFILE.read_text()
    label = _pins("constraints/cuda.txt")["torch"].local
    assert "--build-arg BUILDER_IMAGE=toolchain-cuda --build-arg CONSTRAINTS=constraints/cuda.txt" in header
    assert f"https://download.pytorch.org/whl/{label}" in header
