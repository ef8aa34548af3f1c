"""Registry of built-in tasks: name -> :class:`~.base.TaskSpec`.

Importing this package is cheap (no torch, no transformers): the SDK and CLI read default
search spaces from here; the implementations are imported only when a worker trains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..environment import ObjectiveMetric
from ..errors import SettingsError
from .base import DISTRIBUTED_SETTINGS, Hyperparameter, Task, TaskContext, TaskSpec

__all__ = [
    "TASKS",
    "Hyperparameter",
    "Task",
    "TaskContext",
    "TaskSpec",
    "create",
    "default_search_space",
    "get",
    "register",
    "task_metrics",
]

TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task to the registry (names are unique), with the settings of the shared training
    loop (``distributed``, ``zero``: :data:`~.base.DISTRIBUTED_SETTINGS`) beside its own."""
    if spec.name in TASKS:
        raise ValueError(f"task {spec.name!r} is already registered")
    spec = dataclasses.replace(spec, settings={**spec.settings, **DISTRIBUTED_SETTINGS})
    TASKS[spec.name] = spec
    return spec


def get(name: str) -> TaskSpec:
    """The spec of a task.

    Raises:
        SettingsError: no such task; the message lists the known ones.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise SettingsError(f"unknown task {name!r} (built-in tasks: {', '.join(sorted(TASKS))})") from None


def default_search_space(task: str) -> list[dict[str, Any]]:
    """Default hyperparameter search space of a task, as TuningJob ``parameters`` entries.

    Args:
        task: a built-in task name.

    Returns:
        Plain dicts such as ``{"name": "lr", "type": "float", "low": 1e-4, "high": 0.3,
        "log": True}``; conditional ones carry ``"when": {"optimizer": "adam"}``.
    """
    return get(task).search_space()


def task_metrics(task: str) -> list[str]:
    """Names of the metrics a task reports every epoch."""
    return list(get(task).metrics)


def create(name: str, params: Mapping[str, Any], settings: Mapping[str, Any], context: TaskContext) -> Task:
    """Validate the inputs of a task and instantiate its implementation.

    Raises:
        SettingsError: unknown task or task setting.
        ParameterError: unknown or invalid hyperparameter.
    """
    return get(name).create(params, settings, context)


def _float(low: float, high: float, log: bool = False, **extra: Any) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high, **({"log": True} if log else {}), **extra}


def _optimizer_params(
    default_lr: float, lr_space: dict[str, Any], optimizers: tuple[str, ...]
) -> tuple[Hyperparameter, ...]:
    return (
        Hyperparameter("lr", "float", default_lr, minimum=0.0, space=lr_space),
        Hyperparameter(
            "optimizer",
            "str",
            optimizers[0],
            choices=optimizers,
            space={"type": "categorical", "choices": list(optimizers[:2])},
        ),
    )


register(
    TaskSpec(
        name="digits",
        factory="openautoglm_trial.tasks.digits:DigitsTask",
        summary="MLP on scikit-learn's bundled 8x8 handwritten digits (offline, seconds)",
        metrics=("accuracy", "loss", "train_loss"),
        objective=ObjectiveMetric("accuracy", "maximize"),
        hyperparameters=(
            *_optimizer_params(1e-3, _float(1e-4, 0.3, log=True), ("adam", "sgd")),
            Hyperparameter("batch_size", "int", 64, minimum=1, space={"type": "categorical", "choices": [32, 64, 128]}),
            Hyperparameter("dropout", "float", 0.1, minimum=0.0, maximum=0.95, space=_float(0.0, 0.5)),
            Hyperparameter("hidden", "int", 128, minimum=1, space={"type": "int", "low": 32, "high": 256, "step": 32}),
            Hyperparameter("layers", "int", 2, minimum=1, maximum=3, space={"type": "int", "low": 1, "high": 3}),
            Hyperparameter(
                "beta1", "float", 0.9, minimum=0.0, maximum=0.9999, space=_float(0.8, 0.99, when={"optimizer": "adam"})
            ),
            Hyperparameter(
                "beta2",
                "float",
                0.999,
                minimum=0.0,
                maximum=0.99999,
                space=_float(0.9, 0.9999, when={"optimizer": "adam"}),
            ),
            Hyperparameter(
                "momentum",
                "float",
                0.9,
                minimum=0.0,
                maximum=0.9999,
                space=_float(0.0, 0.99, when={"optimizer": "sgd"}),
            ),
            Hyperparameter("weight_decay", "float", 0.0, minimum=0.0, space=_float(1e-6, 1e-2, log=True)),
            # Not tuned: echoed into the result's info, e.g. to label runs.
            Hyperparameter("tag", "str", None),
        ),
        settings={
            "val_fraction": 0.2,  # held-out share of the 1797 images
            "split_seed": 0,  # fixed across trials so they are compared on the same split
        },
    )
)

register(
    TaskSpec(
        name="text-lm",
        factory="openautoglm_trial.tasks.text_lm:TextLMTask",
        summary="small causal language model (transformers) on a local text corpus",
        metrics=("loss", "perplexity", "train_loss"),
        objective=ObjectiveMetric("loss", "minimize"),
        hyperparameters=(
            *_optimizer_params(5e-4, _float(1e-4, 1e-2, log=True), ("adamw", "sgd", "adam")),
            Hyperparameter("batch_size", "int", 16, minimum=1, space={"type": "categorical", "choices": [8, 16, 32]}),
            Hyperparameter("weight_decay", "float", 0.01, minimum=0.0, space=_float(1e-4, 0.1, log=True)),
            Hyperparameter("warmup_ratio", "float", 0.1, minimum=0.0, maximum=1.0, space=_float(0.0, 0.3)),
            Hyperparameter("dropout", "float", 0.1, minimum=0.0, maximum=0.95, space=_float(0.0, 0.3)),
            # None keeps the config's (or the pretrained model's) value.
            Hyperparameter("n_layer", "int", None, minimum=1, maximum=48),
            Hyperparameter("n_embd", "int", None, minimum=8),
        ),
        settings={
            "model": None,  # local directory for from_pretrained; None: build from config
            "dataset": None,  # local text file or folder; None: stdlib docstrings
            "n_layer": 2,
            "n_embd": 64,
            "n_head": 2,
            "block_size": 128,
            "vocab_size": 2000,
            "steps_per_epoch": 30,  # keeps an epoch short; None: the whole shard
            "eval_blocks": 128,  # validation blocks evaluated per epoch (all ranks together)
            "val_fraction": 0.1,
            "split_seed": 0,
        },
    )
)
