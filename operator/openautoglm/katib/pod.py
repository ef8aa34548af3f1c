"""A Katib trial's pod: the primary container to ``spec.trial``, the rest to ``spec.trial.podTemplate``.

What the overlay may hold is :mod:`openautoglm.podtemplate`'s decision (owned fields, the
restricted Pod Security Standard, the Kubernetes schema): its problems become unmapped fields at
their Katib paths, and --lossy drops them from the overlay.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Final

from openautoglm import podtemplate
from openautoglm.katib.container import container, placeholders
from openautoglm.katib.context import TrialContext
from openautoglm.katib.values import Bound, integer, walk_strings
from openautoglm.spec import TrialTemplate
from openautoglm_trial.contract import PLACEHOLDER

#: The most retries a TuningJob trial may have (spec.py's bound of trial.retries).
MAX_RETRIES: Final = next(m.le for m in TrialTemplate.model_fields["retries"].metadata if hasattr(m, "le"))
#: Restart policies that restart a failed container or pod (Kubernetes', the training operator's).
RESTARTING: Final = ("OnFailure", "Always", "ExitCode")


def find_container(containers: list[dict[str, Any]], name: str | None) -> int | None:
    """The index of the container named ``name`` (None: no name, or none has it)."""
    for i, c in enumerate(containers):
        if name is not None and (c or {}).get("name") == name:
            return i
    return None


def timeout(value: Any, path: str, trial: dict[str, Any], ctx: TrialContext) -> None:
    """An ``activeDeadlineSeconds`` (of the Job, the run policy or the pod): the smallest one counts."""
    seconds = ctx.findings.number(path, value, integer, Bound(low=1))
    if seconds is not None:
        trial["timeoutSeconds"] = min(seconds, trial.get("timeoutSeconds", seconds))


def retries(value: Any, path: str, field: str, trial: dict[str, Any], ctx: TrialContext) -> None:
    """A ``backoffLimit`` (of the Job, or the run policy): how often Kubernetes ran a failed pod again,
    as ``trial.retries``, how often a failed trial runs again."""
    n = ctx.findings.number(path, value, integer, Bound(low=0))
    if not n:
        return
    trial["retries"] = min(n, MAX_RETRIES)
    capped = f" (at most {MAX_RETRIES})" if n > MAX_RETRIES else ""
    ctx.findings.note(
        f"{field} {value}: Kubernetes ran a failed pod again up to {n} times; trial.retries {trial['retries']}"
        f"{capped} runs a failed trial again, every rank with the same parameters"
    )


def restarts(policy: Any, where: str, trial: dict[str, Any], ctx: TrialContext) -> None:
    """A restart policy that restarts a failed pod: dropped, a failed trial runs again instead."""
    n = trial.get("retries", 0)
    ctx.findings.note(
        f"restartPolicy {policy} of {where} dropped: a TuningJob restarts no pod; a failed rank stops the trial, "
        f"which runs again (every rank, the same parameters) up to trial.retries times: {n}"
        + ("" if n else f" (the default; set trial.retries, at most {MAX_RETRIES}, to retry)")
    )


def pod(
    template: dict[str, Any],
    path: str,
    primary: str | None,
    trial: dict[str, Any],
    ctx: TrialContext,
    *,
    argv: list[str] | None = None,
    argv_path: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> None:
    """The trial's pod (a PodTemplateSpec at ``path``) into ``trial``; ``primary`` names its container."""
    findings = ctx.findings
    meta = template.get("metadata") or {}
    overlay_meta = _pod_metadata(meta, path, ctx)
    spec = template.get("spec") or {}
    spath = f"{path}.spec"
    containers = spec.get("containers") or []
    ci = find_container(containers, primary)
    if ci is None and primary is None and len(containers) == 1:
        ci = 0
        findings.note(
            f"trialTemplate.primaryContainerName unset: the only container {containers[0].get('name')!r} is the trial's"
        )
    if ci is None:
        findings.miss(f"{spath}.containers", f"no container {primary!r} (trialTemplate.primaryContainerName)")
        return
    worker = container(
        containers[ci], f"{spath}.containers[{ci}]", trial, ctx, argv=argv, argv_path=argv_path, extra_env=extra_env
    )
    # overlay index -> Katib index, to report the overlay's problems at their Katib path
    container_index: dict[int, int] = {}
    overlay_containers: list[dict[str, Any]] = []
    if len(worker) > 1:
        container_index[0] = ci
        overlay_containers.append(worker)
    for i, c in enumerate(containers):
        if i != ci:
            container_index[len(overlay_containers)] = i
            overlay_containers.append(copy.deepcopy(c))
            placeholders(c, f"{spath}.containers[{i}]", ctx)
    overlay = _pod_spec(spec, spath, trial, ctx)
    if overlay_containers:
        overlay = {"containers": overlay_containers} | overlay
    result: dict[str, Any] = {}
    if overlay_meta:
        result["metadata"] = overlay_meta
    if overlay:
        result["spec"] = overlay
    where = _Where(path, ctx.pod_meta, meta, container_index)
    result = checked_overlay(result, where, [e["name"] for e in trial.get("env") or []], ctx)
    if result:
        trial["podTemplate"] = result


def _pod_metadata(meta: dict[str, Any], path: str, ctx: TrialContext) -> dict[str, Any]:
    """The trial pods' labels and annotations: trialSpec.metadata's, then the pod template's."""
    out: dict[str, Any] = copy.deepcopy(dict(ctx.pod_meta))
    for key in ("labels", "annotations"):
        if meta.get(key):
            out.setdefault(key, {}).update(copy.deepcopy(meta[key]))
    for key in meta:
        if key not in ("labels", "annotations"):
            ctx.findings.miss(f"{path}.metadata.{key}", "only labels and annotations of the trial pods map")
    for p, text in walk_strings(meta, f"{path}.metadata"):
        if PLACEHOLDER.search(text):
            ctx.findings.miss(p, "${trialParameters.*} is only replaced in the trial's command")
    return out


def _pod_spec(spec: dict[str, Any], spath: str, trial: dict[str, Any], ctx: TrialContext) -> dict[str, Any]:
    """The pod's fields but its containers: the overlay's ``spec``, less what the operator sets."""
    overlay: dict[str, Any] = {}
    for key, value in spec.items():
        kpath = f"{spath}.{key}"
        if key == "containers":
            continue
        placeholders(value, kpath, ctx)
        if key == "restartPolicy":
            if value in RESTARTING:
                restarts(value, "the trial pod", trial, ctx)
            elif value != "Never":
                ctx.findings.miss(kpath, f"{value!r}: must be Never, {', '.join(RESTARTING)}")
        elif key == "activeDeadlineSeconds":
            timeout(value, kpath, trial, ctx)
        elif key == "serviceAccount":
            overlay.setdefault("serviceAccountName", value)
        elif key == "dnsPolicy" and value == "ClusterFirst":
            continue  # the operator's
        elif key in ("terminationGracePeriodSeconds", "enableServiceLinks"):
            ctx.findings.note(f"{key} dropped: the operator sets it on trial pods")
        else:
            overlay[key] = copy.deepcopy(value)
    return overlay


class _Where:
    """Where a field of the overlay came from in the Experiment."""

    def __init__(
        self, path: str, pod_meta: Mapping[str, Any], template_meta: Mapping[str, Any], index: dict[int, int]
    ) -> None:
        self.path = path
        self.pod_meta = pod_meta
        self.template_meta = template_meta
        self.index = index

    def __call__(self, rel: str) -> str:
        """The Katib path of the overlay's field ``rel`` (``spec.containers[1].image``)."""
        m = re.match(r"spec\.containers\[(\d+)\](.*)", rel)
        if m and int(m.group(1)) in self.index:
            return f"{self.path}.spec.containers[{self.index[int(m.group(1))]}]{m.group(2)}"
        m = re.match(r"metadata\.(labels|annotations)\.(.+)", rel)
        if (
            m
            and m.group(2) in (self.pod_meta.get(m.group(1)) or {})
            and m.group(2) not in (self.template_meta.get(m.group(1)) or {})
        ):
            return f"spec.trialTemplate.trialSpec.metadata.{m.group(1)}.{m.group(2)}"
        return f"{self.path}.{rel}" if rel else self.path


def checked_overlay(overlay: dict[str, Any], where: _Where, taken_env: list[str], ctx: TrialContext) -> dict[str, Any]:
    """The overlay without what openautoglm.podtemplate refuses; each refusal unmapped at its Katib path."""
    out = copy.deepcopy(overlay)
    for round_ in range(6):
        found = podtemplate.problems(out or None, taken_env=taken_env)
        if not found:
            break
        for rel, message in found:
            if round_ == 0:
                ctx.findings.miss(where(rel), message)
            # A refused volume source leaves a volume without one: drop the volume (and, next
            # round, the mounts that name it).
            m = re.match(r"(spec\.volumes\[\d+\])\.(?!name$)", rel)
            _delete(out, m.group(1) if m else rel)
        _purge(out)
    else:  # pragma: no cover - deleting what is refused always converges
        return {}
    return {k: v for k, v in out.items() if v}


_DELETED: Final = object()


def _delete(node: Any, rel: str) -> None:
    """Mark the field at ``rel`` (``spec.containers[0].securityContext.privileged``) of ``node`` for
    :func:`_purge`; a path that does not exist (a required field is missing) marks its parent instead."""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", rel)
    if not parts:
        node.clear()
        return
    parents: list[tuple[Any, Any]] = []
    cur: Any = node
    for part in parts:
        key: Any = int(part[1:-1]) if part.startswith("[") else part
        exists = (isinstance(cur, list) and isinstance(key, int) and key < len(cur)) or (
            isinstance(cur, dict) and not isinstance(key, int) and key in cur
        )
        if not exists:
            break
        parents.append((cur, key))
        cur = cur[key]
    if parents:
        container_, key = parents[-1]
        container_[key] = _DELETED


def _purge(node: Any) -> Any:
    """Drop what :func:`_delete` marked (nothing else: an ``emptyDir: {}`` stays)."""
    if isinstance(node, dict):
        for k in [k for k, v in node.items() if v is _DELETED]:
            del node[k]
        for v in node.values():
            _purge(v)
    elif isinstance(node, list):
        node[:] = [v for v in node if v is not _DELETED]
        for v in node:
            _purge(v)
    return node
