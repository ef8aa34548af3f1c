"""The operator image (Dockerfile), built, run from its own files as its own user.

Every command runs in the image's root file system (tests/k8s/harness/rootfs.py) as the image's
USER, read-only but for a /tmp, with the image's environment only: what `docker run --read-only`
would run.
"""

from __future__ import annotations

import json

import rootfs
from image_store import LIST_DISTRIBUTIONS, TIMEOUT, pinned, run

pytestmark = TIMEOUT

#: The operator image's size budget: 1.65 GB measured on 2026-12-07 (`buildah images`, built from
#: the debootstrapped bookworm base; torch 2.13.0+cpu, no CUDA; 6.54 GB measured the same way before
#: the pins, with CUDA torch 2.15) + ~20 % margin. CUDA wheels creeping back in cost gigabytes.
OPERATOR_IMAGE_BUDGET_BYTES = 2_000_000_000


def test_the_operator_cli_starts_as_uid_10001(images, tmp_path):
    image = images.open("operator")
    assert rootfs.resolve_user(image) == (10001, 10001)
    assert image.entrypoint == ["openautoglm"] and image.cmd == ["operator"]
    identity = run(images, "operator", tmp_path, command=["python", "-c", "import os; print(os.getuid(), os.getgid())"])
    assert identity.split() == ["10001", "10001"]
    assert "usage:" in run(images, "operator", tmp_path, "operator", "--help")
    assert "usage:" in run(images, "operator", tmp_path, "dashboard", "--help")


def test_the_operator_image_has_the_pinned_cpu_torch_and_no_cuda(images, tmp_path):
    dists = json.loads(run(images, "operator", tmp_path, command=["python", "-c", LIST_DISTRIBUTIONS]))
    assert dists["torch"] == pinned("torch") == "2.13.0+cpu"
    cuda = sorted(d for d in dists if d.startswith(("nvidia-", "triton", "cuda-")))
    assert not cuda, f"CUDA packages in the operator image: {cuda}"
    assert "horovod" not in dists  # the operator never trains
    assert {"openautoglm-tune", "kopf", "optuna", "optuna-dashboard", "psycopg2-binary"} <= set(dists)


def test_importing_the_operator_does_not_import_torch(images, tmp_path):
    code = (
        "import json, sys, openautoglm.cli, openautoglm.k8s.handlers; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))"
    )
    assert json.loads(run(images, "operator", tmp_path, command=["python", "-c", code])) == []


def test_the_operator_image_stays_within_its_size_budget(images):
    sizes = {role: images.size(role) for role in ("operator", "trial", "own-script")}
    print("\n" + "\n".join(f"{role} image: {size / 1e9:.2f} GB" for role, size in sizes.items()))
    assert sizes["operator"] < OPERATOR_IMAGE_BUDGET_BYTES, (
        f"the operator image is {sizes['operator'] / 1e9:.2f} GB, over its budget of "
        f"{OPERATOR_IMAGE_BUDGET_BYTES / 1e9:.2f} GB"
    )
