"""The three images, built by scripts/build-images.sh and put on disk for tests/k8s/harness/rootfs.py.

docker when its daemon answers, else buildah (Debian's package, as root, no daemon), as the script
chooses. With buildah each image's root file system is a working container's mount (`buildah from`
+ `buildah mount`; removed again at the end of the session), its config `buildah inspect`'s; with
docker, `docker create` + `docker export` into a directory. The build itself is the script's: from
a debootstrapped bookworm standing in for python:3.11-slim-bookworm where that cannot be pulled
(`--base auto`), torch from the machine's local wheel directory (`--wheels auto`: pip's
find-links), every layer cached by the engine, so a second session rebuilds nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from typing import Final

import pytest
import rootfs
from rootfs import Image
from volumes import Mount

ROOT: Final = Path(__file__).resolve().parents[2]
#: role -> the image's name as docker names it (buildah stores it under localhost/).
NAMES: Final = {
    "operator": "openautoglm/operator:0.1",
    "trial": "openautoglm/trial:0.1",
    "own-script": "openautoglm/own-script:0.1",
}
#: Set to 1 (scripts/test.sh does) so that an image tier without buildah or docker fails
#: instead of skipping: the test command installs buildah, so a skip there is a broken set-up.
REQUIRE_ENV: Final = "OPENAUTOGLM_REQUIRE_IMAGES"
#: Set to 1 to use the images already in the engine's storage as they are (no build: while working
#: on the tests themselves).
BUILT_ENV: Final = "OPENAUTOGLM_IMAGES_BUILT"
#: A cold build (base, torch, the Horovod build, both images) takes minutes; a warm one seconds.
BUILD_TIMEOUT_S: Final = 2400
#: Every image test's pytest-timeout: the test itself only, not the session's build (its own limit).
TIMEOUT: Final = pytest.mark.timeout(600, func_only=True)
#: The build's base image (scripts/build-images.sh --base): `auto` (the upstream python image where
#: it can be pulled, else a debootstrapped bookworm) unless set.
BASE_ENV: Final = "OPENAUTOGLM_IMAGE_BASE"
#: The built images' names in the jobs the tests apply (examples/), for Cluster(rootfs_images=...).
IN_JOBS: Final = {"trial": "openautoglm/trial:0.1", "own-script": "registry.example.com/own-script:1"}


def engine() -> str | None:
    """docker if its daemon answers, else buildah if installed (scripts/build-images.sh's choice)."""
    if shutil.which("docker"):
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
        if info.returncode == 0:
            return "docker"
    return "buildah" if shutil.which("buildah") else None


def build(tool: str, log: Path) -> tuple[int, float]:
    """Run scripts/build-images.sh for all three images, as scripts/test.sh's set-up does (so its
    layers are cached); (exit status, seconds). The output goes to `log`."""
    argv = ["bash", str(ROOT / "scripts" / "build-images.sh"), "--engine", tool]
    argv += ["--base", os.environ.get(BASE_ENV, "auto"), "--wheels", "auto"]
    t0 = time.monotonic()
    with open(log, "wb") as out:
        done = subprocess.run(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
    return done.returncode, time.monotonic() - t0


def full_name(tool: str, role: str) -> str:
    return f"localhost/{NAMES[role]}" if tool == "buildah" else NAMES[role]


class Store:
    """The built images on disk for one session: `open(role)` -> rootfs.Image; `close()` cleans up."""

    def __init__(self, tool: str, workdir: Path):
        self.tool = tool
        self.workdir = workdir
        self.images: dict[str, Image] = {}
        self._containers: list[str] = []

    def open(self, role: str) -> Image:
        if role in self.images:
            return self.images[role]
        name = full_name(self.tool, role)
        if self.tool == "buildah":
            config = json.loads(_run("buildah", "inspect", "--type", "image", name))["OCIv1"]["config"]
            container = f"openautoglm-tier-{role}"
            subprocess.run(["buildah", "rm", container], capture_output=True)  # a crashed session's
            _run("buildah", "from", "--pull-never", "--name", container, name)
            self._containers.append(container)
            rootfs = Path(_run("buildah", "mount", container).strip())
        else:
            config = json.loads(_run("docker", "image", "inspect", name))[0]["Config"]
            container = _run("docker", "create", name).strip()
            rootfs = self.workdir / role
            rootfs.mkdir(parents=True)
            export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
            assert export.stdout is not None
            with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
                tar.extractall(rootfs, filter="fully_trusted")  # our own image: devices, owners kept
            export.wait()
            _run("docker", "rm", container)
        self.images[role] = Image.from_config(name, rootfs, config)
        return self.images[role]

    def layers(self, role: str) -> list[str]:
        """The image's layers (diff IDs), base first."""
        name = full_name(self.tool, role)
        if self.tool == "buildah":
            return list(json.loads(_run("buildah", "inspect", "--type", "image", name))["OCIv1"]["rootfs"]["diff_ids"])
        return list(json.loads(_run("docker", "image", "inspect", name))[0]["RootFS"]["Layers"])

    def size(self, role: str) -> int:
        """The image's size in bytes, as the engine reports it (`buildah images`, `docker images`)."""
        name = full_name(self.tool, role)
        if self.tool == "buildah":  # "1.18 GB": decimal units, 3 significant digits (docker's HumanSize)
            [entry] = json.loads(_run("buildah", "images", "--json", name))
            m = re.fullmatch(r"([\d.]+)\s*([kMGT]?)B", entry["size"].strip())
            assert m, f"buildah's size {entry['size']!r}"
            return round(float(m.group(1)) * 1000 ** " kMGT".index(m.group(2) or " "))
        return int(json.loads(_run("docker", "image", "inspect", name))[0]["Size"])

    def close(self) -> None:
        for container in self._containers:
            subprocess.run(["buildah", "umount", container], capture_output=True)
            subprocess.run(["buildah", "rm", container], capture_output=True)
        self._containers.clear()


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


#: Prints every installed distribution as {name: version} (names normalized as pip does).
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json, re; "
    "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version for d in m.distributions()}))"
)


def pinned(name: str) -> str:
    """The version constraints/cpu.txt pins `name` to (what every pip line of the images honours)."""
    text = (ROOT / "constraints" / "cpu.txt").read_text()
    m = re.search(rf"^{re.escape(name)}==(\S+)", text, re.M)
    assert m, f"{name} is not pinned in constraints/cpu.txt"
    return m.group(1)


def run(store: Store, role: str, tmp_path: Path, *args: str, command: list[str] | None = None) -> str:
    """Run in the image as its user (read-only root, /tmp writable); returns stdout, fails on exit != 0."""
    tmp = tmp_path / f"tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    tmp.chmod(0o777)
    container = rootfs.image_container(
        store.open(role),
        tmp_path / f"c-{tmp.name}",
        command=command,
        args=list(args),
        mounts=[Mount(str(tmp), "/tmp", False, False)],
    )
    done = container.run(timeout=120)
    assert done.returncode == 0, f"{container.argv} in {role}: exit {done.returncode}\n{done.stderr[-3000:]}"
    return done.stdout
