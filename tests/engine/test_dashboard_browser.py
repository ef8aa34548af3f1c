"""`openautoglm dashboard` on a finished study, loaded in a real headless browser (Debian's
Chromium): the page lists the study and shows its trials; a screenshot is kept as an artifact;
the dashboard's own API cannot change the study."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import toy_job
from test_report import FAST, assert_real_picture

from openautoglm.local.runner import run_local
from openautoglm.validation import validate_document

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Where the screenshot is kept (CI uploads or inspects it); ignored by git.
ARTIFACTS = Path(os.environ.get("OPENAUTOGLM_TEST_ARTIFACTS", REPO / "test-artifacts"))

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/install-services.sh)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _text(html: str) -> str:
    """The page's visible words, one space apart (styles and scripts dropped)."""
    html = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # The flags keep Chromium off the network it cannot reach here (see the machine notes).
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=15000",
            "--window-size=1400,1000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dashboard_shows_a_finished_study_and_cannot_change_it(tmp_path: Path) -> None:
    doc = toy_job(
        "dash-toy",
        max_trials=8,
        parallelism=2,
        epochs=4,
        pruner="median",
        pruner_settings={"n_startup_trials": 2, "n_warmup_steps": 1},
        parameters=[
            {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
            {"name": "width", "type": "int", "low": 1, "high": 64, "log": True},
        ],
    )
    workdir = tmp_path / "runs" / "dash-toy"
    result = run_local(validate_document(doc), workdir=workdir, settings=FAST)
    assert result.status.phase == "Succeeded"
    journal = Path(result.storage)
    before = journal.read_bytes()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "dashboard.log", "wb")
    # The folder, as the operator's volume would be given: the shelf finds the journal under it.
    server = subprocess.Popen(
        [sys.executable, "-m", "openautoglm.cli", "dashboard", str(tmp_path / "runs"), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = _get(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "dashboard.log").read_text()
                assert time.monotonic() < deadline, "the dashboard did not answer"
                time.sleep(0.3)
        [study] = studies
        assert study["study_name"] == "dash-toy"
        study_id = study["study_id"]
        detail = _get(f"{base}/api/studies/{study_id}?after=0")
        trials = detail["trials"]
        assert len(trials) == 8
        assert {t["state"] for t in trials} <= {"Complete", "Pruned"}
        assert {t["number"] for t in trials} == set(range(8))

        # The pages, as a person sees them, in a real browser.
        listing = _chromium(tmp_path, "--dump-dom", f"{base}/dashboard")
        assert listing.returncode == 0, listing.stderr[-2000:]
        assert "dash-toy" in listing.stdout
        page = f"{base}/dashboard/studies/{study_id}/trials"  # "Trials (List)"
        listed = _chromium(tmp_path, "--dump-dom", page)
        assert listed.returncode == 0, listed.stderr[-2000:]
        text = _text(listed.stdout)
        assert "8 Trials" in text, text[:2000]
        for t in trials:  # each trial, with the state the study holds, as the page shows it
            assert f"Trial {t['number']} {t['state']}" in text, (t["number"], t["state"], text[:2000])
        history = _text(_chromium(tmp_path, "--dump-dom", f"{base}/dashboard/studies/{study_id}").stdout)
        assert "Best Trial" in history and "Hyperparameter Importance" in history, history[:2000]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard-trials.png"
        shot.unlink(missing_ok=True)
        taken = _chromium(tmp_path, f"--screenshot={shot}", page)
        assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
        assert_real_picture(shot, min_side=900)

        # Read-only: the dashboard's delete and note calls fail (optuna-dashboard answers 500 to the
        # storage's refusal and logs it) and the journal is unchanged.
        for method, path, body in (
            ("DELETE", f"/api/studies/{study_id}", None),
            ("PUT", f"/api/studies/{study_id}/note", {"version": 1, "body": "hello"}),
        ):
            request = urllib.request.Request(
                base + path,
                method=method,
                data=None if body is None else json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 500, (method, path, refused.value.code)
        assert (tmp_path / "dashboard.log").read_text().count("the dashboard is read-only") >= 2
        assert [s["study_name"] for s in _get(f"{base}/api/studies")["study_summaries"]] == ["dash-toy"]
        assert journal.read_bytes() == before
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
