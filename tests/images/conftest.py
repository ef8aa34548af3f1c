"""The image tier: the three images built once per session (image_store.py), run from their own files.

`images` builds them with scripts/build-images.sh (engine caches make a second session quick)
and gives each as a rootfs.Image (tests/k8s/harness/rootfs.py); `image_cluster` is the emulated
cluster of tests/k8s whose kubelet runs the trial images' pods in their root file systems.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for path in (ROOT / "tests" / "k8s", ROOT / "tests" / "k8s" / "harness", HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import image_store  # noqa: E402
from cluster import Cluster  # noqa: E402
from rootfs import Image  # noqa: E402


def _unavailable(reason: str) -> None:
    # In CI (scripts/test.sh, OPENAUTOGLM_REQUIRE_IMAGES=1) the test command installs buildah:
    # a skip there would be a broken set-up passing silently, so it fails instead.
    if os.environ.get(image_store.REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({image_store.REQUIRE_ENV}=1, so the image tier must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[image_store.Store]:
    """The operator, trial and own-script images, built now (or found in the engine's cache)."""
    if os.geteuid() != 0:
        _unavailable("the image tier builds with buildah and runs images' file systems as root")
    tool = image_store.engine()
    if tool is None:
        _unavailable("neither buildah nor a docker daemon: `bash scripts/install-image-tools.sh` installs buildah")
    assert tool is not None
    workdir = tmp_path_factory.mktemp("images")
    if os.environ.get(image_store.BUILT_ENV) != "1":
        log = workdir / "build.log"
        code, seconds = image_store.build(tool, log)
        text = log.read_text(errors="replace")
        if code != 0:
            pytest.fail(
                f"scripts/build-images.sh failed ({code}) after {seconds:.0f} s:\n{text[-6000:]}", pytrace=False
            )
        print(f"\nimages built with {tool} in {seconds:.0f} s")
    store = image_store.Store(tool, workdir)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def image_cluster(tmp_path: Path, images: image_store.Store) -> Iterator[Cluster]:
    """tests/k8s's cluster, its kubelet running the jobs' trial images in the built images."""
    import admission  # tests/k8s/harness: the CRD's schema and CEL rules, as tests/k8s's cluster

    rootfs_images: dict[str, Image] = {name: images.open(role) for role, name in image_store.IN_JOBS.items()}
    crds = sorted((ROOT / "crds").glob("*.yaml"))
    with Cluster(
        crd_paths=crds,
        admission=admission.review,
        defaulter=admission.apply_defaults,
        workdir=tmp_path / "cluster",
        rootfs_images=rootfs_images,
    ) as c:
        yield c
