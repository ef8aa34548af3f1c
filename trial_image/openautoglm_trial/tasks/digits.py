"""``digits``: an MLP on scikit-learn's bundled 8x8 handwritten digits (1797 images, offline)."""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from .base import Task


class DigitsTask(Task):
    """Classify digits with a 1-3 hidden-layer MLP; reports accuracy and loss on validation."""

    sum_keys: ClassVar[tuple[str, ...]] = ("loss_sum", "correct", "count")

    @property
    def eval_batch_size(self) -> int:
        """The whole validation shard fits in one batch."""
        return 1024

    def load_data(self) -> None:
        """Standardise the images (train statistics) and split them, stratified and seeded."""
        x, y = load_digits()
        val = stratified_validation_mask(y, float(self.settings["val_fraction"]), int(self.settings["split_seed"]))
        x_train, x_val, y_train, y_val = x[~val], x[val], y[~val], y[val]
        mean = x_train.mean(axis=0)
        # Border pixels are always 0: keep their scale at 1 instead of dividing by zero.
        std = np.where(x_train.std(axis=0) > 0, x_train.std(axis=0), 1.0)
        self.train_dataset = _tensors((x_train - mean) / std, y_train)
        self.val_dataset = _tensors((x_val - mean) / std, y_val)

    def build_model(self) -> nn.Module:
        """``layers`` x (Linear, ReLU, Dropout) and a linear classifier over 10 digits."""
        width, dropout = int(self.params["hidden"]), float(self.params["dropout"])
        blocks: list[nn.Module] = []
        features = 64
        for _ in range(int(self.params["layers"])):
            blocks += [nn.Linear(features, width), nn.ReLU(), nn.Dropout(dropout)]
            features = width
        return nn.Sequential(*blocks, nn.Linear(features, 10))

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Adam (lr, beta1, beta2) or SGD with momentum, both with weight decay."""
        p = self.params
        if p["optimizer"] == "adam":
            return torch.optim.Adam(
                model.parameters(), lr=p["lr"], betas=(p["beta1"], p["beta2"]), weight_decay=p["weight_decay"]
            )
        return torch.optim.SGD(model.parameters(), lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"])

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Cross-entropy of a batch."""
        x, y = batch
        return F.cross_entropy(model(x), y)

    def evaluation_sums(self, model: nn.Module, batch: Any) -> dict[str, float]:
        """Summed cross-entropy, number correct and number of images."""
        x, y = batch
        logits = model(x)
        return {
            "loss_sum": F.cross_entropy(logits, y, reduction="sum").item(),
            "correct": (logits.argmax(dim=1) == y).sum().item(),
            "count": len(y),
        }

    def metrics_from_sums(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Validation accuracy and mean cross-entropy."""
        count = sums["count"] or float("nan")
        return {"accuracy": sums["correct"] / count, "loss": sums["loss_sum"] / count}

    def info(self) -> dict[str, Any]:
        """Echo the ``tag`` hyperparameter verbatim."""
        return {} if self.params.get("tag") is None else {"tag": self.params["tag"]}


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as (images of 64 pixels, labels), from scikit-learn's bundled file.

    Reads ``sklearn/datasets/data/digits.csv.gz`` exactly as ``sklearn.datasets.load_digits``
    does, without importing scikit-learn: that import takes ~2 s of CPU per worker, as long as
    a whole 20-epoch trial on two cores. Falls back to ``load_digits`` if the file moved.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    locations = spec.submodule_search_locations if spec else None
    bundled = Path(locations[0]) / "datasets" / "data" / "digits.csv.gz" if locations else None
    if bundled is None or not bundled.is_file():
        from sklearn.datasets import load_digits as sklearn_load_digits

        return sklearn_load_digits(return_X_y=True)
    with gzip.open(bundled, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int)


def stratified_validation_mask(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a seeded validation split holding ``fraction`` of every class."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        mask[members[: max(1, round(len(members) * fraction))]] = True
    return mask


def _tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y))
