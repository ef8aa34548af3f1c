"""A plain Horovod + PyTorch training script: it imports nothing of OpenAutoGLM.

It is what a Kubeflow Katib user already has: hyperparameters as flags, metrics printed as
``name=value`` on stdout, Horovod started by whoever launched it. Run it alone::

    python train.py --lr=0.05 --batch-size=32

or under ``openautoglm tune tuningjob.yaml`` (2 Horovod workers per trial, stdout collector).
It trains a small MLP on scikit-learn's digits from ``<data-dir>/digits.npz`` (make_data.py
writes it), prints ``epoch=N accuracy=A loss=L`` after every epoch on rank 0, and exits 0.

Checkpoints (``trial.checkpoint`` in the TuningJob): every run of a trial (a retry after a lost
rank, a requeue) gets the same directory in ``OPENAUTOGLM_CHECKPOINT_DIR`` (or pass it with
``--checkpoint-dir=${trial.checkpointDir}``; a program using the push client may call
``openautoglm_trial.checkpoint_dir()``). This script resumes from the checkpoint there, saves one
atomically after every epoch on rank 0, and so prints from the epoch after it: the trial's curve
holds every epoch once. Each epoch reseeds torch from (seed, rank, epoch), so a resumed run
trains exactly as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", default=os.environ.get("OPENAUTOGLM_CHECKPOINT_DIR") or None)
    # Katib's example images take a few flags we have no use for (--log-interval, --no-cuda):
    # accept and ignore them so their trial templates run unchanged.
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print(f"ignoring unknown arguments: {unknown}", file=sys.stderr)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import horovod.torch as hvd

    hvd.init()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    device = torch.device("cuda", hvd.local_rank()) if torch.cuda.is_available() else torch.device("cpu")

    with np.load(os.path.join(args.data_dir, "digits.npz")) as data:
        x, y = data["x"].astype(np.float32) / 16.0, data["y"].astype(np.int64)
    rng = np.random.default_rng(1234)  # the same validation split on every rank and trial
    order = rng.permutation(len(y))
    val, train = order[:360], order[360:]
    shard = train[hvd.rank() :: hvd.size()]  # each rank trains on its own shard
    xt, yt = torch.from_numpy(x[shard]), torch.from_numpy(y[shard])
    xv, yv = torch.from_numpy(x[val]).to(device), torch.from_numpy(y[val]).to(device)

    layers: list[nn.Module] = []
    width = 64
    for _ in range(args.num_layers):
        layers += [nn.Linear(width, args.hidden), nn.ReLU(), nn.Dropout(args.dropout)]
        width = args.hidden
    model = nn.Sequential(*layers, nn.Linear(width, 10)).to(device)
    lr = args.lr * hvd.size()  # the usual Horovod scaling: the global batch grew
    optimizer = (
        torch.optim.SGD(model.parameters(), lr=lr, momentum=args.momentum)
        if args.optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=lr)
    )
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
    # Every rank resumes from the same file (rank 0 saves only after an epoch all ranks trained).
    checkpoint = os.path.join(args.checkpoint_dir, "checkpoint.pt") if args.checkpoint_dir else None
    start = 0
    if checkpoint and os.path.exists(checkpoint):
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
        print(f"resuming after epoch {start}", file=sys.stderr, flush=True)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)

    for epoch in range(start + 1, args.epochs + 1):
        torch.manual_seed(hash((args.seed, hvd.rank(), epoch)))  # this epoch's order and dropout
        model.train()
        started, total, count = time.monotonic(), 0.0, 0
        for idx in torch.randperm(len(yt)).split(args.batch_size):
            xb, yb = xt[idx].to(device), yt[idx].to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        train_loss = hvd.allreduce(torch.tensor(total / max(count, 1)), name="train_loss").item()
        model.eval()
        with torch.no_grad():
            logits = model(xv)
            accuracy = (logits.argmax(1) == yv).float().mean().item()
            val_loss = F.cross_entropy(logits, yv).item()
        if hvd.rank() == 0:
            if checkpoint:
                state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
                save_atomically(state, checkpoint)
            # Katib's StdOut collector format: name=value pairs on one line.
            print(
                f"epoch={epoch} accuracy={accuracy:.4f} loss={val_loss:.4f} "
                f"train-loss={train_loss:.4f} seconds={time.monotonic() - started:.2f}",
                flush=True,
            )
        if not math.isfinite(train_loss):
            break  # nothing more to learn; the supervisor has already seen loss=nan
    return 0


def save_atomically(state: dict, path: str) -> None:
    """Write, flush to disk, then rename: a run killed mid-save leaves the previous checkpoint."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main())
