"""``spec.trial.podTemplate``: a PodTemplateSpec overlay under the fields the operator owns.

A user brings what a trial pod needs from the cluster (volumes and their mounts, env from Secrets,
node placement, a service account, sidecars); the operator keeps what makes it a trial worker (the
``worker`` container's image, command, ports, probes, resources and termination message, the pod's
restart policy, DNS identity and grace period, the owner labels) and the restricted Pod Security
Standard. Three pure functions:

* :func:`problems` -- every problem of a template with its path: the Kubernetes 1.33 schema
  (unknown fields, types; :mod:`openautoglm.podschema`), owned fields, restricted Pod Security;
* :func:`merge_into_pod` -- the operator's pod with the template merged under it;
* :func:`local_overlay` -- what a local process can honour (plain env values, the working
  directory) and which fields it ignores.

The CRD mirrors :func:`problems` with CEL rules built from the constants below (openautoglm.crd).

Decisions worth knowing:

* ``automountServiceAccountToken`` stays false unless the template sets it: a trial that reads the
  API (or a credential bound to its service account) says so explicitly, next to
  ``serviceAccountName``; every other pod gets no token. A projected ``serviceAccountToken`` volume
  (an audience, a short expiry) is the better way and is allowed.
* The pod-level ``securityContext`` of the template replaces the operator's field by field (e.g.
  ``runAsUser``/``fsGroup`` to match the owner of a volume's files) but must stay restricted.
* Other containers and init containers get the restricted container settings they lack
  (``allowPrivilegeEscalation: false``, ``capabilities.drop: [ALL]``), so a plain sidecar passes.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterable, Iterator
from typing import Any, Final

from openautoglm import podschema
from openautoglm_trial.contract import CHECKPOINT_MOUNT_PATH, RESERVED_ENV_PREFIXES

#: The trial container; every other container of the template is a sidecar.
WORKER_CONTAINER: Final = "worker"
#: The operator's emptyDir at /tmp (HOME, caches: the root file system is read-only).
TMP_VOLUME: Final = "openautoglm-tmp"
RESERVED_VOLUME_PREFIX: Final = "openautoglm-"
#: Mount points of the worker container that are the operator's (/tmp, the termination message,
#: the trial's checkpoint directory).
RESERVED_MOUNT_PATHS: Final = ("/tmp", "/dev/termination-log", CHECKPOINT_MOUNT_PATH)
RESERVED_LABEL_PREFIXES: Final = ("app.kubernetes.io/", "openautoglm.io/")
#: Set by the operator in the worker container besides RESERVED_ENV_PREFIXES (the trial contract's):
#: HOME=/tmp, the root file system is read-only.
RESERVED_ENV: Final = ("HOME",)
CONTAINER_LISTS: Final = ("containers", "initContainers", "ephemeralContainers")
#: What the template may set in the worker container; everything else there is the operator's.
WORKER_FIELDS: Final = (
    "name",
    "env",
    "envFrom",
    "volumeMounts",
    "volumeDevices",
    "workingDir",
    "securityContext",
    "imagePullPolicy",
)
_OWNED: Final = "set by the operator"
OWNED_WORKER_FIELDS: Final[dict[str, str]] = {
    "image": "comes from spec.trial.image",
    "command": "the operator runs spec.trial.command (or the task) through the trial runtime",
    "args": "the operator runs spec.trial.command (or the task) through the trial runtime",
    "resources": "comes from spec.trial.resources",
    "resizePolicy": "comes with spec.trial.resources",
    "ports": f"{_OWNED}: the metrics and rendezvous ports",
    "startupProbe": f"{_OWNED}: probes on /healthz and /readyz",
    "livenessProbe": f"{_OWNED}: probes on /healthz and /readyz",
    "readinessProbe": f"{_OWNED}: probes on /healthz and /readyz",
    "terminationMessagePath": f"{_OWNED}: the trial's result travels through the termination message",
    "terminationMessagePolicy": f"{_OWNED}: the trial's result travels through the termination message",
    "lifecycle": f"{_OWNED}: how a worker starts and stops is the trial runtime's",
    "restartPolicy": f"{_OWNED}: a worker never restarts (a failed rank fails the trial)",
}
OWNED_POD_FIELDS: Final[dict[str, str]] = {
    "restartPolicy": f"{_OWNED}: Never (a failed rank fails the trial)",
    "hostname": f"{_OWNED}: the rank's DNS name",
    "subdomain": f"{_OWNED}: the trial's headless Service",
    "setHostnameAsFQDN": f"{_OWNED}: the rank's DNS name",
    "dnsPolicy": f"{_OWNED}: ranks find each other through cluster DNS (add to it with dnsConfig)",
    "enableServiceLinks": f"{_OWNED}: no Service variables in a trial's environment",
    "terminationGracePeriodSeconds": f"{_OWNED}: the time a stopped trial has to write its result",
    "activeDeadlineSeconds": "use spec.trial.timeoutSeconds",
    "resources": "use spec.trial.resources",
    "nodeName": "bypasses the scheduler; use nodeSelector (kubernetes.io/hostname) or affinity",
    "priority": "set from priorityClassName by the API server",
    "overhead": "set from runtimeClassName by the API server",
    "serviceAccount": "deprecated alias; use serviceAccountName",
    "ephemeralContainers": "cannot be set when a pod is created",
}

# ----------------------------------------------------------------------------- restricted Pod Security
#: https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.33), restricted profile.
PSS: Final = "the restricted Pod Security Standard"
ALLOWED_VOLUME_SOURCES: Final = podschema.ALLOWED_VOLUME_SOURCES
ALLOWED_CAPABILITIES: Final = ("NET_BIND_SERVICE",)
ALLOWED_SECCOMP: Final = ("RuntimeDefault", "Localhost")
ALLOWED_APPARMOR: Final = ("RuntimeDefault", "Localhost")
ALLOWED_SELINUX_TYPES: Final = ("", "container_t", "container_init_t", "container_kvm_t", "container_engine_t")
ALLOWED_PROC_MOUNT: Final = ("Default",)
#: The baseline profile's safe sysctls (as of 1.29; later additions are refused, which is safe).
SAFE_SYSCTLS: Final = (
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
)
APPARMOR_ANNOTATION: Final = "container.apparmor.security.beta.kubernetes.io/"
HOST_NAMESPACES: Final = ("hostNetwork", "hostPID", "hostIPC")
#: What a sidecar or init container gets when it does not say (restricted, container level).
RESTRICTED_CONTAINER_DEFAULTS: Final = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}

#: Bounds Kubernetes does not have. The CRD needs them for its CEL rules' cost (the API server
#: refuses rules whose worst case is unbounded); the model enforces the same so both agree.
#: Paths are relative to the template; ``[]`` is an item of a list.
BOUNDS: Final[dict[str, int]] = {
    "metadata.labels": 64,
    "metadata.annotations": 64,
    "spec.containers": 16,
    "spec.initContainers": 16,
    "spec.volumes": 128,
    "spec.securityContext.sysctls": 32,
    **{
        f"spec.{lst}[].{field}": n
        for lst in ("containers", "initContainers")
        for field, n in (("env", 256), ("envFrom", 64), ("ports", 64), ("volumeMounts", 128))
    },
    **{
        f"spec.{lst}[].securityContext.capabilities.{part}": 64
        for lst in ("containers", "initContainers")
        for part in ("add", "drop")
    },
}

_QUALIFIED_NAME: Final = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# ----------------------------------------------------------------------------- helpers
def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _dict(value: Any) -> dict[str, Any]:
    """A mapping, or {} for anything else (its shape problem is reported by the schema walk)."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _items(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    return ((i, item) for i, item in enumerate(_list(value)) if isinstance(item, dict))


def _type_name(value: Any) -> str:
    for kind, name in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (list, "array"),
        (dict, "object"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return _type_name(value) == kind


# ----------------------------------------------------------------------------- (a) the schema
def _shape(value: Any, schema: dict[str, Any], path: str) -> Iterator[tuple[str, str]]:
    """Unknown fields, types and required fields, as the API server's strict field validation."""
    if value is None:
        return  # null is absent (the API server prunes it)
    if schema.get("x-kubernetes-int-or-string"):
        if not (_is(value, "integer") or isinstance(value, str)):
            yield path, f"must be an integer or a string, got {_type_name(value)}"
        elif isinstance(value, str) and "pattern" in schema and not re.match(schema["pattern"], value):
            yield path, f"must be a Kubernetes quantity such as 500m, 1, 2Gi; got {value!r}"
        return
    kind = schema.get("type", "object")
    if not _is(value, kind):
        yield path, f"must be of type {kind}, got {_type_name(value)}"
        return
    if kind == "array":
        for i, item in enumerate(value):
            yield from _shape(item, schema["items"], f"{path}[{i}]")
    elif kind == "object":
        props, extra = schema.get("properties"), schema.get("additionalProperties")
        if props is None and extra is None:
            return  # a field kept only by name (see podschema): its rule speaks for it
        for key in schema.get("required", []):
            if key not in value:
                yield _join(path, key), "required field is missing"
        for key, sub in value.items():
            sub_schema = (props or {}).get(key, extra)
            if sub_schema is None:
                yield _join(path, key), "unknown field (check the spelling; fields are camelCase)"
            else:
                yield from _shape(sub, sub_schema, _join(path, key))


def _bound_problems(template: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for bound_path, limit in BOUNDS.items():
        for path, value in _resolve(template, bound_path.split("."), ""):
            if isinstance(value, (list, dict)) and len(value) > limit:
                yield (
                    path,
                    (
                        f"at most {limit} entries here (a bound of the CRD that keeps its validation "
                        f"rules within the API server's cost budget), got {len(value)}"
                    ),
                )


def _resolve(node: Any, parts: list[str], path: str) -> Iterator[tuple[str, Any]]:
    """Every value at a bound path such as ``spec.containers[].env``."""
    if not parts:
        yield path, node
        return
    head, rest = parts[0], parts[1:]
    name = head.removesuffix("[]")
    value = _dict(node).get(name)
    if value is None:
        return
    if head.endswith("[]"):
        for i, item in enumerate(_list(value)):
            yield from _resolve(item, rest, f"{_join(path, name)}[{i}]")
    else:
        yield from _resolve(value, rest, _join(path, name))


# ----------------------------------------------------------------------------- (b) owned fields
def _metadata_problems(meta: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for key in meta:
        if key not in ("labels", "annotations"):
            yield f"metadata.{key}", f"{_OWNED}: a template gives only labels and annotations"
    for key, value in _dict(meta.get("labels")).items():
        where = f"metadata.labels.{key}"
        if key.startswith(RESERVED_LABEL_PREFIXES):
            yield (
                where,
                f"{_OWNED}: label keys {', '.join(p + '*' for p in RESERVED_LABEL_PREFIXES)} are the operator's",
            )
        elif not _qualified_name(key):
            yield where, "not a valid label key: [prefix/]name, name <= 63 characters of [A-Za-z0-9_.-]"
        if isinstance(value, str) and (len(value) > 63 or not _LABEL_VALUE.match(value)):
            yield where, "not a valid label value: <= 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends"
    for key, value in _dict(meta.get("annotations")).items():
        where = f"metadata.annotations.{key}"
        if not _qualified_name(key):
            yield where, "not a valid annotation key: [prefix/]name, name <= 63 characters of [A-Za-z0-9_.-]"
        if (
            key.startswith(APPARMOR_ANNOTATION)
            and isinstance(value, str)
            and value != "runtime/default"
            and not value.startswith("localhost/")
        ):
            yield where, f"AppArmor profile must be runtime/default or localhost/* ({PSS})"


def _qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return bool(_QUALIFIED_NAME.match(key)) and len(name) <= 63 and len(prefix) <= 253


def _worker_problems(container: dict[str, Any], path: str, taken_env: set[str]) -> Iterator[tuple[str, str]]:
    known = podschema.shared_schema()["properties"]["spec"]["properties"]["containers"]["items"]["properties"]
    for key in container:
        if key in known and key not in WORKER_FIELDS:  # an unknown one is the schema walk's
            yield _join(path, key), OWNED_WORKER_FIELDS.get(key, f"{_OWNED} in the {WORKER_CONTAINER} container")
    for i, env in _items(container.get("env")):
        name = env.get("name")
        if not isinstance(name, str):
            continue
        if name.startswith(RESERVED_ENV_PREFIXES) or name in RESERVED_ENV:
            yield (
                f"{path}.env[{i}].name",
                f"{_OWNED}: {', '.join(p + '*' for p in RESERVED_ENV_PREFIXES)} and "
                f"{', '.join(RESERVED_ENV)} are the trial contract's",
            )
        elif name in taken_env:
            yield f"{path}.env[{i}].name", "also set in spec.trial.env: give it once"
    for i, source in _items(container.get("envFrom")):
        prefix = source.get("prefix")
        if isinstance(prefix, str) and prefix.startswith(RESERVED_ENV_PREFIXES):
            yield (
                f"{path}.envFrom[{i}].prefix",
                f"{_OWNED}: {', '.join(p + '*' for p in RESERVED_ENV_PREFIXES)} are the trial contract's",
            )
    for i, mount in _items(container.get("volumeMounts")):
        mount_path = mount.get("mountPath")
        if isinstance(mount_path, str) and mount_path.rstrip("/") in RESERVED_MOUNT_PATHS:
            yield (
                f"{path}.volumeMounts[{i}].mountPath",
                f"{_OWNED}: {', '.join(RESERVED_MOUNT_PATHS)} are the operator's mounts",
            )


def _pod_spec_problems(spec: dict[str, Any], taken_env: set[str]) -> Iterator[tuple[str, str]]:
    for key, why in OWNED_POD_FIELDS.items():
        if key in spec:
            yield f"spec.{key}", why
    volumes = {v.get("name") for _, v in _items(spec.get("volumes"))}
    seen: dict[str, str] = {}
    for lst in ("containers", "initContainers"):
        for i, container in _items(spec.get(lst)):
            path, name = f"spec.{lst}[{i}]", container.get("name")
            if isinstance(name, str) and name in seen:
                yield f"{path}.name", f"{name!r} is already the name of {seen[name]}: container names must be unique"
            elif isinstance(name, str):
                seen[name] = path
            if lst == "initContainers" and name == WORKER_CONTAINER:
                yield f"{path}.name", f"{WORKER_CONTAINER!r} is the trial container: name an init container otherwise"
            if lst == "containers" and name == WORKER_CONTAINER:
                yield from _worker_problems(container, path, taken_env)
            elif lst == "containers" and "restartPolicy" in container:
                yield f"{path}.restartPolicy", "only for init containers (restartPolicy: Always makes a sidecar)"
            elif lst == "initContainers" and container.get("restartPolicy") not in (None, "Always"):
                yield f"{path}.restartPolicy", "must be Always (a sidecar) or unset (runs to completion first)"
            for j, mount in _items(container.get("volumeMounts")):
                ref = mount.get("name")
                where = f"{path}.volumeMounts[{j}].name"
                if isinstance(ref, str) and ref.startswith(RESERVED_VOLUME_PREFIX):
                    yield where, f"{_OWNED}: volumes named {RESERVED_VOLUME_PREFIX}* are the operator's"
                elif isinstance(ref, str) and ref not in volumes:
                    yield where, f"names no volume of spec.volumes ({sorted(v for v in volumes if isinstance(v, str))})"
    names: set[str] = set()
    for i, volume in _items(spec.get("volumes")):
        name = volume.get("name")
        if isinstance(name, str) and name.startswith(RESERVED_VOLUME_PREFIX):
            yield f"spec.volumes[{i}].name", f"{_OWNED}: volumes named {RESERVED_VOLUME_PREFIX}* are the operator's"
        elif isinstance(name, str) and name in names:
            yield f"spec.volumes[{i}].name", f"duplicate volume name {name!r}"
        if isinstance(name, str):
            names.add(name)
        sources = [k for k in volume if k != "name"]
        if len(sources) > 1:
            yield f"spec.volumes[{i}]", f"one volume source per volume, got {sources}"


# ----------------------------------------------------------------------------- (c) restricted Pod Security
def _security_problems(sc: dict[str, Any], path: str, *, pod: bool) -> Iterator[tuple[str, str]]:
    """Rules shared by the pod's and a container's securityContext."""
    if sc.get("runAsNonRoot") is False:
        yield f"{path}.runAsNonRoot", f"must not be false ({PSS}: containers run as non-root)"
    if sc.get("runAsUser") == 0:
        yield f"{path}.runAsUser", f"must not be 0 ({PSS}: containers run as non-root)"
    seccomp = _dict(sc.get("seccompProfile")).get("type")
    if seccomp is not None and seccomp not in ALLOWED_SECCOMP:
        yield f"{path}.seccompProfile.type", f"must be {' or '.join(ALLOWED_SECCOMP)} ({PSS})"
    apparmor = _dict(sc.get("appArmorProfile")).get("type")
    if apparmor is not None and apparmor not in ALLOWED_APPARMOR:
        yield f"{path}.appArmorProfile.type", f"must be {' or '.join(ALLOWED_APPARMOR)} ({PSS})"
    selinux = _dict(sc.get("seLinuxOptions"))
    if selinux.get("type") not in (None, *ALLOWED_SELINUX_TYPES):
        yield (
            f"{path}.seLinuxOptions.type",
            f"must be one of {', '.join(t for t in ALLOWED_SELINUX_TYPES if t)} ({PSS})",
        )
    for key in ("user", "role"):
        if selinux.get(key) not in (None, ""):
            yield f"{path}.seLinuxOptions.{key}", f"must not be set ({PSS})"
    if _dict(sc.get("windowsOptions")).get("hostProcess") is True:
        yield f"{path}.windowsOptions.hostProcess", f"must not be true ({PSS}: no host processes)"
    if pod:
        for i, sysctl in _items(sc.get("sysctls")):
            if sysctl.get("name") not in SAFE_SYSCTLS:
                yield f"{path}.sysctls[{i}].name", f"not a safe sysctl ({PSS}: {', '.join(SAFE_SYSCTLS)})"
        return
    if sc.get("privileged") is True:
        yield f"{path}.privileged", f"must not be true ({PSS}: no privileged containers)"
    if sc.get("allowPrivilegeEscalation") is True:
        yield f"{path}.allowPrivilegeEscalation", f"must be false ({PSS})"
    if sc.get("procMount") not in (None, *ALLOWED_PROC_MOUNT):
        yield f"{path}.procMount", f"must be Default ({PSS})"
    caps = _dict(sc.get("capabilities"))
    for i, cap in enumerate(_list(caps.get("add"))):
        if cap not in ALLOWED_CAPABILITIES:
            yield f"{path}.capabilities.add[{i}]", f"only {', '.join(ALLOWED_CAPABILITIES)} may be added ({PSS})"
    if "drop" in caps and "ALL" not in _list(caps["drop"]):
        yield f"{path}.capabilities.drop", f"must include ALL ({PSS})"


def _pss_problems(spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for key in HOST_NAMESPACES:
        if spec.get(key) is True:
            yield f"spec.{key}", f"must not be true ({PSS}: no host namespaces)"
    yield from _security_problems(_dict(spec.get("securityContext")), "spec.securityContext", pod=True)
    for lst in CONTAINER_LISTS:
        for i, container in _items(spec.get(lst)):
            path = f"spec.{lst}[{i}]"
            yield from _security_problems(_dict(container.get("securityContext")), f"{path}.securityContext", pod=False)
            for j, port in _items(container.get("ports")):
                if port.get("hostPort") not in (None, 0):
                    yield f"{path}.ports[{j}].hostPort", f"must not be set ({PSS}: no host ports)"
    for i, volume in _items(spec.get("volumes")):
        for key in volume:
            if key != "name" and key not in ALLOWED_VOLUME_SOURCES:
                yield (
                    f"spec.volumes[{i}].{key}",
                    (f"{key} volumes are not allowed ({PSS} allows {', '.join(ALLOWED_VOLUME_SOURCES)})"),
                )


# ----------------------------------------------------------------------------- public functions
def problems(template: dict[str, Any] | None, *, taken_env: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Every problem of a template, as (path relative to the template, message).

    Args:
        template: ``spec.trial.podTemplate`` (None: no overlay).
        taken_env: names ``spec.trial.env`` already gives the worker (given twice is a problem).
    """
    if template is None:
        return []
    if not isinstance(template, dict):
        return [("", f"must be a mapping (a PodTemplateSpec: metadata, spec), got {_type_name(template)}")]
    meta, spec = _dict(template.get("metadata")), _dict(template.get("spec"))
    # Owned metadata fields are not in the vendored schema: say why instead of "unknown field".
    shaped = (
        {**template, "metadata": {k: v for k, v in meta.items() if k in ("labels", "annotations")}}
        if meta
        else template
    )
    found = [
        *_shape(shaped, podschema.shared_schema(), ""),
        *_bound_problems(template),
        *_metadata_problems(meta),
        *_pod_spec_problems(spec, set(taken_env)),
        *_pss_problems(spec),
    ]
    return list(dict.fromkeys(found))  # one message per (path, text)


def _fill(given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``given`` with what ``defaults`` has and it lacks, recursively (given values win)."""
    out = copy.deepcopy(given)
    for key, value in defaults.items():
        if key not in out:
            out[key] = copy.deepcopy(value)
        elif isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = _fill(out[key], value)
    return out


def _merge_worker(worker: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(worker)
    ours = {e["name"] for e in out.get("env", [])}
    # Appended after ours: $(OPENAUTOGLM_...) references in the user's values expand; a clash
    # (refused by problems()) keeps ours.
    env = [e for e in overlay.get("env") or [] if e.get("name") not in ours]
    for key, value in (("env", env), ("volumeMounts", overlay.get("volumeMounts") or [])):
        if value:
            out[key] = [*out.get(key, []), *copy.deepcopy(value)]
    for key in ("envFrom", "volumeDevices", "workingDir", "imagePullPolicy"):
        if key in overlay:
            out[key] = copy.deepcopy(overlay[key])
    if "securityContext" in overlay:
        out["securityContext"] = _fill(overlay["securityContext"] or {}, out.get("securityContext", {}))
    return out


def _restricted(container: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(container)
    out["securityContext"] = _fill(out.get("securityContext") or {}, RESTRICTED_CONTAINER_DEFAULTS)
    return out


def merge_into_pod(pod: dict[str, Any], template: dict[str, Any] | None) -> dict[str, Any]:
    """A new pod: ``pod`` (the operator's, with its ``worker`` container) with ``template`` under it.

    Labels and annotations are added (the operator's win); pod fields the operator does not own are
    taken from the template (``automountServiceAccountToken`` and the ``securityContext`` fields
    included); the worker container gets the template's env, envFrom, volumeMounts, volumeDevices,
    workingDir, imagePullPolicy and securityContext; other containers and init containers follow it
    with the restricted settings they lack; volumes are appended. Expects a template without
    :func:`problems`.
    """
    out = copy.deepcopy(pod)
    if not template:
        return out
    meta, tmeta = out.setdefault("metadata", {}), template.get("metadata") or {}
    for key in ("labels", "annotations"):
        merged = {**(tmeta.get(key) or {}), **(meta.get(key) or {})}
        if merged:
            meta[key] = copy.deepcopy(merged)
    spec, tspec = out.setdefault("spec", {}), template.get("spec") or {}
    for key, value in tspec.items():
        if key not in OWNED_POD_FIELDS and key not in ("containers", "initContainers", "volumes", "securityContext"):
            spec[key] = copy.deepcopy(value)
    if tspec.get("securityContext"):
        spec["securityContext"] = {**spec.get("securityContext", {}), **copy.deepcopy(tspec["securityContext"])}
    overlays = {c.get("name"): c for c in tspec.get("containers") or []}
    spec["containers"] = [
        _merge_worker(c, overlays[c["name"]]) if c["name"] in overlays else c for c in spec.get("containers", [])
    ]
    ours = {c["name"] for c in spec["containers"]}
    spec["containers"] += [_restricted(c) for c in tspec.get("containers") or [] if c.get("name") not in ours]
    if tspec.get("initContainers"):
        spec["initContainers"] = [*spec.get("initContainers", []), *map(_restricted, tspec["initContainers"])]
    if tspec.get("volumes"):
        spec["volumes"] = [*spec.get("volumes", []), *copy.deepcopy(tspec["volumes"])]
    return out


@dataclasses.dataclass(frozen=True)
class LocalOverlay:
    """What a local worker process takes from a template."""

    #: Plain ``value`` env entries of the worker container (as written: no ``$(VAR)`` expansion).
    env: dict[str, str]
    #: The worker container's ``workingDir`` (the process's cwd).
    working_dir: str | None
    #: Paths (relative to the template) a local process cannot honour: volumes, env from Secrets,
    #: node placement, sidecars ...
    ignored: list[str]


def local_overlay(template: dict[str, Any] | None) -> LocalOverlay:
    """What a local process can honour of a (valid) template, and the fields it ignores."""
    env: dict[str, str] = {}
    working_dir: str | None = None
    ignored: list[str] = []
    if not template:
        return LocalOverlay(env, working_dir, ignored)
    for key, value in (template.get("metadata") or {}).items():
        if value:
            ignored.append(f"metadata.{key}")
    for key, value in (template.get("spec") or {}).items():
        if key != "containers":
            ignored.append(f"spec.{key}")
            continue
        for i, container in enumerate(value or []):
            path = f"spec.containers[{i}]"
            if container.get("name") != WORKER_CONTAINER:
                ignored.append(path)  # a sidecar: there is no pod to share locally
                continue
            for field, setting in container.items():
                if field == "env":
                    for j, item in enumerate(setting or []):
                        if "valueFrom" in item:
                            ignored.append(f"{path}.env[{j}].valueFrom")
                        else:
                            env[item["name"]] = str(item.get("value", ""))
                elif field == "workingDir":
                    working_dir = setting
                elif field != "name":
                    ignored.append(f"{path}.{field}")
    return LocalOverlay(env, working_dir, ignored)
