"""A plain Horovod script, unaware of OpenAutoGLM: no horovodrun, nothing of ours imported.

Every rank allreduces ``rank + 1`` and prints Katib-style metrics derived from the sum, so the
supervisor of rank 0 can only report the right numbers if both ranks really joined.
``--diverge``: only rank 0 prints, a NaN loss, then every rank waits in collectives for ever
(the supervisors must stop both).
"""

import sys
import time

import horovod.torch as hvd
import torch

hvd.init()
total = hvd.allreduce(torch.tensor([hvd.rank() + 1.0]), op=hvd.Sum).item()
if "--diverge" in sys.argv:
    if hvd.rank() == 0:
        print(f"epoch=1 accuracy={total / 10} loss=nan", flush=True)
    while True:
        hvd.allreduce(torch.tensor([1.0]), op=hvd.Sum)
        time.sleep(0.1)
print(f"epoch=1 accuracy={total / 10} loss={1 / total} size={hvd.size()}", flush=True)
