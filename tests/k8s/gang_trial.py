"""A trial for the gang tests (tests/k8s/test_gangs.py): real Horovod ranks, no training.

Every rank joins an allreduce of ``rank + 1`` first, so no rank gets past its rendezvous until
every rank of the run is running (a partly scheduled trial holds its pods and waits, as a real
one would); then it "trains" for ``--seconds`` (a sleep: the tests are about scheduling, not
CPU), ends in a second allreduce, and prints ``epoch=1 ranks=<sum>``. ``ranks`` is 3.0 only if
both ranks of a 2-rank trial took part.
"""

import argparse
import time

import horovod.torch as hvd
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=1.0)
args = parser.parse_args()

hvd.init()
total = hvd.allreduce(torch.tensor([hvd.rank() + 1.0]), op=hvd.Sum).item()
time.sleep(args.seconds)
hvd.allreduce(torch.tensor([0.0]), op=hvd.Sum)  # every rank trained to the end
print(f"epoch=1 ranks={total} size={hvd.size()}", flush=True)
