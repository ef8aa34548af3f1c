"""The CEL rules (``x-kubernetes-validations``) of the TuningJob CRD: what its schema cannot say.

:data:`RULES` mirrors the model validators of spec.py (and the registries' checks that CEL can
see: a built-in task's metrics and hyperparameter bounds, the multi-objective samplers), and
:func:`pod_template_rules` the owned fields and restricted Pod Security checks of
:mod:`openautoglm.podtemplate`, so a ``command`` in the worker container or a ``privileged: true``
sidecar is refused by the API server. Every rule's worst-case cost must fit the API server's budget;
the bounds that keep it there are in :data:`openautoglm.crd.schema.CRD_ONLY_BOUNDS`.
"""

from __future__ import annotations

from typing import Final

from openautoglm import podschema, promql
from openautoglm import podtemplate as pt
from openautoglm.crd.schema import POD_TEMPLATE
from openautoglm.spec import (
    DEFAULT_RENDEZVOUS_PORT,
    MAX_NAME_LENGTH,
    NAME_RE,
    URL_PASSWORD_RE,
)
from openautoglm_trial.contract import TORCHELASTIC_PREFIX, TORCHRUN_ENV


def _rule(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


_NUMERIC: Final = "(self.type == 'float' || self.type == 'int')"
_SCALAR: Final = "type(self) != map && type(self) != list"
_REQUIRED, _FORBIDDEN = "FieldValueRequired", "FieldValueForbidden"
#: Transition rules (they name ``oldSelf``: evaluated on updates only) keep what the study depends on
#: (engine.study.fingerprints) as it was: a study's trials are only comparable under one search
#: space, objective, sampler and worker count. The operator refuses such an edit as well (Stalled,
#: SpecChangeRefused) for what CEL cannot see: sampler settings are a free-form object whose
#: fields are invisible to CEL on the API server.
_IMMUTABLE: Final = (
    "cannot change on a live job: the study's trials depend on it; delete and re-create the "
    "TuningJob (or use a new name) to start a fresh study"
)


def _same_optional(field: str) -> str:
    return f"has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})"


def _multi_objective_samplers() -> list[str]:
    from openautoglm.samplers import SAMPLERS

    return sorted(n for n, e in SAMPLERS.items() if e.multi_objective)


def _none_starts_with(var: str, prefixes: tuple[str, ...]) -> str:
    return " && ".join(f"!{var}.startsWith('{p}')" for p in prefixes)


def _cel_string(text: str) -> str:
    """``text`` as a single-quoted CEL string literal (a regex's backslashes kept)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _cel_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def _task_rules() -> list[dict[str, str]]:
    """What a built-in task would refuse at its first trial, refused at admission: objective and
    additional metrics it never reports, numeric ranges outside its hyperparameters' bounds,
    choices it does not know, a float range for an integer hyperparameter. (Numeric choices and
    fixed values are mixed scalars, which CEL cannot order against a bound: validate checks them.)
    """
    from openautoglm_trial.tasks import TASKS

    rules: list[dict[str, str]] = []
    for task in TASKS.values():
        when = f"!has(self.trial.task) || self.trial.task != '{task.name}' || "
        reported = _cel_list(list(task.metrics))
        rules.append(
            _rule(
                when + f"(has(self.objective.metrics) ? self.objective.metrics.all(m, m.metric in {reported}) "
                f": !has(self.objective.metric) || self.objective.metric in {reported})",
                f"the {task.name} task reports only {', '.join(task.metrics)}",
                ".objective",
            )
        )
        rules.append(
            _rule(
                when
                + f"!has(self.objective.additionalMetrics) || self.objective.additionalMetrics.all(m, m in {reported})",
                f"the {task.name} task reports only {', '.join(task.metrics)}",
                ".objective.additionalMetrics",
            )
        )
        for h in task.hyperparameters:
            checks = []
            if h.minimum is not None:
                checks.append(f"(!has(p.low) || p.low >= {float(h.minimum)!r})")
            if h.maximum is not None:
                checks.append(f"(!has(p.high) || p.high <= {float(h.maximum)!r})")
            if h.kind == "int":
                checks.append("p.type != 'float'")
            if h.kind == "str":
                checks.append("(p.type != 'float' && p.type != 'int')")
                if h.choices is not None:
                    checks.append(f"(!has(p.choices) || p.choices.all(c, c in {_cel_list(list(h.choices))}))")
            if not checks:
                continue
            bounds = " to ".join(str(v) for v in (h.minimum, h.maximum) if v is not None)
            what = (
                f"one of {', '.join(h.choices)}"
                if h.choices
                else f"{h.kind} values"
                + (
                    f" from {bounds}"
                    if h.minimum is not None and h.maximum is not None
                    else f" >= {h.minimum}"
                    if h.minimum is not None
                    else ""
                )
            )
            rules.append(
                _rule(
                    when + f"self.parameters.all(p, p.name != '{h.name}' || ({' && '.join(checks)}))",
                    f"{h.name}: the {task.name} task accepts {what}",
                    ".parameters",
                )
            )
    return rules


def _security_rules(*, pod: bool) -> list[dict[str, str]]:
    """The restricted Pod Security Standard on a pod's or a container's securityContext (as podtemplate)."""
    pss = f"({pt.PSS})"
    rules = [
        _rule("!has(self.runAsNonRoot) || self.runAsNonRoot", f"must not be false {pss}", ".runAsNonRoot"),
        _rule("!has(self.runAsUser) || self.runAsUser != 0", f"must not be 0 {pss}", ".runAsUser"),
        _rule(
            f"!has(self.seccompProfile) || self.seccompProfile.type in {_cel_list(pt.ALLOWED_SECCOMP)}",
            f"must be {' or '.join(pt.ALLOWED_SECCOMP)} {pss}",
            ".seccompProfile.type",
        ),
        _rule(
            f"!has(self.appArmorProfile) || self.appArmorProfile.type in {_cel_list(pt.ALLOWED_APPARMOR)}",
            f"must be {' or '.join(pt.ALLOWED_APPARMOR)} {pss}",
            ".appArmorProfile.type",
        ),
        _rule(
            "!has(self.seLinuxOptions) || !has(self.seLinuxOptions.type) || self.seLinuxOptions.type in "
            f"{_cel_list(pt.ALLOWED_SELINUX_TYPES)}",
            f"not an allowed SELinux type {pss}",
            ".seLinuxOptions.type",
        ),
        *(
            _rule(
                f"!has(self.seLinuxOptions) || !has(self.seLinuxOptions.{k}) || self.seLinuxOptions.{k} == ''",
                f"must not be set {pss}",
                f".seLinuxOptions.{k}",
                _FORBIDDEN,
            )
            for k in ("user", "role")
        ),
        _rule(
            "!has(self.windowsOptions) || !has(self.windowsOptions.hostProcess) || !self.windowsOptions.hostProcess",
            f"must not be true {pss}",
            ".windowsOptions.hostProcess",
        ),
    ]
    if pod:
        return rules + [
            _rule(
                f"!has(self.sysctls) || self.sysctls.all(s, s.name in {_cel_list(pt.SAFE_SYSCTLS)})",
                f"only safe sysctls {pss}: {', '.join(pt.SAFE_SYSCTLS)}",
                ".sysctls",
            )
        ]
    return rules + [
        _rule("!has(self.privileged) || !self.privileged", f"must not be true {pss}", ".privileged"),
        _rule(
            "!has(self.allowPrivilegeEscalation) || !self.allowPrivilegeEscalation",
            f"must be false {pss}",
            ".allowPrivilegeEscalation",
        ),
        _rule(
            f"!has(self.procMount) || self.procMount in {_cel_list(pt.ALLOWED_PROC_MOUNT)}",
            f"must be Default {pss}",
            ".procMount",
        ),
        _rule(
            "!has(self.capabilities) || !has(self.capabilities.add) || self.capabilities.add.all(c, c in "
            f"{_cel_list(pt.ALLOWED_CAPABILITIES)})",
            f"only {', '.join(pt.ALLOWED_CAPABILITIES)} may be added {pss}",
            ".capabilities.add",
        ),
        _rule(
            "!has(self.capabilities) || !has(self.capabilities.drop) || 'ALL' in self.capabilities.drop",
            f"must include ALL {pss}",
            ".capabilities.drop",
        ),
    ]


def _worker_rules() -> list[dict[str, str]]:
    """What the worker container of a template may not set (as podtemplate._worker_problems)."""
    worker = f"self.name != '{pt.WORKER_CONTAINER}'"
    container = podschema.shared_schema()["properties"]["spec"]["properties"]["containers"]["items"]
    owned = [f for f in container["properties"] if f not in pt.WORKER_FIELDS]
    env = _none_starts_with("e.name", pt.RESERVED_ENV_PREFIXES) + "".join(
        f" && e.name != '{n}'" for n in pt.RESERVED_ENV
    )
    mounts = [p for path in pt.RESERVED_MOUNT_PATHS for p in (path, path + "/")]
    return [
        *(
            _rule(
                f"{worker} || !has(self.{f})",
                pt.OWNED_WORKER_FIELDS.get(f, f"set by the operator in the {pt.WORKER_CONTAINER} container"),
                f".{f}",
                _FORBIDDEN,
            )
            for f in owned
        ),
        _rule(
            f"{worker} || !has(self.env) || self.env.all(e, {env})",
            "OPENAUTOGLM_*, HOROVOD_* and HOME are set by the operator in the worker container",
            ".env",
        ),
        _rule(
            f"{worker} || !has(self.envFrom) || self.envFrom.all(f, !has(f.prefix) || "
            f"({_none_starts_with('f.prefix', pt.RESERVED_ENV_PREFIXES)}))",
            "a prefix OPENAUTOGLM_* or HOROVOD_* is the trial contract's",
            ".envFrom",
        ),
        _rule(
            f"{worker} || !has(self.volumeMounts) || self.volumeMounts.all(m, !(m.mountPath in {_cel_list(mounts)}))",
            f"{', '.join(pt.RESERVED_MOUNT_PATHS)} are the operator's mounts in the worker container",
            ".volumeMounts",
        ),
        _rule(
            f"self.name == '{pt.WORKER_CONTAINER}' || !has(self.restartPolicy)",
            "only for init containers (restartPolicy: Always makes a sidecar)",
            ".restartPolicy",
            _FORBIDDEN,
        ),
    ]


def pod_template_rules() -> dict[str, list[dict[str, str]]]:
    """CEL rules of ``spec.trial.podTemplate``: owned fields and restricted Pod Security (see podtemplate)."""
    p, pss = POD_TEMPLATE, f"({pt.PSS})"
    reserved_volume = _rule(
        f"!has(self.volumeMounts) || self.volumeMounts.all(m, !m.name.startsWith('{pt.RESERVED_VOLUME_PREFIX}'))",
        f"volumes named {pt.RESERVED_VOLUME_PREFIX}* are the operator's",
        ".volumeMounts",
    )
    volume = podschema.shared_schema()["properties"]["spec"]["properties"]["volumes"]["items"]
    forbidden_sources = [k for k in volume["properties"] if k != "name" and k not in pt.ALLOWED_VOLUME_SOURCES]
    rules: dict[str, list[dict[str, str]]] = {
        f"{p}.metadata.labels": [
            _rule(
                f"self.all(k, {_none_starts_with('k', pt.RESERVED_LABEL_PREFIXES)})",
                "label keys " + ", ".join(x + "*" for x in pt.RESERVED_LABEL_PREFIXES) + " are set by the operator",
            ),
        ],
        f"{p}.metadata.annotations": [
            _rule(
                f"self.all(k, !k.startsWith('{pt.APPARMOR_ANNOTATION}') || self[k] == 'runtime/default'"
                " || self[k].startsWith('localhost/'))",
                f"AppArmor profiles must be runtime/default or localhost/* {pss}",
            ),
        ],
        f"{p}.spec": [
            *(_rule(f"!has(self.{f})", why, f".{f}", _FORBIDDEN) for f, why in pt.OWNED_POD_FIELDS.items()),
            *(_rule(f"!has(self.{f}) || !self.{f}", f"must not be true {pss}", f".{f}") for f in pt.HOST_NAMESPACES),
        ],
        f"{p}.spec.securityContext": _security_rules(pod=True),
        f"{p}.spec.containers[]": [*_worker_rules(), reserved_volume],
        f"{p}.spec.initContainers[]": [
            _rule(
                f"self.name != '{pt.WORKER_CONTAINER}'",
                f"'{pt.WORKER_CONTAINER}' is the trial container: name an init container otherwise",
                ".name",
            ),
            _rule(
                "!has(self.restartPolicy) || self.restartPolicy == 'Always'",
                "must be Always (a sidecar) or unset (runs to completion first)",
                ".restartPolicy",
            ),
            reserved_volume,
        ],
        f"{p}.spec.volumes[]": [
            *(
                _rule(
                    f"!has(self.{k})",
                    f"{k} volumes are not allowed {pss}; allowed: {', '.join(pt.ALLOWED_VOLUME_SOURCES)}",
                    f".{k}",
                    _FORBIDDEN,
                )
                for k in forbidden_sources
            ),
            _rule(
                f"!self.name.startsWith('{pt.RESERVED_VOLUME_PREFIX}')",
                f"volumes named {pt.RESERVED_VOLUME_PREFIX}* are the operator's",
                ".name",
            ),
        ],
    }
    for lst in ("containers", "initContainers"):
        rules[f"{p}.spec.{lst}[].securityContext"] = _security_rules(pod=False)
        rules[f"{p}.spec.{lst}[].ports[]"] = [
            _rule("!has(self.hostPort) || self.hostPort == 0", f"must not be set {pss}", ".hostPort"),
        ]
    return rules


_EXTENDED: Final = "k.contains('/') && !k.startsWith('kubernetes.io/') && !k.startsWith('requests.')"
_QUANTITIES: Final = "isQuantity(self.requests[k]) && isQuantity(self.limits[k])"


#: CEL rules (x-kubernetes-validations) for what the schema cannot say, mirroring the model
#: validators of spec.py. Every rule guards optional fields with has(); numbers of a ``type:
#: number`` field are doubles in CEL, hence the ``0.0`` literals.
RULES: Final[dict[str, list[dict[str, str]]]] = {
    "": [
        _rule(
            f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
            f"must be at most {MAX_NAME_LENGTH} characters (it prefixes the trial pods' names)",
            ".metadata.name",
        ),
        _rule(
            f"self.metadata.name.matches('{NAME_RE.pattern}')",
            "must be a DNS-1035 label: lower-case letters, digits and '-', starting with a letter",
            ".metadata.name",
        ),
    ],
    "spec": [
        _rule(
            "!has(self.objective.metrics) || !has(self.earlyStopping) || !has(self.earlyStopping.pruner)"
            " || self.earlyStopping.pruner == 'none'",
            "pruning supports a single objective only; use none with several objectives",
            ".earlyStopping.pruner",
        ),
        _rule(
            "!has(self.objective.metrics) || !has(self.algorithm) || !has(self.algorithm.sampler)"
            f" || self.algorithm.sampler in {_multi_objective_samplers()}",
            "handles a single objective; with several objectives use one of " + ", ".join(_multi_objective_samplers()),
            ".algorithm.sampler",
        ),
        _rule(
            "self.parameters.all(p, !has(p.when) || p.when.all(k, self.parameters.exists(q, q.name == k"
            " && (q.type == 'categorical' || q.type == 'fixed'))))",
            "every key of a parameter's when must name a categorical or fixed parameter",
            ".parameters",
        ),
        _rule(
            "!has(self.warmStart) || self.warmStart.all(w, w.params.all(k, self.parameters.exists(p, p.name == k)))",
            "warm-start params must name parameters of the search space",
            ".warmStart",
        ),
        _rule(
            "!has(self.warmStart) || !has(self.algorithm) || !has(self.algorithm.sampler)"
            " || self.algorithm.sampler != 'grid'"
            " || self.warmStart.all(w, self.parameters.all(p, p.type == 'fixed' || p.name in w.params))",
            "the grid sampler needs every parameter in each warm-start entry",
            ".warmStart",
        ),
        _rule(
            "!has(self.algorithm) || !has(self.algorithm.startFromDefaults) || !self.algorithm.startFromDefaults"
            " || !has(self.algorithm.sampler) || self.algorithm.sampler != 'grid'",
            "not with the grid sampler: it visits every point in its own order",
            ".algorithm.startFromDefaults",
            _FORBIDDEN,
        ),
        _rule(
            "!has(self.algorithm) || !has(self.algorithm.startFromDefaults) || !self.algorithm.startFromDefaults"
            " || has(self.trial.task)",
            "only for a built-in task (trial.task): a program's defaults are not known here; give them as a "
            "warmStart entry",
            ".algorithm.startFromDefaults",
            _FORBIDDEN,
        ),
        _rule(
            "!has(self.metrics) || !has(self.metrics.collector) || !has(self.trial.task)",
            "only for trial.command: built-in tasks report their metrics themselves",
            ".metrics.collector",
            _FORBIDDEN,
        ),
        *_task_rules(),
        _rule(
            "self.parameters.size() == oldSelf.parameters.size()"
            " && self.parameters.all(p, oldSelf.parameters.exists(q, q.name == p.name))",
            f"parameters {_IMMUTABLE}",
            ".parameters",
        ),
    ],
    "spec.objective": [
        *(
            _rule(_same_optional(field), f"{field} {_IMMUTABLE}", f".{field}")
            for field in ("metric", "direction", "metrics")
        ),
        _rule(
            "has(self.metrics) || has(self.metric)",
            "the name of the metric the trial exports (or metrics: a list of {metric, direction})",
            ".metric",
            _REQUIRED,
        ),
        _rule("has(self.metrics) || has(self.direction)", "maximize or minimize", ".direction", _REQUIRED),
        _rule(
            "!has(self.metrics) || (!has(self.metric) && !has(self.direction))",
            "give either metric/direction or metrics (a list of objectives), not both",
            ".metric",
            _FORBIDDEN,
        ),
        _rule(
            "!has(self.metrics) || !has(self.target)",
            "a target applies to a single objective only",
            ".target",
            _FORBIDDEN,
        ),
        _rule(
            "!has(self.additionalMetrics) || self.additionalMetrics.all(m, (!has(self.metric) || m != self.metric)"
            " && (!has(self.metrics) || !self.metrics.exists(o, o.metric == m)))",
            "must not name an objective metric (it is recorded already)",
            ".additionalMetrics",
        ),
        _rule(
            "!has(self.metricStrategies) || self.metricStrategies.all(k, (has(self.metric) && k == self.metric)"
            " || (has(self.metrics) && self.metrics.exists(o, o.metric == k))"
            " || (has(self.additionalMetrics) && k in self.additionalMetrics))",
            "every key must name an objective metric or one of additionalMetrics",
            ".metricStrategies",
        ),
    ],
    "spec.budget": [
        _rule(
            "!has(self.parallelism) || !has(self.maxTrials) || self.parallelism <= self.maxTrials",
            "must be <= maxTrials",
            ".parallelism",
        ),
    ],
    "spec.parameters[]": [
        _rule("self == oldSelf", f"a parameter {_IMMUTABLE}"),
        _rule(f"!{_NUMERIC} || has(self.low)", "required for a float or int parameter", ".low", _REQUIRED),
        _rule(f"!{_NUMERIC} || has(self.high)", "required for a float or int parameter", ".high", _REQUIRED),
        _rule("!has(self.low) || !has(self.high) || self.low < self.high", "must be greater than low", ".high"),
        _rule("!has(self.log) || !self.log || !has(self.low) || self.low > 0.0", "must be > 0 on a log scale", ".low"),
        _rule(
            "!has(self.step) || !has(self.log) || !self.log || (self.type == 'int' && self.step == 1.0)",
            "cannot be combined with log: true",
            ".step",
        ),
        _rule(
            "!has(self.step) || !has(self.low) || !has(self.high) || self.step <= self.high - self.low",
            "must be <= high - low",
            ".step",
        ),
        _rule(
            "self.type != 'int' || !has(self.low) || self.low == double(int(self.low))",
            "must be an integer for an int parameter",
            ".low",
        ),
        _rule(
            "self.type != 'int' || !has(self.high) || self.high == double(int(self.high))",
            "must be an integer for an int parameter",
            ".high",
        ),
        _rule(
            "self.type != 'int' || !has(self.step) || self.step == double(int(self.step))",
            "must be an integer for an int parameter",
            ".step",
        ),
        _rule(
            f"{_NUMERIC} || (!has(self.low) && !has(self.high) && !has(self.step) && (!has(self.log) || !self.log))",
            "low, high, step and log are only for float and int parameters",
            None,
            _FORBIDDEN,
        ),
        _rule(
            "self.type != 'categorical' || has(self.choices)",
            "required for a categorical parameter: a non-empty list",
            ".choices",
            _REQUIRED,
        ),
        _rule(
            "self.type == 'categorical' || !has(self.choices)",
            "only for categorical parameters",
            ".choices",
            _FORBIDDEN,
        ),
        _rule("self.type != 'fixed' || has(self.value)", "required for a fixed parameter", ".value", _REQUIRED),
        _rule("self.type == 'fixed' || !has(self.value)", "only for fixed parameters", ".value", _FORBIDDEN),
    ],
    "spec.parameters[].choices": [
        _rule("self.all(c, type(c) != map && type(c) != list)", "choices must be scalars (strings, numbers, booleans)"),
    ],
    "spec.parameters[].value": [_rule(_SCALAR, "must be a scalar (a string, number or boolean)")],
    "spec.parameters[].when": [
        _rule("self.all(k, type(self[k]) != map)", "values must be a scalar or a list of scalars"),
    ],
    "spec.warmStart[].params{}": [_rule(_SCALAR, "must be a scalar (a string, number or boolean)")],
    "spec.algorithm": [_rule(_same_optional("sampler"), f"sampler {_IMMUTABLE}", ".sampler")],
    "spec.trial": [
        _rule("self.workers == oldSelf.workers", f"workers {_IMMUTABLE}", ".workers"),
        _rule(
            "has(self.task) != has(self.command)",
            "give exactly one of task (a built-in task) or command (your own program)",
            ".task",
        ),
        _rule(
            "!has(self.launcher) || self.launcher != 'torchrun'"
            f" || self.env.all(e, !(e.name in {_cel_list(TORCHRUN_ENV)})"
            f" && !e.name.startsWith('{TORCHELASTIC_PREFIX}'))",
            "MASTER_ADDR, RANK, WORLD_SIZE ... (and TORCHELASTIC_*) are set by the torchrun launcher",
            ".env",
        ),
        # In a cluster only (the CRD's side): a pod's own disk dies with it, so checkpoints need a claim;
        # openautoglm tune keeps them in its work directory and needs none.
        _rule(
            "!has(self.checkpoint) || has(self.checkpoint.claim)",
            "a PersistentVolumeClaim in the job's namespace: checkpoints must outlive the trial's pods",
            ".checkpoint.claim",
            _REQUIRED,
        ),
    ],
    "spec.trial.env[]": [
        _rule(
            _none_starts_with("self.name", pt.RESERVED_ENV_PREFIXES),
            "OPENAUTOGLM_* and HOROVOD_* are set by the operator",
            ".name",
        ),
    ],
    # Kubernetes CEL's quantity library (1.29+) compares 500m with 1 as the API server does.
    "spec.trial.resources": [
        _rule(
            f"!has(self.requests) || !has(self.limits) || self.limits.all(k, !(k in self.requests) || !({_QUANTITIES})"
            " || quantity(self.requests[k]).compareTo(quantity(self.limits[k])) <= 0)",
            "every limit must be >= its request",
            ".limits",
        ),
        _rule(
            f"!has(self.requests) || self.requests.all(k, !({_EXTENDED}) || (has(self.limits) && k in self.limits))",
            "an extended resource (e.g. nvidia.com/gpu) needs a limit",
            ".limits",
            _REQUIRED,
        ),
        _rule(
            f"!has(self.requests) || !has(self.limits) || self.requests.all(k, !({_EXTENDED}) || !(k in self.limits)"
            f" || !({_QUANTITIES}) || quantity(self.requests[k]).compareTo(quantity(self.limits[k])) == 0)",
            "an extended resource (e.g. nvidia.com/gpu) cannot be overcommitted: its request must equal its limit",
            ".requests",
        ),
    ],
    "spec.metrics": [
        _rule(
            f"!has(self.collector) || !has(self.collector.port) || (self.collector.port != {DEFAULT_RENDEZVOUS_PORT}"
            " && (!has(self.port) || self.collector.port != self.port))",
            f"taken by the trial supervisor (the metrics port or the rendezvous port {DEFAULT_RENDEZVOUS_PORT})",
            ".collector.port",
        ),
    ],
    "spec.metrics.collector": [
        _rule(
            "!has(self.filter) || !has(self.kind) || self.kind == 'stdout'"
            " || (self.kind == 'file' && (!has(self.format) || self.format == 'text'))",
            "only for the stdout collector and text files",
            ".filter",
            _FORBIDDEN,
        ),
        _rule(
            "!has(self.kind) || self.kind != 'file' || has(self.path)",
            "required for the file collector: the file your program writes",
            ".path",
            _REQUIRED,
        ),
        _rule(
            "!has(self.path) || (has(self.kind) && self.kind == 'file')",
            "only for the file collector",
            ".path",
            _FORBIDDEN,
        ),
        _rule(
            "!has(self.kind) || self.kind != 'prometheus' || has(self.port)",
            "required for the prometheus collector: the port of your program's /metrics",
            ".port",
            _REQUIRED,
        ),
        _rule(
            "!has(self.port) || (has(self.kind) && self.kind == 'prometheus')",
            "only for the prometheus collector",
            ".port",
            _FORBIDDEN,
        ),
    ],
    "spec.storage": [
        _rule(
            "!has(self.journal) || !has(self.postgres)",
            "choose one storage: journal or postgres",
            ".postgres",
            _FORBIDDEN,
        ),
    ],
    "spec.storage.postgres": [
        _rule("has(self.url) != has(self.secretRef)", "give exactly one of url or secretRef", ".url"),
        _rule(
            f"!has(self.url) || !self.url.matches({_cel_string(URL_PASSWORD_RE.pattern)})",
            "holds a password, which everyone who may read this TuningJob would see: put the URL in a Secret "
            "and name it in secretRef",
            ".url",
        ),
    ],
    # The template language of engine/metrics.py (openautoglm.promql): four placeholders, no str.format.
    "spec.metrics.prometheus": [
        _rule(
            f"!has(self.query) || !self.query.matches({_cel_string(promql.UNKNOWN_PLACEHOLDER_RE)})",
            "unknown placeholder: a template may use only " + ", ".join("{" + p + "}" for p in promql.PLACEHOLDERS),
            ".query",
        ),
        _rule(
            "!has(self.query) || (!self.query.contains('{{') && !self.query.contains('}}'))",
            "'{{' and '}}' are not PromQL; write single braces (placeholders are not str.format)",
            ".query",
        ),
    ],
    **pod_template_rules(),
}
