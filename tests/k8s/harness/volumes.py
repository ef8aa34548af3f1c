"""Pod volumes for the kubelet simulator: a host directory per volume, seen at each mountPath.

Every volume of a pod gets a directory on this machine: ``emptyDir``, ``ephemeral`` and ``csi``
one per pod (under the pod's directory); ``persistentVolumeClaim`` one per claim name and namespace
(``<workdir>/pvcs/<namespace>/<claim>``), shared by every pod that mounts it, so a test can put data
there first (``Cluster.pvc_path``); ``configMap``, ``secret``, ``downwardAPI`` and ``projected``
(configMap, secret, downwardAPI and serviceAccountToken sources) are written as files from the
emulator's objects when the container starts; ``hostPath`` is the host path itself.

The container sees its volumeMounts at their mountPaths: it starts through :data:`LAUNCHER`, a
few lines of Python that enter a private mount namespace (``unshare(CLONE_NEWNS)``, ``/`` made
recursively private, so nothing leaks to this machine), bind-mount each volume (``subPath``,
``subPathExpr``, ``readOnly`` honoured), keep the pod's own directory and the code the image would
carry visible (its termination-log file lives there, and an emptyDir at /tmp would hide a checkout
under /tmp), change to ``workingDir`` and exec the
command. This needs root (CAP_SYS_ADMIN), as the rest of the harness does (/etc/hosts). Mount points
missing on this machine are created first and removed, if still empty, when the last pod using
them ends (:class:`MountPoints`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Final

#: Runs as ``python -I -c LAUNCHER PLAN ARGV...`` with the container's environment and cwd = the pod dir.
LAUNCHER: Final = r"""
import ctypes, json, os, sys
plan, argv = json.loads(sys.argv[1]), sys.argv[2:]
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE, CLONE_NEWNS = 1, 32, 4096, 16384, 262144, 0x20000
def check(rc, what):
    if rc != 0:
        sys.stderr.write(f"kubelet: {what}: {os.strerror(ctypes.get_errno())}\n")
        sys.exit(128)
def bind(source, target, read_only):
    check(libc.mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None), f"mount {target}")
    if read_only:
        check(libc.mount(None, target.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY, None), f"remount {target} ro")
check(libc.unshare(CLONE_NEWNS), "unshare the mount namespace")
check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
# Sources by descriptor: a mount at /tmp may hide a source (or the pod's directory) under /tmp.
keep = [(path, os.open(path, os.O_PATH)) for path in [plan["pod_dir"], *plan["keep"]]]
sources = [os.open(m["source"], os.O_PATH) for m in plan["mounts"]]
for m, fd in zip(plan["mounts"], sources):
    if not os.path.lexists(m["target"]):
        os.makedirs(m["target"] if not m["file"] else os.path.dirname(m["target"]), exist_ok=True)
        if m["file"]:
            open(m["target"], "a").close()
    bind(f"/proc/self/fd/{fd}", m["target"], m["readOnly"])
    os.close(fd)
for path, fd in keep:
    try:
        visible = os.path.samestat(os.stat(path), os.fstat(fd))
    except OSError:
        visible = False
    if not visible:  # under a mountPath: bring it back at its path
        os.makedirs(path, exist_ok=True)
        bind(f"/proc/self/fd/{fd}", path, False)
    os.close(fd)
os.makedirs(plan["cwd"], exist_ok=True)
os.chdir(plan["cwd"])
os.execvpe(argv[0], argv, os.environ)
"""


class VolumeError(Exception):
    """A volume cannot be set up yet (missing ConfigMap/Secret): the kubelet retries."""


@dataclasses.dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool
    file: bool

    def plan(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "readOnly": self.read_only, "file": self.file}


#: (plural, namespace, name) -> the object's data as text, or None when it does not exist.
ReadData = Callable[[str, str, str], "dict[str, str] | None"]
#: (pod, fieldPath) -> the value (the downward API).
FieldRef = Callable[[Mapping[str, Any], str], str]


def pvc_dir(root: Path, namespace: str, claim: str) -> Path:
    return root / "pvcs" / namespace / claim


def prepare(
    pod: Mapping[str, Any], pod_dir: Path, root: Path, read_data: ReadData, field_ref: FieldRef
) -> dict[str, tuple[Path, bool]]:
    """name -> (host path, read-only) for every volume of the pod, created and filled now."""
    namespace = pod["metadata"].get("namespace", "default")
    out: dict[str, tuple[Path, bool]] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = volume["name"]
        path = pod_dir / "volumes" / name
        read_only = False
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]
            path, read_only = pvc_dir(root, namespace, claim["claimName"]), bool(claim.get("readOnly"))
        elif "hostPath" in volume:
            path = Path(volume["hostPath"]["path"])
        path.mkdir(parents=True, exist_ok=True)
        files: dict[str, bytes] = {}
        for kind in ("configMap", "secret"):
            if kind in volume:
                files.update(_object_files(kind, volume[kind], namespace, read_data))
                read_only = True
        if "downwardAPI" in volume:
            files.update(_downward_files(volume["downwardAPI"].get("items") or [], pod, field_ref))
            read_only = True
        for source in (volume.get("projected") or {}).get("sources") or []:
            read_only = True
            for kind in ("configMap", "secret"):
                if kind in source:
                    files.update(_object_files(kind, source[kind], namespace, read_data))
            if "downwardAPI" in source:
                files.update(_downward_files(source["downwardAPI"].get("items") or [], pod, field_ref))
            if "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                files[token["path"]] = f"kmock-token audience={token.get('audience', '')}".encode()
        for rel, data in files.items():
            target = path / _relative(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        out[name] = (path, read_only)
    return out


def _relative(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts:
        raise VolumeError(f"{path!r} must be a relative path without '..'")
    return rel


def _object_files(kind: str, source: Mapping[str, Any], namespace: str, read_data: ReadData) -> dict[str, bytes]:
    name = source.get("name") if kind == "configMap" else source.get("secretName", source.get("name"))
    data = read_data("configmaps" if kind == "configMap" else "secrets", namespace, name or "")
    if data is None:
        if source.get("optional"):
            return {}
        raise VolumeError(f"{kind} {namespace}/{name} not found")
    items = source.get("items")
    if items is None:
        return {k: v.encode() for k, v in data.items()}
    out = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise VolumeError(f"key {item['key']!r} not in {kind} {namespace}/{name}")
        out[item["path"]] = data[item["key"]].encode()
    return out


def _downward_files(items: list[Mapping[str, Any]], pod: Mapping[str, Any], field_ref: FieldRef) -> dict[str, bytes]:
    return {
        item["path"]: field_ref(pod, item["fieldRef"]["fieldPath"]).encode() for item in items if "fieldRef" in item
    }


def mounts(
    container: Mapping[str, Any], volumes: Mapping[str, tuple[Path, bool]], expand: Callable[[str], str]
) -> list[Mount]:
    """The container's volumeMounts, parents before children."""
    out = []
    for m in container.get("volumeMounts") or []:
        if m["name"] not in volumes:
            raise VolumeError(f"volumeMount {m['name']!r} names no volume of the pod")
        source, read_only = volumes[m["name"]]
        sub = m.get("subPath") or (expand(m["subPathExpr"]) if m.get("subPathExpr") else "")
        if sub:
            source = source / _relative(sub)
            if not source.exists():
                source.mkdir(parents=True)  # as the kubelet does for a missing subPath
        out.append(
            Mount(str(source), os.path.normpath(m["mountPath"]), read_only or bool(m.get("readOnly")), source.is_file())
        )
    return sorted(out, key=lambda m: len(PurePosixPath(m.target).parts))


def host_level(mount_list: list[Mount]) -> list[Mount]:
    """Mounts whose target lies on this machine's file system (not inside another mount of the list)."""
    targets = [PurePosixPath(m.target) for m in mount_list]
    return [
        m
        for m in mount_list
        if not any(t != PurePosixPath(m.target) and t in PurePosixPath(m.target).parents for t in targets)
    ]


def launcher_argv(
    python: str, pod_dir: Path, cwd: str, mount_list: list[Mount], argv: list[str], keep: list[str] | None = None
) -> list[str]:
    """``keep``: directories of this machine the container must still see where a volume is
    mounted over them, e.g. the checkout the trial image's code is installed from, when it lies
    under /tmp and the pod mounts an emptyDir at /tmp (the image would carry that code)."""
    plan = {"pod_dir": str(pod_dir), "cwd": cwd, "mounts": [m.plan() for m in mount_list], "keep": keep or []}
    return [python, "-I", "-c", LAUNCHER, json.dumps(plan), *argv]


class MountPoints:
    """Mount points created on this machine, removed (if empty) when no pod uses them any more."""

    def __init__(self) -> None:
        self._users: dict[Path, int] = {}
        self._lock = threading.Lock()

    def acquire(self, targets: list[tuple[str, bool]]) -> list[Path]:
        """Create what is missing of each (path, is a file); returns every path this pod holds."""
        held: list[Path] = []
        with self._lock:
            for target, is_file in targets:
                path = Path(target)
                missing = [p for p in [path, *path.parents] if not os.path.lexists(p)]
                for p in reversed(missing):  # parents first
                    if p == path and is_file:
                        p.touch()
                    else:
                        p.mkdir()
                    self._users[p] = 0
                for p in [path, *path.parents]:
                    if p in self._users:
                        self._users[p] += 1
                        held.append(p)
        return held

    def release(self, held: list[Path]) -> None:
        with self._lock:
            for p in sorted(held, key=lambda q: len(q.parts), reverse=True):  # children first
                self._users[p] -= 1
                if self._users[p] == 0:
                    del self._users[p]
                    try:
                        p.rmdir() if p.is_dir() and not p.is_symlink() else (
                            p.unlink() if p.stat().st_size == 0 else None
                        )
                    except OSError:
                        pass  # not empty (the pod wrote there): leave it
