"""Trials that attack the engine through what they control -- the size and timing of their
/metrics and the content of their termination message -- next to normal trials, run with real
processes: the job ends with its exact trial count, every hostile trial is judged (completed or
failed) with a reason that names what was wrong, and nothing escapes into the pass.

On main before issue 21: the 200 MiB /metrics was read whole every pass, the trickle held every
pass for 12 s+, ``+Inf`` and the nested message raised out of the pass (OverflowError,
RecursionError), and the overflowing message stored a 301-digit step.
"""

from __future__ import annotations

import logging

from optuna.trial import TrialState

from openautoglm.config import Settings
from openautoglm.engine.attrs import TRIAL_FAIL_REASON, TRIAL_METRICS_PROBLEM
from openautoglm.local.runner import run_local
from openautoglm.validation import validate_document
from openautoglm_trial.contract import MAX_STEP

FAST = Settings(workdir=None, storage=None, local_tick_seconds=0.1, elapsed_save_seconds=1, log_level="WARNING")

#: mode -> (final state, what its metrics problem or failure reason must say)
HOSTILE = {
    "huge-metrics": (TrialState.COMPLETE, "/metrics: answer larger than 1 MiB: not read"),
    "trickle-metrics": (TrialState.COMPLETE, "/metrics: no complete answer within 1 s"),
    "inf-epoch": (TrialState.COMPLETE, "/metrics: openautoglm_trial_epoch is inf, not a finite number"),
    "nested-result": (TrialState.FAIL, "worker 0: termination message unreadable: nested deeper than 64 levels"),
    "overflow-result": (TrialState.FAIL, "epochs 1e+300 is outside 0..2147483647"),
}
NORMAL = 3


def test_hostile_trials_are_judged_with_a_reason_and_the_job_ends(tmp_path, toy, monkeypatch, caplog):
    # A short deadline keeps the trickling trial's passes short; 1 MiB is the default limit.
    monkeypatch.setenv("OPENAUTOGLM_SCRAPE_DEADLINE_SECONDS", "1")
    modes = [*HOSTILE, *["ok"] * NORMAL]
    doc = toy(
        "hostile",
        max_trials=len(modes),
        parallelism=4,
        epochs=6,
        max_failed=len(modes),
        parameters=[
            {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
            {"name": "mode", "type": "categorical", "choices": sorted(set(modes))},
            # 3 s a trial: long enough for a pass to read it a few times while it runs
            {"name": "epoch_seconds", "type": "fixed", "value": 0.5},
        ],
        warm_start=[{"x": 0.3 + i / 100, "mode": mode} for i, mode in enumerate(modes)],
    )
    doc["spec"]["metrics"]["intervalSeconds"] = 0.5  # the floor of issue 21
    events = []
    caplog.set_level(logging.WARNING)
    result = run_local(
        validate_document(doc),
        workdir=tmp_path / "hostile",
        settings=FAST,
        on_outcome=lambda o: events.extend(o.events),
    )

    trials = result.study.get_trials()
    assert len(trials) == len(modes) and result.status.counts["finished"] == len(modes)
    assert result.status.phase == "Succeeded"
    for t in trials:
        mode = t.params["mode"]
        if mode == "ok":
            assert t.state == TrialState.COMPLETE and TRIAL_METRICS_PROBLEM not in t.user_attrs, t.user_attrs
            continue
        state, says = HOSTILE[mode]
        assert t.state == state, (mode, t.user_attrs)
        named = t.user_attrs.get(TRIAL_FAIL_REASON, "") + " | " + t.user_attrs.get(TRIAL_METRICS_PROBLEM, "")
        assert says in named, (mode, named)
        assert all(0 <= step <= MAX_STEP for step in t.intermediate_values), mode
    # The problems are shown where a person looks: the trial's Warning event and the status.
    warned = {e.trial for e in events if e.reason == "TrialMetricsUnreadable" and e.warning}
    by_mode = {t.params["mode"]: t.number for t in trials}
    assert {by_mode[m] for m in ("huge-metrics", "trickle-metrics", "inf-epoch", "overflow-result")} <= warned
    recent = {s["number"]: s for s in result.status.recent}
    assert "answer larger than 1 MiB" in recent[by_mode["huge-metrics"]]["metricsProblem"]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
