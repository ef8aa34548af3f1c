"""openautoglm_trial.builtin.eager: built-in workers train without importing torch._dynamo, and their
optimizers update exactly as torch's own do."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TRIAL_IMAGE = Path(__file__).resolve().parents[2] / "trial_image"

# Runs in a fresh interpreter: torch._dynamo, once imported, stays imported.
PROGRAM = textwrap.dedent(
    """
    import json, sys
    import torch
    if sys.argv[1] == "eager":
        from openautoglm_trial.builtin.eager import keep_dynamo_out
        changed = keep_dynamo_out()
    else:
        changed = 0
    import horovod.torch as hvd
    hvd.init()
    out = {"changed": changed, "final": {}}
    for name in ("adam", "adamw", "sgd"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))
        make = {
            "adam": lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), weight_decay=1e-3),
            "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
            "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True),
        }[name]
        optimizer = hvd.DistributedOptimizer(make(model.parameters()), named_parameters=model.named_parameters())
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=10)
        x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
        for _ in range(5):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.synchronize()
            with optimizer.skip_synchronize():
                optimizer.step()
            scheduler.step()
            assert torch.is_grad_enabled()  # the grad mode is restored after every step
        optimizer.load_state_dict(optimizer.state_dict())
        out["final"][name] = [p.detach().flatten().tolist() for p in model.parameters()]
    out["dynamo"] = "torch._dynamo" in sys.modules
    print(json.dumps(out))
    """
)


def run(mode: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(TRIAL_IMAGE), "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.horovod
def test_optimizers_update_identically_without_importing_dynamo() -> None:
    plain, eager = run("plain"), run("eager")
    assert plain["dynamo"], "torch.optim no longer imports torch._dynamo: eager.py can go"
    assert eager["changed"] > 0 and not eager["dynamo"]
    # Bit for bit: the same floats after 5 steps of each optimizer with a scheduler.
    assert eager["final"] == plain["final"]
