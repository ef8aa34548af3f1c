"""Run a process in a built image's root file system, as a container runtime would, without one.

No Docker daemon here, but root and a Linux kernel: the image's root file system (a directory on
disk: `buildah mount` of a working container, or an exported image) becomes the lower layer of an
overlayfs whose upper layer is the container's own (a tmpfs, gone with the container), so the
image's storage is never written and a pod's mount points are created in its own layer.
:data:`LAUNCHER` -- a few lines of this machine's Python, run as root -- then, in a private mount
and UTS namespace (the network and PID namespaces stay this machine's: pods share the host
network, each binding its own loopback address):

* sets the host name (the pod's `hostname`: Gloo resolves it through /etc/hosts);
* mounts the overlay, then /proc, a /dev of its own (tmpfs with null, zero, full, random, urandom
  and tty bound from this machine, /dev/shm, the /proc/self/fd links), /sys read-only;
* bind-mounts each of :attr:`Container.mounts` (the pod's volumes, its /etc/hosts, /etc/hostname,
  /etc/resolv.conf and termination-log file), parents first, read-only where asked; a missing
  mount point or working directory is created in the container's layer first;
* remounts the root read-only (``readOnlyRootFilesystem``), chroots into it, sets no_new_privs
  (``allowPrivilegeEscalation: false``), drops to the container's uid, gid and groups (a non-root
  uid loses every capability), changes to the working directory as that user and execs the
  command with exactly the container's environment (nothing of this machine's).

Paths inside the image are resolved without leaving it (a symlink in the image is followed
relative to the image's root). Errors end the launcher with exit code 128 and a ``rootfs:`` line
on stderr (127 when the command is not found), as a runtime's StartError would.

:func:`pod_container` turns a pod's container (securityContext, terminationMessagePath, hostname)
into a :class:`Container`; :func:`sample` reads, from outside, what root and uid a running
process really has.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Final

from volumes import Mount

#: What containerd and Docker set when an image's config has no PATH.
DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TERMINATION_PATH: Final = "/dev/termination-log"

#: Runs as ``python -I -c LAUNCHER PLAN.json``, as root, cwd anywhere; replaces itself by the command.
LAUNCHER: Final = r"""
import ctypes, json, os, sys
with open(sys.argv[1]) as f:
    plan = json.load(f)
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 262144
CLONE_NEWNS, CLONE_NEWUTS, PR_SET_NO_NEW_PRIVS = 0x20000, 0x4000000, 38
def fail(what, code=128):
    sys.stderr.write(f"rootfs: {what}\n")
    sys.stderr.flush()
    os._exit(code)
def check(rc, what):
    if rc != 0:
        fail(f"{what}: {os.strerror(ctypes.get_errno())}")
def mount(source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()
    check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")
def bind(source, target, read_only):
    mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
root = os.path.join(plan["layer"], "merged")
def inside(path):
    # `path` in the image, symlinks followed relative to its root: never outside it.
    parts, done, hops = [p for p in path.split("/") if p], "", 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            done = os.path.dirname(done)
            continue
        candidate = f"{done}/{part}"
        host = root + candidate
        if os.path.islink(host):
            hops += 1
            if hops > 40:
                fail(f"too many symlinks in {path}")
            link = os.readlink(host)
            parts = [p for p in link.split("/") if p] + parts
            done = "" if link.startswith("/") else done
            continue
        done = candidate
    return root + (done or "/")
def make_point(target, is_file):
    path = inside(target)
    if not os.path.lexists(path):
        os.makedirs(path if not is_file else os.path.dirname(path), exist_ok=True)
        if is_file:
            open(path, "a").close()
    return path
check(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare the mount and UTS namespaces")
mount("none", "/", None, MS_REC | MS_PRIVATE)
name = plan["hostname"].encode()
check(libc.sethostname(name, len(name)), "sethostname")
# The container's own layer lives on a tmpfs of this namespace (an upper layer cannot be on an
# overlay, as this machine's root may be) and goes with the container, as a runtime discards it.
layer = os.path.join(plan["layer"], "layer")
os.makedirs(layer, exist_ok=True)
os.makedirs(root, exist_ok=True)
mount("tmpfs", layer, "tmpfs", 0, "mode=700,size=1g")
os.mkdir(f"{layer}/upper")
os.mkdir(f"{layer}/work")
mount("overlay", root, "overlay", 0, f"lowerdir={plan['rootfs']},upperdir={layer}/upper,workdir={layer}/work")
mount("proc", make_point("/proc", False), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
dev = make_point("/dev", False)
mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=65536k")
for node in ("null", "zero", "full", "random", "urandom", "tty"):
    open(f"{dev}/{node}", "a").close()
    bind(f"/dev/{node}", f"{dev}/{node}", False)
os.mkdir(f"{dev}/shm")
mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
for link, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                 ("stderr", "/proc/self/fd/2")):
    os.symlink(to, f"{dev}/{link}")
bind("/sys", make_point("/sys", False), True)
for m in sorted(plan["mounts"], key=lambda m: len([p for p in m["target"].split("/") if p])):
    bind(m["source"], make_point(m["target"], m["file"]), m["readOnly"])
make_point(plan["cwd"], False)
if plan["readOnly"]:
    mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
os.chroot(root)
os.chdir("/")
if plan["noNewPrivileges"]:
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
os.setgroups(plan["groups"])
os.setgid(plan["gid"])
os.setuid(plan["uid"])
try:
    os.chdir(plan["cwd"])
except OSError as err:
    fail(f"chdir to cwd ({plan['cwd']!r}) set in config.json failed: {err.strerror}")
try:
    os.execvpe(plan["argv"][0], plan["argv"], plan["env"])
except OSError as err:
    fail(f"exec: {plan['argv'][0]!r}: {err.strerror}", 127 if isinstance(err, FileNotFoundError) else 128)
"""


class ConfigError(Exception):
    """The container cannot be configured (a non-root pod whose image runs as root, an unknown user)."""


@dataclasses.dataclass
class Image:
    """A built image on disk: its root file system and what its config gives a container."""

    name: str
    rootfs: Path
    entrypoint: list[str] = dataclasses.field(default_factory=list)
    cmd: list[str] = dataclasses.field(default_factory=list)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    #: USER: ``uid[:gid]`` or a name in the image's /etc/passwd ("" = root)
    user: str = ""
    working_dir: str = ""

    @classmethod
    def from_config(cls, name: str, rootfs: Path, config: Mapping[str, Any]) -> Image:
        """From an OCI image config (``buildah inspect``'s ``OCIv1.config``, docker's ``Config``)."""
        env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
        return cls(
            name=name,
            rootfs=Path(rootfs),
            entrypoint=list(config.get("Entrypoint") or []),
            cmd=list(config.get("Cmd") or []),
            env=env,
            user=config.get("User") or "",
            working_dir=config.get("WorkingDir") or "",
        )

    def argv(self, command: Sequence[str] | None, args: Sequence[str] | None) -> list[str]:
        """Kubernetes' rule: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD."""
        if command:
            return [*command, *(args or [])]
        return [*self.entrypoint, *(args if args is not None else self.cmd)]

    def environment(self) -> dict[str, str]:
        """The image's Env, with the runtime's default PATH when it sets none."""
        return {"PATH": DEFAULT_PATH, **self.env}


@dataclasses.dataclass
class Container:
    """One process to run in an image: see the module docstring for what the launcher does."""

    rootfs: Path
    #: the container's directory here: merged/ is its root (layer/, a tmpfs, holds the upper layer)
    layer: Path
    argv: list[str]
    env: dict[str, str]
    cwd: str
    uid: int
    gid: int
    groups: list[int]
    hostname: str
    mounts: list[Mount] = dataclasses.field(default_factory=list)
    read_only_root: bool = True
    no_new_privileges: bool = True

    def plan(self) -> dict[str, Any]:
        return {
            "rootfs": str(self.rootfs),
            "layer": str(self.layer),
            "argv": self.argv,
            "env": self.env,
            "cwd": self.cwd,
            "uid": self.uid,
            "gid": self.gid,
            "groups": self.groups,
            "hostname": self.hostname,
            "mounts": [m.plan() for m in self.mounts],
            "readOnly": self.read_only_root,
            "noNewPrivileges": self.no_new_privileges,
        }

    def launcher_argv(self, python: str = sys.executable) -> list[str]:
        """The command line that runs it (as root); the plan is written next to the layer."""
        self.layer.mkdir(parents=True, exist_ok=True)
        plan = self.layer.parent / f"{self.layer.name}.plan.json"
        plan.write_text(json.dumps(self.plan()))
        return [python, "-I", "-c", LAUNCHER, str(plan)]

    def run(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run it to the end; its output is returned (stdout and stderr apart)."""
        return subprocess.run(
            self.launcher_argv(), env={}, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )


def _table(rootfs: Path, name: str) -> list[list[str]]:
    try:
        text = (rootfs / "etc" / name).read_text()
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(image: Image, run_as_user: int | None = None, run_as_group: int | None = None) -> tuple[int, int]:
    """(uid, gid) as a runtime decides: the pod's runAsUser/runAsGroup, else the image's USER
    (a name or a number, looked up in the image's /etc/passwd), the gid from USER's group part,
    else the user's primary group in the image, else 0."""
    user, _, group = image.user.partition(":")
    passwd = _table(image.rootfs, "passwd")
    uid: int | None = run_as_user
    primary: int | None = None
    if uid is None:
        if not user or user.isdigit():
            uid = int(user or 0)
        else:
            entry = next((e for e in passwd if e[0] == user and len(e) > 3), None)
            if entry is None:
                raise ConfigError(f"unable to find user {user}: no matching entries in passwd file")
            uid = int(entry[2])
            primary = int(entry[3])
    if primary is None:
        primary = next((int(e[3]) for e in passwd if len(e) > 3 and e[2] == str(uid)), None)
    if run_as_group is not None:
        return uid, run_as_group
    if group:
        if group.isdigit():
            return uid, int(group)
        entry = next((e for e in _table(image.rootfs, "group") if e[0] == group and len(e) > 2), None)
        if entry is None:
            raise ConfigError(f"unable to find group {group}: no matching entries in group file")
        return uid, int(entry[2])
    return uid, primary if primary is not None else 0


def home_of(image: Image, uid: int) -> str:
    return next((e[5] for e in _table(image.rootfs, "passwd") if len(e) > 5 and e[2] == str(uid)), "/")


def hosts_text(ip: str, names: Sequence[str], records: Iterable[tuple[str, Sequence[str]]] = ()) -> str:
    """A pod's /etc/hosts as the kubelet writes it (its own names on its IP), plus `records`: the
    harness's cluster DNS, which a real pod would ask CoreDNS for."""
    lines = [
        "# Kubernetes-managed hosts file (the harness's kubelet).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{ip}\t{' '.join(names)}",
    ]
    lines += [f"{rip}\t{' '.join(rnames)}" for rip, rnames in records if rnames]
    return "\n".join(lines) + "\n"


def resolv_conf_text(namespace: str) -> str:
    """A pod's resolv.conf: the cluster's search path, this machine's name servers."""
    try:
        host = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        host = []
    servers = [line for line in host if line.split()[:1] == ["nameserver"]] or ["nameserver 127.0.0.1"]
    search = f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local"
    return "\n".join([search, *servers, "options ndots:5"]) + "\n"


def write_in_place(path: Path, text: str) -> None:
    """Rewrite a file that may be bind-mounted into a running container (a rename would not show)."""
    with open(path, "a+") as f:
        f.seek(0)
        if f.read() == text:
            return
        f.seek(0)
        f.truncate()
        f.write(text)


def apply_fs_group(path: Path, gid: int) -> None:
    """What the kubelet does to a volume for `fsGroup`: group-owned by it, group-writable, set-gid
    directories (so new files keep the group)."""
    for item in [path, *path.rglob("*")]:
        if item.is_symlink():
            continue
        os.chown(item, -1, gid)
        mode = item.stat().st_mode
        item.chmod(mode | 0o060 | (0o2010 if item.is_dir() else 0))


def pod_container(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    image: Image,
    *,
    pod_dir: Path,
    ip: str,
    argv: list[str],
    env: Mapping[str, str],
    mounts: Sequence[Mount],
    termination_log: Path,
) -> Container:
    """The Container a kubelet would run for `container` of `pod`: user and groups from the
    securityContexts (container over pod) or the image, readOnlyRootFilesystem,
    allowPrivilegeEscalation, the working directory (workingDir, else the image's), HOME from the
    image's passwd when the environment has none, and the files a kubelet mounts: /etc/hosts
    (``pod_dir/etc/hosts``: rewrite it with :func:`write_in_place` as DNS changes),
    /etc/hostname, /etc/resolv.conf and the termination-log file at terminationMessagePath."""
    spec = pod.get("spec") or {}
    meta = pod["metadata"]
    pod_sc, sc = spec.get("securityContext") or {}, container.get("securityContext") or {}

    def setting(key: str) -> Any:
        return sc[key] if sc.get(key) is not None else pod_sc.get(key)

    uid, gid = resolve_user(image, setting("runAsUser"), setting("runAsGroup"))
    if setting("runAsNonRoot") and uid == 0:
        raise ConfigError("container has runAsNonRoot and image will run as root")
    groups = list(dict.fromkeys([gid, *([pod_sc["fsGroup"]] if "fsGroup" in pod_sc else [])]))
    groups += [g for g in pod_sc.get("supplementalGroups") or [] if g not in groups]
    hostname = spec.get("hostname") or meta["name"]
    etc = pod_dir / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    if not (etc / "hosts").exists():
        write_in_place(etc / "hosts", hosts_text(ip, own_names(pod)))
    (etc / "hostname").write_text(hostname + "\n")
    (etc / "resolv.conf").write_text(resolv_conf_text(meta.get("namespace", "default")))
    termination_log.touch()
    termination_log.chmod(0o666)  # as the kubelet: whatever user the container runs as writes it
    runtime_files = [
        Mount(str(etc / "hosts"), "/etc/hosts", False, True),
        Mount(str(etc / "hostname"), "/etc/hostname", False, True),
        Mount(str(etc / "resolv.conf"), "/etc/resolv.conf", False, True),
        Mount(str(termination_log), container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH, False, True),
    ]
    environment = dict(env)
    environment.setdefault("HOME", home_of(image, uid))
    return Container(
        rootfs=image.rootfs,
        layer=pod_dir / "rootfs",
        argv=argv,
        env=environment,
        cwd=container.get("workingDir") or image.working_dir or "/",
        uid=uid,
        gid=gid,
        groups=groups,
        hostname=hostname,
        mounts=[*mounts, *runtime_files],
        read_only_root=bool(sc.get("readOnlyRootFilesystem")),
        no_new_privileges=sc.get("allowPrivilegeEscalation") is False,
    )


def image_container(
    image: Image,
    layer: Path,
    *,
    command: Sequence[str] | None = None,
    args: Sequence[str] | None = None,
    mounts: Sequence[Mount] = (),
    env: Mapping[str, str] | None = None,
    hostname: str = "container",
    read_only_root: bool = True,
) -> Container:
    """A container of `image` as `docker run --read-only [--entrypoint COMMAND] IMAGE [ARGS...]`
    makes it: the image's user, Env (plus `env`), working directory, and command (Kubernetes'
    rule, :meth:`Image.argv`); mount a writable directory at /tmp yourself if the program needs one."""
    uid, gid = resolve_user(image)
    environment = {**image.environment(), **(env or {})}
    environment.setdefault("HOME", home_of(image, uid))
    return Container(
        rootfs=image.rootfs,
        layer=layer,
        argv=image.argv(command, args),
        env=environment,
        cwd=image.working_dir or "/",
        uid=uid,
        gid=gid,
        groups=[gid],
        hostname=hostname,
        mounts=list(mounts),
        read_only_root=read_only_root,
    )


def own_names(pod: Mapping[str, Any]) -> list[str]:
    """The names a pod's /etc/hosts gives its own IP (the FQDN first when it has a subdomain)."""
    spec, meta = pod.get("spec") or {}, pod["metadata"]
    hostname = spec.get("hostname") or meta["name"]
    if spec.get("subdomain"):
        return [f"{hostname}.{spec['subdomain']}.{meta.get('namespace', 'default')}.svc.cluster.local", hostname]
    return [hostname]


def sample(pid: int) -> dict[str, Any] | None:
    """What root and user process `pid` really runs with, read from /proc: the lower directory of
    the overlay at its root (its image), whether that root is read-only, its real uid and its
    host name. None until the process is in its container (its root is an overlay)."""
    try:
        mountinfo = Path(f"/proc/{pid}/mountinfo").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 10 or fields[4] != "/":
            continue
        dash = fields.index("-")
        if fields[dash + 1] != "overlay":
            return None
        options = dict(o.split("=", 1) if "=" in o else (o, "") for o in fields[dash + 3].split(","))
        uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
        return {
            "root_lowerdir": options.get("lowerdir"),
            "root_read_only": "ro" in fields[5].split(","),
            "process_uid": uid,
        }
    return None


def in_image(path: PurePosixPath | str, image: Image) -> Path:
    """Where `path` of the image lies here (no symlink resolution: for reading plain files)."""
    return image.rootfs / PurePosixPath(path).relative_to("/")
