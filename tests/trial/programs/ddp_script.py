"""A plain torch.distributed script, unaware of OpenAutoGLM: no torchrun, nothing of ours imported.

What most DDP code does, with torchrun's environment (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE):
``init_process_group("gloo")`` from the environment, a DDP-wrapped model, a DistributedSampler over
sklearn's digits (shipped inside sklearn: no download), and rank 0 prints Katib-style
``epoch=E loss=L accuracy=A`` (the loss averaged over every rank's batches).

Each rank seeds its model differently on purpose: only DDP's broadcast from rank 0 and its
gradient allreduce make the ranks end equal, so equal parameters show that both really joined.

At the end every rank logs the digest of its parameters on stderr. Test hooks: ``--save PATH``
writes what this rank saw as JSON (its environment, the world size, how many ranks answered an
allreduce, digests of its parameters before DDP and after training); ``--pid PATH`` writes the
program's pid at start; ``--epoch-seconds`` sleeps after each epoch (so a test can stop it
midway); ``--diverge``: rank 0 prints a NaN loss, then every rank waits in collectives for ever
(the supervisors must stop both).
"""

import argparse
import hashlib
import json
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812 (torch's own spelling)
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def digest(model: nn.Module) -> str:
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return hashlib.sha256(flat.numpy().tobytes()).hexdigest()


def diverge(rank: int) -> None:
    if rank == 0:
        print("epoch=1 loss=nan accuracy=0.1", flush=True)
    while True:
        dist.all_reduce(torch.ones(1))
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epoch-seconds", type=float, default=0.0)
    parser.add_argument("--save")
    parser.add_argument("--pid")
    parser.add_argument("--diverge", action="store_true")
    args = parser.parse_args()
    if args.pid:
        with open(args.pid, "w") as f:
            f.write(str(os.getpid()))
    torch.set_num_threads(1)  # two ranks on a small machine
    dist.init_process_group("gloo")  # env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
    rank, size = dist.get_rank(), dist.get_world_size()
    joined = torch.ones(1)
    dist.all_reduce(joined)
    if args.diverge:
        diverge(rank)

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    train, test_x, test_y = TensorDataset(x[:1500], y[:1500]), x[1500:], y[1500:]
    torch.manual_seed(1000 + rank)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    before = digest(model)
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9)
    sampler = DistributedSampler(train, num_replicas=size, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(train, batch_size=32, sampler=sampler)
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        total = torch.zeros(2)
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(ddp(xb), yb)
            loss.backward()
            optimizer.step()
            total += torch.tensor([loss.item() * len(yb), len(yb)])
        dist.all_reduce(total)
        with torch.no_grad():
            accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
        if rank == 0:
            print(f"epoch={epoch} loss={(total[0] / total[1]).item():.6f} accuracy={accuracy:.6f}", flush=True)
        time.sleep(args.epoch_seconds)
    after = digest(model)
    # stderr: a log line for people and tests, not a metric for the stdout collector
    print(f"rank {rank} of {size}: parameters sha256 {after}", file=sys.stderr, flush=True)
    if args.save:
        seen = {"rank": rank, "world_size": size, "joined": joined.item(), "before": before, "after": after}
        with open(args.save, "w") as f:
            json.dump({**seen, "env": dict(os.environ)}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
