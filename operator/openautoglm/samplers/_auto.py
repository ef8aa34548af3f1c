"""The ``auto`` sampler, what a single-objective job gets when it names none.

Gaussian-process BO while it pays, TPE where it does not:

* **GP** (Optuna's GPSampler: Matérn-5/2 kernel, logEI, qLogEI over running trials) while the
  study has fewer than ``gp_trials`` complete trials and the search space has no conditional
  (``when``) parameters. On a small budget a GP learns a trend from few points and follows it
  to the edge of a range; on text-lm's 14-trial benchmark it matched the manual procedure in
  3 of 5 seeds where TPE reached it in none (bench/results/sample_efficiency.md).
* **TPE** (as registered: multivariate, grouped, constant liar in parallel) once the study has
  ``gp_trials`` complete trials, since a GP's fit grows with the cube of the trials (250 is
  where Optuna's own AutoSampler leaves GP); and from the start for conditional spaces, where a
  GP would sample the conditional parameters at random and TPE's ``group`` models them.

The choice depends only on the spec's parameters (fingerprinted: fixed for the study's life)
and the study's own trials, so an operator restart or a budget edit picks the same sampler; it
is made per trial in ``before_trial`` and kept in the trial's user attribute ``sampled_by``.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

#: Trial user attribute naming the sampler that chose the trial's parameters.
SAMPLED_BY = "sampled_by"
#: Complete trials after which the GP hands over to TPE (Optuna's AutoSampler uses 250 too).
GP_TRIALS = 250


class AutoSampler(optuna.samplers.BaseSampler):
    """Delegates each trial to ``gp`` or ``tpe`` (see the module docstring)."""

    def __init__(
        self,
        *,
        gp: optuna.samplers.BaseSampler | None,
        tpe: optuna.samplers.BaseSampler,
        gp_trials: int = GP_TRIALS,
    ) -> None:
        # gp is None where the search space has conditional parameters or GP's packages are missing.
        self._delegates = {"tpe": tpe, **({"gp": gp} if gp is not None else {})}
        self._gp_trials = gp_trials
        # The operator asks from a pool of threads: each keeps the delegate of the trial it samples.
        self._local = threading.local()

    @property
    def n_startup_trials(self) -> int | None:
        """Random trials the first delegate starts with (for reports)."""
        return getattr(self._delegates.get("gp", self._delegates["tpe"]), "_n_startup_trials", None)

    def choose(self, study: Study) -> str:
        """Name of the delegate for the study's next trial."""
        if "gp" not in self._delegates:
            return "tpe"
        complete = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True)
        return "gp" if len(complete) < self._gp_trials else "tpe"

    @property
    def _current(self) -> optuna.samplers.BaseSampler:
        return self._delegates[getattr(self._local, "name", None) or "tpe"]

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        # Chosen here, not in infer_relative_search_space: the same delegate must see the trial
        # from before_trial through sample_independent.
        self._local.name = self.choose(study)
        study._storage.set_trial_user_attr(trial._trial_id, SAMPLED_BY, self._local.name)
        self._current.before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._current.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._current.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        # A tell may come from another thread than the ask: go by what the trial records.
        name = trial.user_attrs.get(SAMPLED_BY, "tpe")
        self._delegates.get(name, self._delegates["tpe"]).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        for sampler in self._delegates.values():
            sampler.reseed_rng()


def gp_available() -> bool:
    """Whether GPSampler's packages (torch, scipy) are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "scipy"))
