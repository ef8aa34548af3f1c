"""A stand-in for Katib's PyTorchJob example program (kubeflow's pytorch-mnist image, not available here).

It takes the flags Katib's trial template passes (``--epochs``, ``--batch-size``, ``--lr``,
``--momentum``; ``--backend``, ``--no-cuda``, ``--log-interval`` ... accepted) and starts the way
that program does under the training operator: ``init_process_group()`` from the environment
(MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE) when WORLD_SIZE > 1, the model wrapped in DDP. It
imports nothing of OpenAutoGLM and knows nothing of Horovod. It trains a small MLP on scikit-learn's
digits (``--data-dir``, examples/own-script/data) and prints ``loss=L`` on rank 0 after every
epoch, which Katib's StdOut collector (and the converted TuningJob's) reads.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.5)
    p.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    p.add_argument("--no-cuda", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-dir", default="data")
    args, unknown = p.parse_known_args()
    if unknown:
        print(f"ignoring unknown arguments: {unknown}", file=sys.stderr)
    return args


def main() -> int:
    args = parse_args()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = not args.no_cuda and torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if use_cuda else torch.device("cpu")
    if world > 1:
        dist.init_process_group(backend=args.backend)
    rank = dist.get_rank() if world > 1 else 0
    if world > 1:  # as Katib's program says it (no "=": not a metric to Katib's StdOut filter)
        print(f"Using distributed PyTorch with {args.backend} backend: rank {rank} of {dist.get_world_size()}")
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    with np.load(os.path.join(args.data_dir, "digits.npz")) as data:
        x, y = data["x"].astype(np.float32) / 16.0, data["y"].astype(np.int64)
    order = np.random.default_rng(1234).permutation(len(y))
    val, train = order[:360], order[360:]
    # Equal shards: every rank runs as many steps, so DDP's allreduces pair up.
    shard = train[: len(train) - len(train) % world][rank::world]
    xt, yt = torch.from_numpy(x[shard]).to(device), torch.from_numpy(y[shard]).to(device)
    xv, yv = torch.from_numpy(x[val]).to(device), torch.from_numpy(y[val]).to(device)
    model: nn.Module = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).to(device)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    for epoch in range(1, args.epochs + 1):
        model.train()
        for i in range(0, len(shard), args.batch_size):
            optimizer.zero_grad()
            F.cross_entropy(model(xt[i : i + args.batch_size]), yt[i : i + args.batch_size]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            loss = F.cross_entropy(model(xv), yv).item()
        if rank == 0:
            print(f"Train Epoch: {epoch}\tloss={loss:.4f}", flush=True)
    if world > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
