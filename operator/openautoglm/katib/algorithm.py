"""``spec.algorithm`` and ``spec.earlyStopping``: Katib's suggestion services as Optuna's samplers and pruners.

Each Katib algorithm is a row of :data:`SAMPLERS`: the sampler it becomes and, per setting Katib
accepts, the Optuna keyword, how its value parses and where it must lie (or the note or refusal it
gets). The reference is Katib's suggestion services at commit 33c8ff4: Optuna's for ``tpe``,
``multivariate-tpe``, ``cmaes`` and ``random``; skopt's for ``bayesianoptimization``; goptuna's for
``sobol``; hyperopt's ``tpe`` settings are understood too (``n_EI_candidates``, ``gamma``).
``hyperband`` becomes random sampling with Optuna's HyperbandPruner, ``medianstop`` the median pruner.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

from openautoglm.katib.findings import Findings
from openautoglm.katib.values import UNBOUNDED, Bound, integer, real, truncated


@dataclasses.dataclass(frozen=True)
class Number:
    """A numeric setting: its value, parsed and bounded, becomes Optuna's ``keyword``."""

    keyword: str
    parse: Callable[[Any], Any]
    bound: Bound = UNBOUNDED
    #: The value goes to ``spec.algorithm`` itself (the seed), not to its ``settings``.
    top_level: bool = False


@dataclasses.dataclass(frozen=True)
class Choice:
    """A setting whose values are either dropped with a note (``accepted``: value -> note or None)
    or refused; ``refusal`` and the notes are formats of ``key`` and ``value``."""

    accepted: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    refusal: str = ""
    #: The note for any value (a setting whose meaning the sampler decides itself).
    any_value: str | None = None


@dataclasses.dataclass(frozen=True)
class Refused:
    """A setting with no equivalent whatever its value."""

    reason: str


@dataclasses.dataclass(frozen=True)
class Text:
    """A setting kept as text (hyperband's ``resource_name``)."""


Setting = Number | Choice | Refused | Text


@dataclasses.dataclass(frozen=True)
class Sampler:
    """What one Katib algorithm becomes."""

    sampler: str
    settings: Mapping[str, Setting]
    #: Optuna keywords Katib's service always passes (``constant_liar=True`` ...).
    constants: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    unknown: str = "unknown setting"
    #: Notes on how the search space meets this sampler (a grid without steps ...).
    remarks: Callable[[Mapping[str, dict[str, Any]], Findings], None] | None = None


def _grid_remarks(params: Mapping[str, dict[str, Any]], findings: Findings) -> None:
    no_step = [p["name"] for p in params.values() if p["type"] == "float" and "step" not in p]
    if no_step:
        findings.note(
            f"grid: {no_step} have no step; Katib's grid refuses that, the grid sampler tries "
            f"5 evenly spaced values (algorithm.settings.points)"
        )


def _skopt_remarks(params: Mapping[str, dict[str, Any]], findings: Findings) -> None:
    doubles = [p["name"] for p in params.values() if p["type"] == "float" and not p.get("log")]
    if doubles:
        findings.note(
            f"bayesianoptimization: Katib's skopt service samples every double on a log scale whatever "
            f"its distribution; {doubles} keep the declared (uniform) scale (add log: true to reproduce)"
        )


_SEED: Final = Number("seed", integer, Bound(0, 2**32 - 1, shown="[0, 2^32 - 1]"), top_level=True)
_ONLY_SEED: Final = {"random_state": _SEED}
_TPE: Final[Mapping[str, Setting]] = {
    "random_state": _SEED,
    "n_startup_trials": Number("n_startup_trials", integer, Bound(low=0)),
    "n_ei_candidates": Number("n_ei_candidates", integer, Bound(low=1)),
    "n_EI_candidates": Number("n_ei_candidates", integer, Bound(low=1)),  # hyperopt's spelling
    "prior_weight": Number("prior_weight", real, Bound(above=0)),
    "gamma": Refused(
        "hyperopt's gamma (a fraction of the trials) has no equivalent: Optuna's TPE "
        "gamma is a function of the number of trials and not a setting"
    ),
}
_ACQ_FUNC_NOTE: Final = "bayesianoptimization acq_func {value}: the gp sampler uses (log) expected improvement"

#: Katib algorithm name -> what it becomes (Katib's Optuna service: TPESampler(multivariate=...,
#: constant_liar=True, **settings); skopt's gp_minimize; goptuna's sobol).
SAMPLERS: Final[Mapping[str, Sampler]] = {
    "random": Sampler("random", _ONLY_SEED, unknown="no equivalent (Katib accepts only random_state)"),
    "grid": Sampler(
        "grid", _ONLY_SEED, unknown="no equivalent (Katib accepts only random_state)", remarks=_grid_remarks
    ),
    "tpe": Sampler("tpe", _TPE, constants={"multivariate": False, "constant_liar": True}),
    "multivariate-tpe": Sampler("tpe", _TPE, constants={"multivariate": True, "constant_liar": True}),
    "bayesianoptimization": Sampler(
        "gp",
        {
            "random_state": _SEED,
            "n_initial_points": Number("n_startup_trials", integer, Bound(low=0)),
            "base_estimator": Choice({"GP": None}, "{value!r}: only a Gaussian process (GP) is available"),
            "acq_func": Choice(
                {"gp_hedge": _ACQ_FUNC_NOTE, "EI": _ACQ_FUNC_NOTE},
                "{value!r}: the gp sampler's acquisition function is (log) expected improvement",
            ),
            "acq_optimizer": Choice(
                any_value="bayesianoptimization acq_optimizer {value!r} dropped: the gp sampler optimises its "
                "acquisition function itself"
            ),
        },
        remarks=_skopt_remarks,
    ),
    "cmaes": Sampler(
        "cmaes",
        {
            "random_state": _SEED,
            "sigma": Number("sigma0", real, Bound(above=0)),
            # Optuna >= 4.4 accepts restart_strategy but ignores it (FutureWarning).
            "restart_strategy": Choice(
                {
                    **dict.fromkeys(
                        ("ipop", "bipop"),
                        "cmaes restart_strategy {value} dropped: Optuna's CMA-ES no longer restarts "
                        "(since 4.4); restarts only follow a converged search, rare within a tuning budget",
                    ),
                    **dict.fromkeys(("none", "None")),
                },
                "{value!r}: ipop, bipop or none",
            ),
        },
    ),
    "sobol": Sampler(
        "qmc", _ONLY_SEED, constants={"qmc_type": "sobol"}, unknown="unknown setting (Katib's sobol has none)"
    ),
}
#: Algorithms with no equivalent, and why.
_NO_EQUIVALENT: Final = {
    "pbt": "population-based training (trials that resume from each other's checkpoints)",
    "enas": "neural architecture search",
    "darts": "neural architecture search",
}
_HYPERBAND: Final[Mapping[str, Setting]] = {
    "eta": Number("reduction_factor", truncated, Bound(low=2)),
    "r_l": Number("max_resource", real, Bound(low=1)),
    "resource_name": Text(),
    **dict.fromkeys(
        ("b_l", "n", "r", "s_max", "current_s", "current_i", "evaluating_trials"),
        Choice(any_value="hyperband setting {key} dropped: Katib's bracket state; the pruner computes its brackets"),
    ),
}
_MEDIANSTOP: Final[Mapping[str, Setting]] = {
    "min_trials_required": Number("n_startup_trials", integer, Bound(low=1)),  # the pruner's keywords
    "start_step": Number("n_warmup_steps", integer, Bound(low=1)),
}
#: Katib's median-stop service defaults.
_MEDIANSTOP_DEFAULTS: Final = {"min_trials_required": 3, "start_step": 4}


def read_settings(
    items: list[Any], table: Mapping[str, Setting], algorithm: str, path: str, findings: Findings, unknown: str
) -> dict[str, tuple[int, Any]]:
    """``algorithmSettings [{name, value}]`` read by ``table``: Katib key -> (index, value) of the
    settings that map (numbers parsed); every other one reported at its index, or noted."""
    out: dict[str, tuple[int, Any]] = {}
    for i, s in enumerate(items):
        key, value = str((s or {}).get("name")), (s or {}).get("value")
        where, what = f"{path}[{i}]", f"setting {key!r} of {algorithm}: "
        entry = table.get(key)
        if entry is None:
            findings.miss(where, what + unknown)
        elif isinstance(entry, Refused):
            findings.miss(where, what + entry.reason)
        elif isinstance(entry, Text):
            out[key] = (i, str(value))
        elif isinstance(entry, Choice):
            if entry.any_value is not None:
                findings.note(entry.any_value.format(key=key, value=value))
            elif isinstance(value, str) and value in entry.accepted:
                note = entry.accepted[value]
                if note:
                    findings.note(note.format(key=key, value=value))
            else:
                findings.miss(where, what + entry.refusal.format(key=key, value=value))
        else:
            v = findings.number(where, value, entry.parse, entry.bound, what=what)
            if v is not None:
                out[key] = (i, v)
    return out


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """What ``spec.algorithm`` becomes: the TuningJob's algorithm, and for hyperband its pruner,
    ``trial.epochs`` and the resource parameter fixed at ``r_l``."""

    algorithm: dict[str, Any]
    pruner: dict[str, Any] | None = None
    epochs: int | None = None
    fixed: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def algorithm(alg: Any, params: Mapping[str, dict[str, Any]], findings: Findings) -> Algorithm:
    """``spec.algorithm`` given the parameters that map (Katib name -> TuningJob parameter)."""
    path = "spec.algorithm"
    if not isinstance(alg, dict) or not alg.get("algorithmName"):
        findings.miss(f"{path}.algorithmName", "required")
        return Algorithm({})
    name = alg["algorithmName"]
    items = alg.get("algorithmSettings") or []
    if name == "hyperband":
        return _hyperband(items, params, f"{path}.algorithmSettings", findings)
    row = SAMPLERS.get(name)
    if row is None:
        what = _NO_EQUIVALENT.get(name)
        findings.miss(f"{path}.algorithmName", f"{name!r} has no equivalent" + (f" ({what})" if what else ""))
        findings.note(
            f"--lossy: without algorithmName {name}, the TuningJob uses its default sampler auto (a Gaussian "
            "process while the study is small, then TPE)"
        )
        return Algorithm({})
    out: dict[str, Any] = {"sampler": row.sampler}
    keywords = dict(row.constants)
    values = read_settings(items, row.settings, name, f"{path}.algorithmSettings", findings, row.unknown)
    for key, (_, value) in values.items():
        setting = row.settings[key]
        if not isinstance(setting, Number):
            continue
        if setting.top_level:
            out[setting.keyword] = value
        else:
            keywords[setting.keyword] = value
    if row.remarks is not None:
        row.remarks(params, findings)
    if keywords:
        out["settings"] = keywords
    return Algorithm(out)


def _hyperband(items: list[Any], params: Mapping[str, dict[str, Any]], path: str, findings: Findings) -> Algorithm:
    """Katib's hyperband as random sampling + Optuna's HyperbandPruner.

    Katib runs brackets of new trials with growing values of the resource parameter (r_l at
    most); the pruner instead lets every trial run to r_l and stops it at rungs of its
    reported steps. The resource parameter therefore leaves the search space: fixed at r_l.
    """
    values = read_settings(items, _HYPERBAND, "hyperband", path, findings, "unknown setting")
    eta = values["eta"][1] if "eta" in values else 3
    if "r_l" not in values:
        findings.miss(path, "hyperband needs r_l (the maximum resource)")
        return Algorithm({"sampler": "random"})
    r_index, r = values["r_l"]
    r_l = int(round(r))
    if r_l != r:
        findings.note(
            f"hyperband r_l {items[r_index].get('value')} rounded to {r_l} "
            "(the pruner's max_resource is a number of steps)"
        )
    s_max = int(math.log(r_l) / math.log(eta) + 1e-9) if r_l > 1 else 0
    min_resource = max(1, int(round(r_l / eta**s_max)))
    pruner = {
        "pruner": "hyperband",
        "settings": {"min_resource": min_resource, "max_resource": r_l, "reduction_factor": eta},
    }
    result = Algorithm({"sampler": "random"}, pruner=pruner, epochs=r_l)
    if "resource_name" not in values:
        findings.miss(path, "hyperband needs resource_name")
        return result
    index, resource = values["resource_name"]
    p = params.get(resource)
    if p is None:
        findings.miss(f"{path}[{index}]", f"resource_name {resource!r} names no (mappable) parameter")
        return result
    value: Any = r_l if p["type"] in ("int", "fixed") else float(r_l)
    findings.forget_notes(f"parameter {resource!r}: min = max")
    findings.note(
        f"hyperband (eta {eta}, r_l {r_l}) became random sampling with the hyperband pruner "
        f"(min_resource {min_resource}, max_resource {r_l}, reduction_factor {eta}): instead of starting "
        f"new trials with a larger {resource!r}, every trial runs {resource}={r_l} and is stopped at the "
        f"pruner's rungs; the trial must report the objective at every step (epoch), which is the resource"
    )
    findings.note(
        f"parameter {resource!r} (hyperband's resource_name) removed from the search space: fixed at {value} (r_l)"
    )
    fixed = {resource: {"name": resource, "type": "fixed", "value": value}}
    return dataclasses.replace(result, fixed=fixed)


def early_stopping(es: Any, pruner: dict[str, Any] | None, findings: Findings) -> dict[str, Any]:
    """``spec.earlyStopping`` (medianstop), or hyperband's ``pruner`` when there is none."""
    path = "spec.earlyStopping"
    if not es:
        return dict(pruner) if pruner else {}
    name = es.get("algorithmName")
    if name != "medianstop":
        findings.miss(f"{path}.algorithmName", f"{name!r} has no equivalent (medianstop maps to the median pruner)")
        return dict(pruner) if pruner else {}
    if pruner is not None:
        findings.miss(path, "medianstop together with hyperband: a TuningJob has one pruner (hyperband's)")
        return dict(pruner)
    read = read_settings(
        es.get("algorithmSettings") or [],
        _MEDIANSTOP,
        "medianstop",
        f"{path}.algorithmSettings",
        findings,
        "unknown setting",
    )
    values = _MEDIANSTOP_DEFAULTS | {key: value for key, (_, value) in read.items()}
    findings.note(
        f"medianstop (min_trials_required {values['min_trials_required']}, start_step "
        f"{values['start_step']}) became the median pruner (n_startup_trials, n_warmup_steps): Katib stops "
        f"a trial worse than the mean of the completed trials' averages over their first start_step "
        f"values; the median pruner compares with the median of the other trials at the same step"
    )
    return {
        "pruner": "median",
        "settings": {"n_startup_trials": values["min_trials_required"], "n_warmup_steps": values["start_step"]},
    }
