"""The ``policy-gradient`` sampler: REINFORCE with a baseline, one policy per parameter.

The policy is never stored. Each time a value is sampled, it is rebuilt by replaying the
study's finished trials in trial-number order, so it is a pure function of the study
history and the seed: an operator restart, or several engines sharing one study, see the
same policy. The replay is cached per study and only extended while the history grows by
appending; anything else (a lower-numbered trial finishing late) replays from scratch.

Policies, per parameter and distribution:

* categorical, and int with at most 64 (stepped) values: softmax over one logit per value;
* float, and int with more values: a Gaussian over the parameter mapped to [0, 1] (through
  ``log`` for log scales), mean and log-std learned; a draw is reflected into [0, 1], mapped
  back and snapped to the step.

Learning, for each replayed trial that has a reward:

* reward: the objective (negated when minimising), or for a pruned trial its last
  intermediate value; replaced by its mid-rank among the earlier rewards, in [-0.5, 0.5]
  and scaled to unit variance (scale-free, and robust to diverged runs with huge losses);
* advantage: reward minus a per-parameter exponential moving average of earlier rewards
  (the baseline of a conditional parameter only sees trials where it was active);
* update: ``learning_rate * weight * advantage * grad log pi(value)`` plus
  ``learning_rate * entropy_bonus * grad H``. For a Gaussian the gradient is the natural
  one (the plain gradient in the mean grows as 1/std^2 and diverges as the policy
  concentrates), with the standardised value clipped to +-MAX_Z.

Pruned trials count with ``pruned_weight`` (in the update and the baseline): their last
intermediate value is an early, usually pessimistic reading, which is the judgement that
pruned them; with weight 0 they are ignored. Failed trials, and pruned ones with no
intermediate value, are ignored: a failure says more about the cluster (evicted pod, lost
node) than about the hyperparameters. Parameters absent from a trial (conditional ones)
get no update from it; a value stored under another distribution trains another policy.

Draws come from ``numpy.random.Generator`` seeded by (seed, trial number, parameter name),
never from global state; with the same seed and the same finished trials, a trial gets the
same values. Known limits: updates treat every stored value as drawn from the current
policy (no importance weights for start-up, enqueued or concurrently sampled trials), the
density of the reflected Gaussian is taken as the unreflected one, and parameters are
independent (no correlations between them are learned).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import secrets
import threading
import weakref
import zlib
from numbers import Real
from typing import Any, Final

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from openautoglm.samplers._builtin import _startup
from openautoglm.samplers._registry import register
from openautoglm.spec import TuningJobSpec

#: Ints with at most this many values get a categorical policy; wider ones a Gaussian.
MAX_DISCRETE_INT: Final = 64
#: Largest std of a Gaussian policy in [0, 1] space; wider is uniform after reflection anyway.
MAX_STD: Final = 1.0
#: Largest |value - mean| / std used in a Gaussian update. Draws further out are mostly
#: off-policy (start-up draws, stale policies of parallel trials), and unclipped they move
#: the mean far and collapse the std in one step.
MAX_Z: Final = 2.0
#: A rank reward in [-0.5, 0.5] times this has unit variance (uniform distribution).
_UNIT_VARIANCE: Final = math.sqrt(12.0)


def _is_discrete(dist: BaseDistribution) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return True
    if isinstance(dist, IntDistribution):
        return (dist.high - dist.low) // dist.step + 1 <= MAX_DISCRETE_INT
    return False


def _discrete_values(dist: BaseDistribution) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    assert isinstance(dist, IntDistribution)
    return list(range(dist.low, dist.high + 1, dist.step))


def _index_of(dist: BaseDistribution, value: Any) -> int:
    if isinstance(dist, CategoricalDistribution):
        return int(dist.to_internal_repr(value))
    assert isinstance(dist, IntDistribution)
    return (int(value) - dist.low) // dist.step


def _bounds(dist: FloatDistribution | IntDistribution) -> tuple[float, float]:
    """The range that [0, 1] maps onto, in the (log-)transformed space."""
    low, high = float(dist.low), float(dist.high)
    if isinstance(dist, IntDistribution):
        # Half a step beyond each end, so rounding gives the end values their full share.
        low, high = low - 0.5 * dist.step, high + 0.5 * dist.step
    if dist.log:
        return math.log(low), math.log(high)
    return low, high


def _to_unit(dist: FloatDistribution | IntDistribution, value: float) -> float:
    low, high = _bounds(dist)
    if high == low:
        return 0.5
    x = math.log(value) if dist.log else float(value)
    return (x - low) / (high - low)


def _from_unit(dist: FloatDistribution | IntDistribution, u: float) -> float | int:
    low, high = _bounds(dist)
    x = low + u * (high - low)
    if dist.log:
        x = math.exp(x)
    if isinstance(dist, IntDistribution):
        k = round((x - dist.low) / dist.step)
        return int(min(max(dist.low + k * dist.step, dist.low), dist.high))
    if dist.step is not None:
        x = dist.low + round((x - dist.low) / dist.step) * dist.step
    return float(min(max(x, dist.low), dist.high))


def _reflect(u: float) -> float:
    """Fold a real number into [0, 1] by reflecting it at the ends."""
    u = math.fmod(abs(u), 2.0)
    return 2.0 - u if u > 1.0 else u


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


@dataclasses.dataclass
class _Policy:
    """One parameter's policy: ``logits`` (discrete) or ``mean``/``log_std`` (in [0, 1] space)."""

    logits: np.ndarray | None = None
    mean: float = 0.5
    log_std: float = 0.0
    #: Exponential moving average of the rewards of the trials where the parameter was active.
    baseline: float = 0.0


@dataclasses.dataclass
class _Replay:
    """The learning state after replaying ``numbers`` (trial numbers, in order)."""

    numbers: list[int] = dataclasses.field(default_factory=list)
    rewards: list[float] = dataclasses.field(default_factory=list)  # sorted, for ranks
    policies: dict[tuple[str, BaseDistribution], _Policy] = dataclasses.field(default_factory=dict)


class PolicyGradientSampler(optuna.samplers.BaseSampler):
    """REINFORCE with a moving-average baseline over independent per-parameter policies.

    Args:
        learning_rate: Step size of each per-trial update (> 0).
        baseline_decay: Decay of the moving-average baseline, in [0, 1).
        entropy_bonus: Weight of the entropy gradient (>= 0); keeps the policies exploring.
        n_startup_trials: Trials with a reward before the policy is used; until then values
            are drawn uniformly (over the choices, or over the range, log scale if ``log``).
        init_std: Initial std of Gaussian policies, in the parameter range mapped to [0, 1].
        min_std: Floor of that std, in (0, init_std].
        pruned_weight: Weight in [0, 1] of a pruned trial's update (0 ignores pruned trials).
        seed: Seed; same seed and same finished trials give the same suggestions.
    """

    def __init__(
        self,
        *,
        learning_rate: float = 0.3,
        baseline_decay: float = 0.9,
        entropy_bonus: float = 0.01,
        n_startup_trials: int = 5,
        init_std: float = 0.5,
        min_std: float = 0.01,
        pruned_weight: float = 0.5,
        seed: int | None = None,
    ) -> None:
        self.learning_rate = _number("learning_rate", learning_rate, above=0.0)
        self.baseline_decay = _number("baseline_decay", baseline_decay, at_least=0.0, below=1.0)
        self.entropy_bonus = _number("entropy_bonus", entropy_bonus, at_least=0.0)
        if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int):
            raise TypeError(f"n_startup_trials must be an integer, not {n_startup_trials!r}")
        if n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be >= 0, not {n_startup_trials}")
        self.n_startup_trials = n_startup_trials
        self.init_std = _number("init_std", init_std, above=0.0, at_most=MAX_STD)
        self.min_std = _number("min_std", min_std, above=0.0, at_most=self.init_std)
        self.pruned_weight = _number("pruned_weight", pruned_weight, at_least=0.0, at_most=1.0)
        # Without a seed, draw one: suggestions still vary with the trial number.
        self._seed = secrets.randbits(32) if seed is None else int(seed)
        self._lock = threading.Lock()
        self._cache: weakref.WeakKeyDictionary[Any, dict[int, _Replay]] = weakref.WeakKeyDictionary()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"], state["_cache"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._cache = weakref.WeakKeyDictionary()

    def reseed_rng(self) -> None:
        # Draws are seeded by (seed, trial number, parameter), so parallel workers already differ;
        # reseeding would only break reproducibility.
        pass

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        if len(study.directions) > 1:
            raise ValueError(
                f"the policy-gradient sampler handles a single objective; this study has {len(study.directions)}"
            )
        rng = np.random.default_rng([self._seed, trial.number, zlib.crc32(param_name.encode())])
        policy, n_rewarded = self._policy(study, param_name, param_distribution)
        if n_rewarded < self.n_startup_trials:
            return _draw_uniform(param_distribution, rng)
        return _draw(param_distribution, policy, rng)

    # ----------------------------------------------------------------- learning
    def _policy(self, study: optuna.Study, param_name: str, dist: BaseDistribution) -> tuple[_Policy, int]:
        """A copy of one parameter's policy after replaying the study, and how many trials had a reward."""
        history = _rewarded_trials(study, self.pruned_weight)
        numbers = [t.number for t, _, _ in history]
        with self._lock:
            # Keyed by the storage object, not its id(): a new storage at a recycled address
            # would otherwise inherit another study's replay.
            replays = self._cache.setdefault(study._storage, {})
            replay = replays.get(study._study_id)
            if replay is None or replay.numbers != numbers[: len(replay.numbers)]:
                replay = replays[study._study_id] = _Replay()
            for trial, reward, weight in history[len(replay.numbers) :]:
                self._learn(replay, trial, reward, weight)
            found = replay.policies.get((param_name, dist))
            policy = dataclasses.replace(found) if found is not None else self._initial_policy(dist)
            return policy, len(numbers)

    def _learn(self, replay: _Replay, trial: FrozenTrial, reward: float, weight: float) -> None:
        below = bisect.bisect_left(replay.rewards, reward)
        equal = bisect.bisect_right(replay.rewards, reward) - below
        n = len(replay.rewards)
        rank = (below + 0.5 * equal) / n - 0.5 if n else 0.0
        bisect.insort(replay.rewards, reward)
        replay.numbers.append(trial.number)
        reward = _UNIT_VARIANCE * rank
        for name, dist in trial.distributions.items():
            if dist.single():
                continue
            policy = replay.policies.get((name, dist))
            if policy is None:
                policy = replay.policies[(name, dist)] = self._initial_policy(dist)
            advantage = reward - policy.baseline
            policy.baseline += (1.0 - self.baseline_decay) * weight * advantage
            self._step(policy, dist, trial.params[name], self.learning_rate * weight * advantage)

    def _step(self, policy: _Policy, dist: BaseDistribution, value: Any, scale: float) -> None:
        lr_entropy = self.learning_rate * self.entropy_bonus
        if policy.logits is not None:
            p = _softmax(policy.logits)
            grad = -p
            grad[_index_of(dist, value)] += 1.0
            entropy = -float(np.dot(p, np.log(p + 1e-300)))
            policy.logits = policy.logits + scale * grad - lr_entropy * p * (np.log(p + 1e-300) + entropy)
            return
        assert isinstance(dist, (FloatDistribution, IntDistribution))
        std = math.exp(policy.log_std)
        z = min(max((_to_unit(dist, value) - policy.mean) / std, -MAX_Z), MAX_Z)
        # Natural gradient (Fisher: 1/std^2 for the mean, 2 for log std); entropy = log std + const.
        policy.mean = min(max(policy.mean + scale * z * std, 0.0), 1.0)
        log_std = policy.log_std + 0.5 * scale * (z * z - 1.0) + 0.5 * lr_entropy
        policy.log_std = min(max(log_std, math.log(self.min_std)), math.log(MAX_STD))

    def _initial_policy(self, dist: BaseDistribution) -> _Policy:
        if _is_discrete(dist):
            return _Policy(logits=np.zeros(len(_discrete_values(dist))))
        return _Policy(mean=0.5, log_std=math.log(self.init_std))


def _draw(dist: BaseDistribution, policy: _Policy, rng: np.random.Generator) -> Any:
    if policy.logits is not None:
        values = _discrete_values(dist)
        return values[int(rng.choice(len(values), p=_softmax(policy.logits)))]
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    return _from_unit(dist, _reflect(policy.mean + math.exp(policy.log_std) * float(rng.standard_normal())))


def _draw_uniform(dist: BaseDistribution, rng: np.random.Generator) -> Any:
    """A start-up draw: uniform over the values, or over the (log-)range."""
    if _is_discrete(dist):
        values = _discrete_values(dist)
        return values[int(rng.integers(len(values)))]
    assert isinstance(dist, (FloatDistribution, IntDistribution))
    return _from_unit(dist, float(rng.uniform()))


def _rewarded_trials(study: optuna.Study, pruned_weight: float) -> list[tuple[FrozenTrial, float, float]]:
    """(trial, reward, weight) of the finished trials that have a reward, by trial number."""
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    found = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.state == TrialState.COMPLETE:
            value, weight = t.value, 1.0
        elif t.intermediate_values and pruned_weight > 0.0:
            value, weight = t.intermediate_values[max(t.intermediate_values)], pruned_weight
        else:
            continue
        if value is None or math.isnan(value):
            continue
        found.append((t, sign * float(value), weight))
    return sorted(found, key=lambda x: x[0].number)


def _number(
    name: str,
    value: Any,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> float:
    """``value`` as a finite float within the given bounds, or TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, not {value!r}")
    value = float(value)
    for bad, bound, rule in (
        (lambda b: value <= b, above, ">"),
        (lambda b: value < b, at_least, ">="),
        (lambda b: value >= b, below, "<"),
        (lambda b: value > b, at_most, "<="),
    ):
        if bound is not None and bad(bound):
            raise ValueError(f"{name} must be {rule} {bound:g}, not {value:g}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value}")
    return value


@register(
    "policy-gradient",
    settings=PolicyGradientSampler,
    multi_objective=False,
    description="REINFORCE with a moving-average baseline over per-parameter policies",
)
def _policy_gradient(settings: dict[str, Any], seed: int | None, spec: TuningJobSpec) -> optuna.samplers.BaseSampler:
    return PolicyGradientSampler(seed=seed, **_startup(spec, settings, default=5))


__all__ = ["PolicyGradientSampler"]
