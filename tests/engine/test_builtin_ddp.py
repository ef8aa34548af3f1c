"""The built-in digits task through `openautoglm tune` on torch.distributed (issue 25):
``trial.launcher: torchrun`` (so ``distributed`` follows it: DDP over Gloo), plain and with
``zero: true``. Two trials of two workers each run at once on one machine (own MASTER_PORTs); each
rank's result says where and how it trained, and with ZeRO each rank holds part of the optimizer
state, together all of it (tests/trial/test_ddp.py checks the numbers against an unsharded run).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import digits_job
from optuna.trial import TrialState

from openautoglm.local.runner import run_local
from openautoglm.validation import validate_document

pytestmark = [pytest.mark.slow, pytest.mark.horovod]


def ddp_digits(zero: bool) -> dict:
    doc = digits_job("ddp-digits-zero" if zero else "ddp-digits")
    spec = doc["spec"]
    spec["budget"] = {"maxTrials": 2, "parallelism": 2, "maxFailedTrials": 0}
    spec["earlyStopping"] = {"pruner": "none"}
    spec["trial"].update({"launcher": "torchrun", "epochs": 2, "workers": 2, "taskSettings": {"zero": zero}})
    spec["metrics"]["intervalSeconds"] = 0.5
    return doc


def results(workdir: Path, number: int) -> list[dict]:
    return [
        json.loads((workdir / "trials" / f"t{number}" / f"w{rank}" / "termination-log").read_text()) for rank in (0, 1)
    ]


@pytest.mark.parametrize("zero", [False, True], ids=["ddp", "ddp-zero"])
def test_the_builtin_task_trains_on_ddp_and_with_zero(tmp_path: Path, zero: bool) -> None:
    result = run_local(validate_document(ddp_digits(zero)), workdir=tmp_path)
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, [t.user_attrs.get("fail_reason") for t in trials]
    assert result.best_value > 0.2, "above chance (0.1) after 2 epochs"
    for t in trials:
        ranks = results(tmp_path, t.number)
        assert {r["info"]["distributed"] for r in ranks} == {"ddp"} and {r["info"]["device"] for r in ranks} == {"cpu"}
        assert ranks[0]["metrics"] == ranks[1]["metrics"], "every rank reports the same allreduced metrics"
        held = [r["info"]["optimizer_state_bytes"] for r in ranks]
        if zero:
            assert all(r["info"]["zero"] for r in ranks)
            assert all(0.3 < h / sum(held) < 0.7 for h in held), held  # each rank a share, whole tensors
        else:
            assert held[0] == held[1], "unsharded: every rank holds the whole state"
