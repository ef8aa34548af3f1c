"""What a built-in task is: a cheap, declarative spec plus a lazily imported implementation.

The spec (hyperparameters, metrics, settings) is plain data so the SDK and CLI can read default
search spaces without importing torch; the implementation module is imported only to train.
"""

from __future__ import annotations

import abc
import importlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..environment import ObjectiveMetric
from ..errors import ParameterError, SettingsError

if TYPE_CHECKING:
    import torch

#: Task settings every built-in task accepts besides its own: how its ranks train together (the
#: training loop is shared, so these are the same for all). ``distributed``: ``horovod`` or ``ddp``
#: (torch.distributed); None follows the launcher (horovod under ``trial.launcher: horovod``, ddp
#: under torchrun). ``zero``: shard the optimizer state across the ranks (ZeRO-1, ddp only).
DISTRIBUTED_SETTINGS: Mapping[str, Any] = {"distributed": None, "zero": False}
DISTRIBUTED_KINDS: tuple[str, ...] = ("horovod", "ddp")
#: ``distributed`` when the setting is unset, per ``trial.launcher``
DISTRIBUTED_OF_LAUNCHER: Mapping[str, str] = {"horovod": "horovod", "torchrun": "ddp"}


def distributed_problems(settings: Mapping[str, Any], launcher: str | None = None) -> list[tuple[str, str]]:
    """What is wrong with the ``distributed`` and ``zero`` task settings: (setting, message) pairs.

    Args:
        settings: the task settings as given.
        launcher: the trial's launcher, when known: then an unset ``distributed`` is what it gives;
            None checks only what the settings say themselves.
    """
    problems: list[tuple[str, str]] = []
    kind = settings.get("distributed")
    if kind is not None and kind not in DISTRIBUTED_KINDS:
        problems.append(("distributed", f"must be horovod or ddp (or unset: what the launcher gives), got {kind!r}"))
        kind = None
    zero = settings.get("zero", False)
    if not isinstance(zero, bool):
        problems.append(("zero", f"must be true or false, got {zero!r}"))
    elif zero and (kind or DISTRIBUTED_OF_LAUNCHER.get(launcher or "")) == "horovod":
        problems.append(
            (
                "zero",
                "ZeRO shards the optimizer state with torch.distributed: "
                "it needs distributed: ddp (launcher: torchrun)",
            )
        )
    return problems


#: Python types a hyperparameter value may arrive as, per declared kind (bool is no number).
_KINDS: dict[str, tuple[type, ...]] = {"float": (int, float), "int": (int, float), "str": (str,)}


def _of_kind(value: Any, kind: str) -> bool:
    """Whether a value may arrive for a hyperparameter of ``kind`` (a function: the value stays Any)."""
    return not isinstance(value, bool) and isinstance(value, _KINDS[kind])


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter a task accepts."""

    name: str
    #: "float", "int" or "str"
    kind: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    #: the only values accepted, if given
    choices: tuple[Any, ...] | None = None
    #: default search-space entry (TuningJob ``parameters`` item without ``name``); None: not
    #: part of the default search space
    space: Mapping[str, Any] | None = None

    def coerce(self, value: Any) -> Any:
        """Check a value and bring it to the declared kind.

        Raises:
            ParameterError: wrong type, out of range or not one of the choices.
        """
        if value is None and self.default is None:
            return None
        if not _of_kind(value, self.kind):
            raise ParameterError(
                f"hyperparameter {self.name!r} must be of type {self.kind}, got {type(value).__name__} {value!r}"
            )
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ParameterError(f"hyperparameter {self.name!r} must be an integer, got {value!r}")
            value = int(value)
        elif self.kind == "float":
            value = float(value)
            if not math.isfinite(value):
                raise ParameterError(f"hyperparameter {self.name!r} must be finite, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ParameterError(
                f"hyperparameter {self.name!r} must be one of {', '.join(map(str, self.choices))}; got {value!r}"
            )
        if self.minimum is not None and value < self.minimum:
            raise ParameterError(f"hyperparameter {self.name!r} must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ParameterError(f"hyperparameter {self.name!r} must be <= {self.maximum}, got {value!r}")
        return value


@dataclass(frozen=True)
class TaskContext:
    """Facts about the worker a task needs to prepare its data and model."""

    rank: int
    size: int
    seed: int
    epochs: int
    cache_dir: Path


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task as the registry knows it."""

    name: str
    #: "module:Class" of the :class:`Task` implementation, imported on use
    factory: str
    summary: str
    #: metrics reported every epoch (including ``train_loss`` from the training loop)
    metrics: tuple[str, ...]
    #: objective used when the TuningJob names none
    objective: ObjectiveMetric
    hyperparameters: tuple[Hyperparameter, ...]
    #: accepted task settings and their defaults
    settings: Mapping[str, Any] = field(default_factory=dict)

    def resolve_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Validate hyperparameters and fill in defaults.

        Raises:
            ParameterError: an unknown name or a bad value; the message names it.
        """
        known = {hp.name: hp for hp in self.hyperparameters}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ParameterError(
                f"unknown hyperparameter{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))} for task {self.name!r} "
                f"(known: {', '.join(sorted(known))})"
            )
        return {name: hp.coerce(params[name]) if name in params else hp.default for name, hp in known.items()}

    def resolve_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Validate task settings and fill in defaults.

        Raises:
            SettingsError: an unknown setting name, or a bad ``distributed``/``zero``.
        """
        unknown = sorted(set(settings) - set(self.settings))
        if unknown:
            raise SettingsError(
                f"unknown task setting{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))} for task {self.name!r} "
                f"(known: {', '.join(sorted(self.settings))})"
            )
        for name, message in distributed_problems(settings):
            raise SettingsError(f"task setting {name!r}: {message}")
        return {**self.settings, **settings}

    def setting_problems(self, settings: Mapping[str, Any], launcher: str | None = None) -> list[tuple[str, str]]:
        """Bad values among the task settings, as (setting, message) pairs, for validate (unknown
        names are its own check)."""
        return distributed_problems(settings, launcher)

    def create(self, params: Mapping[str, Any], settings: Mapping[str, Any], context: TaskContext) -> Task:
        """Validate inputs first, then import the implementation and instantiate it.

        Raises:
            SettingsError: unknown task setting.
            ParameterError: unknown or invalid hyperparameter.
        """
        resolved_params = self.resolve_params(params)
        resolved_settings = self.resolve_settings(settings)
        return self.load()(resolved_params, resolved_settings, context)

    def defaults(self) -> dict[str, Any]:
        """The default configuration: every hyperparameter's default (where it has one)."""
        return {hp.name: hp.default for hp in self.hyperparameters if hp.default is not None}

    def search_space(self) -> list[dict[str, Any]]:
        """The default search space as TuningJob ``parameters`` entries."""
        return [{"name": hp.name, **hp.space} for hp in self.hyperparameters if hp.space is not None]

    def load(self) -> type[Task]:
        """Import the implementation class."""
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)


class Task(abc.ABC):
    """A trainable task: data, model, optimiser, loss and evaluation for the training loop.

    Subclasses keep torch imports at module level; the registry imports them lazily.
    """

    #: keys of :meth:`evaluation_sums`, fixed so every rank allreduces the same vector even
    #: when its validation shard is empty
    sum_keys: ClassVar[tuple[str, ...]]
    #: batches per epoch are capped to this (None: the whole shard)
    steps_per_epoch: int | None = None

    def __init__(self, params: Mapping[str, Any], settings: Mapping[str, Any], context: TaskContext) -> None:
        """Keep the resolved hyperparameters, settings and worker context."""
        self.params = dict(params)
        self.settings = dict(settings)
        self.context = context

    @property
    def batch_size(self) -> int:
        """Per-worker batch size."""
        return int(self.params["batch_size"])

    @property
    def eval_batch_size(self) -> int:
        """Per-worker validation batch size (no gradients, so it can be larger)."""
        return self.batch_size

    @abc.abstractmethod
    def load_data(self) -> None:
        """Load or build the datasets; sets ``train_dataset`` and ``val_dataset``."""

    train_dataset: torch.utils.data.Dataset
    val_dataset: torch.utils.data.Dataset

    @abc.abstractmethod
    def build_model(self) -> torch.nn.Module:
        """Build the model (seeded identically on all ranks, then broadcast from rank 0)."""

    @abc.abstractmethod
    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """Build the (plain torch) optimiser; the loop wraps it (Horovod, or ZeRO-1)."""

    def build_scheduler(
        self, optimizer: torch.optim.Optimizer, total_steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler | None:
        """An optional learning-rate schedule stepped after every optimiser step."""
        return None

    @abc.abstractmethod
    def training_loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        """Mean loss of one training batch (a scalar with grad)."""

    @abc.abstractmethod
    def evaluation_sums(self, model: torch.nn.Module, batch: Any) -> dict[str, float]:
        """Additive statistics of one validation batch (e.g. loss sum, correct, count)."""

    @abc.abstractmethod
    def metrics_from_sums(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Validation metrics from the statistics summed over all batches and workers."""

    def info(self) -> dict[str, Any]:
        """Facts for the termination message that are not metrics."""
        return {}
