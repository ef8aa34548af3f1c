"""The primary container of a Katib trial: its command, image, resources and environment.

The program's command (``command`` + ``args``, a simple ``sh -c`` line split into words) and the
fields a TuningJob names itself go to ``spec.trial``; what else the container carries (mounts,
env from Secrets, a working directory ...) becomes the ``worker`` container of the pod overlay.
"""

from __future__ import annotations

import copy
import math
import posixpath
import re
from typing import Any, Final

from openautoglm.katib.context import TrialContext
from openautoglm.katib.shell import shell_invocation, shell_words
from openautoglm.katib.values import walk_strings
from openautoglm.spec import ENV_NAME_RE, QUANTITY_RE, TrialTemplate
from openautoglm_trial.contract import PLACEHOLDER, RESERVED_ENV_PREFIXES

#: The kubelet expands ``$(VAR)`` in a container's command and args (``$$(VAR)`` escapes it).
_KUBELET_VAR: Final = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_OPERATORS_ENV: Final = ", ".join(p + "*" for p in RESERVED_ENV_PREFIXES) + " and HOME are set by the operator"
#: The image a trial runs by default: the trial runtime (trial_image/Dockerfile) and nothing else.
TRIAL_IMAGE: Final = TrialTemplate.model_fields["image"].default
#: A program the command names by its absolute path (``/opt/pytorch-mnist/mnist.py``), outside the
#: system's directories: what a derived image has to copy.
_PROGRAM_PATH: Final = re.compile(r"^/(?!(usr|bin|sbin|lib|lib64|etc|proc|dev)/)[\w.-]+(/[\w.-]+)*/[\w-]+\.\w+$")


def _settable(name: str) -> bool:
    return bool(ENV_NAME_RE.match(name)) and not name.startswith(RESERVED_ENV_PREFIXES) and name != "HOME"


def container(
    c: dict[str, Any],
    path: str,
    trial: dict[str, Any],
    ctx: TrialContext,
    *,
    argv: list[str] | None = None,
    argv_path: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The trial container: image, command, resources and plain env go to ``trial``; what the
    ``worker`` container of the overlay may carry (env from Secrets, mounts, workingDir ...) is
    returned as that container. An MPIJob's program comes from its Launcher: ``argv`` (found at
    ``argv_path``) and the ``-x`` variables ``extra_env``."""
    findings = ctx.findings
    worker: dict[str, Any] = {"name": "worker"}
    if argv is None:
        argv = command_line(c, path, ctx)
        argv_path = path
    if argv is not None:
        command = rewrite_command(argv, f"{argv_path}.command", ctx)
        if command is not None:
            trial["command"] = command
    if c.get("image"):
        trial["image"] = c["image"]
        _image_note(c["image"], trial.get("command") or [], ctx)
    else:
        findings.miss(f"{path}.image", "required")
    env: list[dict[str, str]] = []
    for k, v in (extra_env or {}).items():
        if not _settable(k):
            findings.miss(f"{argv_path}.args", f"-x {k}: not an environment variable a TuningJob can set")
        else:
            env.append({"name": k, "value": v})
    for key, value in c.items():
        if key not in ("name", "image", "command", "args"):
            env = _field(key, value, f"{path}.{key}", trial, worker, env, ctx)
    if env:
        trial["env"] = env
    if "resources" not in trial:
        findings.note(
            "no resources in Katib's trial container (a BestEffort pod there): the trial gets the TuningJob "
            "defaults (requests cpu 1, memory 1Gi; limits cpu 1, memory 2Gi)"
        )
    return worker


def _field(
    key: str,
    value: Any,
    path: str,
    trial: dict[str, Any],
    worker: dict[str, Any],
    env: list[dict[str, str]],
    ctx: TrialContext,
) -> list[dict[str, str]]:
    """One more field of the primary container: to ``trial``, to ``worker``, or dropped with a note;
    returns the plain environment so far."""
    findings = ctx.findings
    if key == "resources":
        res = resources(value or {}, path, ctx)
        if res:
            trial["resources"] = res
    elif key == "env":
        return _env(value or [], path, env, worker, ctx)
    elif key == "ports":
        for i, port in enumerate(value or []):
            if (port or {}).get("hostPort") not in (None, 0):
                findings.miss(
                    f"{path}[{i}].hostPort", "must not be set (the restricted Pod Security Standard: no host ports)"
                )
        findings.note("container ports dropped: declaring them is informational; the program can still listen")
    elif key in ("livenessProbe", "readinessProbe", "startupProbe"):
        findings.note(f"{key} dropped: the trial supervisor serves the probes (a stalled trial is stopped)")
    elif key in ("terminationMessagePath", "terminationMessagePolicy"):
        findings.note(f"{key} dropped: the trial supervisor writes the termination message")
    else:
        placeholders(value, path, ctx)
        worker[key] = copy.deepcopy(value)  # the overlay check decides (owned or allowed)
    return env


def _image_note(image: Any, command: list[str], ctx: TrialContext) -> None:
    """What to build: Katib's training image lacks the trial runtime that runs the command."""
    if str(image) == TRIAL_IMAGE:
        return
    program = next((item for item in command if _PROGRAM_PATH.match(item)), None)
    copy_line = ""
    if program is not None:
        directory = posixpath.dirname(program)
        copy_line = f" (e.g. `COPY --from={image} {directory} {directory}`)"
    ctx.findings.note(
        f"trial.image {image!r} is the image Katib ran, without the trial runtime (the supervisor that runs the "
        f"command and reads its metrics): build one `FROM {TRIAL_IMAGE}` that adds the program and what it "
        f"imports{copy_line}, as examples/own-script/Dockerfile does, or pip install openautoglm-tune[trial] "
        "into yours, and set trial.image to it"
    )


def _env(
    items: list[Any], path: str, env: list[dict[str, str]], worker: dict[str, Any], ctx: TrialContext
) -> list[dict[str, str]]:
    """``env``: plain values to ``trial.env`` (a later one replaces an earlier one of the same name),
    ``valueFrom`` to the worker container."""
    for i, e in enumerate(items):
        epath = f"{path}[{i}]"
        name = (e or {}).get("name", "")
        if not ENV_NAME_RE.match(str(name)):
            ctx.findings.miss(f"{epath}.name", f"{name!r} is not a valid environment variable name")
        elif not _settable(str(name)):
            ctx.findings.miss(f"{epath}.name", f"{name}: {_OPERATORS_ENV}")
        elif any(PLACEHOLDER.search(t) for _, t in walk_strings(e, epath)):
            ctx.findings.miss(
                f"{epath}.value",
                "${trialParameters.*} is only replaced in the trial's command "
                "(the trial gets every parameter in OPENAUTOGLM_TRIAL_PARAMS)",
            )
        elif "valueFrom" in e:
            worker.setdefault("env", []).append(copy.deepcopy(e))
        else:
            env = [x for x in env if x["name"] != name]
            env.append({"name": name, "value": str(e.get("value", ""))})
    return env


def resources(res: dict[str, Any], path: str, ctx: TrialContext) -> dict[str, Any]:
    """``requests`` and ``limits`` whose quantities the TuningJob accepts."""
    out: dict[str, Any] = {}
    for part in ("requests", "limits"):
        values = {}
        for k, v in (res.get(part) or {}).items():
            text = str(v)
            if isinstance(v, float) and math.isfinite(v) and v == int(v):
                text = str(int(v))
            if not QUANTITY_RE.match(text):
                ctx.findings.miss(f"{path}.{part}.{k}", f"{v!r} is not a quantity the TuningJob accepts")
                continue
            values[k] = text
        if values:
            out[part] = values
    for k in res:
        if k not in ("requests", "limits"):
            ctx.findings.miss(f"{path}.{k}", "no equivalent")
    return out


def command_line(c: dict[str, Any], path: str, ctx: TrialContext) -> list[str] | None:
    """The container's ``command`` + ``args`` as an exec-form argv (a simple ``sh -c`` line split)."""
    command = [str(x) for x in c.get("command") or []]
    args = [str(x) for x in c.get("args") or []]
    if not command:
        ctx.findings.miss(
            f"{path}.command",
            "missing: the image's ENTRYPOINT would run"
            + (" with args" if args else "")
            + "; a TuningJob's trial.command must name the program",
        )
        return None
    argv = command + args
    shell = shell_invocation(argv)
    if shell is None:
        return argv
    script, extra = shell
    where = f"{path}.{'args' if args and script in args else 'command'}"
    if extra:
        ctx.findings.miss(where, f"{argv[0]} -c with positional arguments {extra}: needs a shell")
        return None
    words, reason = shell_words(script)
    if words is None:
        ctx.findings.miss(
            where,
            f"the {argv[0]} -c command line has {reason}: a TuningJob runs its command without a "
            "shell (put the line in a script in the image)",
        )
        return None
    if words and words[0] == "exec":
        words = words[1:]
    if not words:
        ctx.findings.miss(where, "the shell command line runs no program")
        return None
    ctx.findings.note(f"{argv[0]} -c {script.strip()!r} split into the exec-form command {words}")
    return words


def rewrite_command(argv: list[str], path: str, ctx: TrialContext) -> list[str] | None:
    """``${trialParameters.X}`` becomes ``${trialParameters.<X's reference>}``; None when an item
    cannot be carried over (reported at ``path``, every reason in one entry)."""
    out: list[str] = []
    reasons: list[str] = []
    for item in argv:
        if _KUBELET_VAR.search(item):
            reasons.append(
                f"{item!r}: the kubelet expands $(VAR) in a container command; the trial supervisor "
                "runs the command without expansion"
            )
            continue

        def _sub(m: re.Match[str], item: str = item) -> str:
            name = m.group(1)
            if name in ctx.references:
                return "${trialParameters." + ctx.references[name] + "}"
            if name in ctx.unconverted:
                reasons.append(
                    f"{item!r} uses {m.group(0)}, whose parameter is not converted ({ctx.unconverted[name]}): "
                    "the command cannot be written without it"
                )
            elif name not in ctx.declared:
                reasons.append(f"${{trialParameters.{name}}} is not declared in trialTemplate.trialParameters")
            else:
                reasons.append(f"{m.group(0)} cannot be replaced")
            return m.group(0)

        out.append(PLACEHOLDER.sub(_sub, item))
    if reasons:
        ctx.findings.miss(path, "; ".join(dict.fromkeys(reasons)))
        return None
    return out


def placeholders(value: Any, path: str, ctx: TrialContext) -> None:
    """Report every ``${trialParameters.*}`` under ``value``: Katib replaces them anywhere, a TuningJob
    only in the command."""
    for p, text in walk_strings(value, path):
        if PLACEHOLDER.search(text):
            ctx.findings.miss(
                p, "${trialParameters.*} is only replaced in the trial's command (--lossy keeps it as text)"
            )
