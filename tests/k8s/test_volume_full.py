"""Issue 13, case 7 in the operator: the volume of the job's study journal (the operator's study
directory, a real 256 KiB tmpfs here) fills up mid-job. The status says Stalled / StorageFull and
why (written to the API server, not to the full volume), the trials' pods run on, the journal
stays whole, and once space is freed the job ends with every trial exactly once."""

from __future__ import annotations

import glob
import json
import time

from test_faults import _assert_every_trial_once, _stalled, _toy_job
from test_operator import NS, Operator, apply, job_status, study_trials, trial_pods

#: Seconds the volume stays full once the job is Stalled: the running trials (4 s) end meanwhile.
FULL_SECONDS = 6


def _condition(cluster, name: str, ctype: str) -> dict:
    return {c["type"]: c for c in job_status(cluster, name).get("conditions", [])}.get(ctype) or {}


def test_a_full_journal_volume_stalls_the_job_and_it_resumes_when_space_is_freed(cluster, tmp_path, small_volume):
    name = "volume-full"
    doc = _toy_job(name, ["ok"] * 6, parallelism=2)
    doc["spec"]["warmStart"] = []
    operator = Operator(cluster, tmp_path)
    operator.study_dir = small_volume.path / "studies"  # the operator's journals, on the small volume
    operator.start()
    try:
        apply(cluster, doc, tmp_path)
        cluster.wait_for(lambda: any(t.state.is_finished() for t in study_trials(operator, name)), 120, "a trial")
        small_volume.fill()
        filled = time.monotonic()

        stall = cluster.wait_for(_stalled(cluster, name, "StorageFull"), 30, "the Stalled condition")
        noticed = time.monotonic() - filled
        (journal,) = glob.glob(str(operator.study_dir / NS / f"{name}-*.journal"))
        assert f"study journal {journal} cannot be written: no space left on device (ENOSPC)" in stall["message"]
        assert "the job resumes when the volume has room again" in stall["message"]
        # Whole while full: every line a record, and Optuna loads it.
        with open(journal, "rb") as f:
            records = f.read()
        assert records.endswith(b"\n") and all(json.loads(line) for line in records.splitlines())
        during = study_trials(operator, name)
        assert 0 < len(during) < 6
        assert trial_pods(cluster, name), "the running trials' pods were not left to run"
        time.sleep(FULL_SECONDS)
        assert _condition(cluster, name, "Stalled").get("reason") == "StorageFull"  # no flapping meanwhile
        assert len(study_trials(operator, name)) == len(during)
        small_volume.free()
        freed = time.monotonic()
        cluster.wait_for(lambda: _condition(cluster, name, "Stalled").get("status") == "False", 60, "Stalled=False")
        resumed = time.monotonic() - freed
        cluster.wait_for(lambda: job_status(cluster, name).get("phase") in ("Succeeded", "Failed"), 120, "the job")
        done = time.monotonic() - freed
    finally:
        operator.stop()
    trials = study_trials(operator, name)
    _assert_every_trial_once(cluster, name, 6, trials)
    cluster.wait_for(lambda: not trial_pods(cluster, name), 60, "no orphaned pods")
    assert not [s for s in cluster.services(NS) if s["metadata"]["name"].startswith(f"{name}-t")]
    cluster.wait_for(
        lambda: all(p.get("exit_code") is not None for p in cluster.process_log), 30, "every worker process ended"
    )
    assert operator.starts == 1
    log = operator.log.read_text()
    assert "Traceback" not in log, log[-3000:]  # the job's daemon never crashed (kopf would restart it)
    # Once: it waits for room instead of reopening, failing and stalling again every retry.
    assert log.count("WARNING openautoglm.k8s.controller: TuningJob default/volume-full: study journal") == 1
    print(
        f"\nfull volume: Stalled/StorageFull {noticed:.1f} s after it filled ({len(during)} trials in the study); "
        f"6 expected, {len(trials)} finished, 0 duplicates; Stalled=False {resumed:.1f} s and the job done "
        f"{done:.1f} s after space was freed"
    )
