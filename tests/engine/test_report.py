"""`openautoglm report`: an HTML page and PNG figures that show something real."""

import subprocess
import sys

import numpy as np
from conftest import toy_job
from matplotlib import image

from openautoglm.config import Settings
from openautoglm.local.runner import run_local
from openautoglm.validation import validate_document

FAST = Settings(workdir=None, storage=None, local_tick_seconds=0.1, elapsed_save_seconds=1, log_level="WARNING")


def assert_real_picture(path, min_side=300):
    img = image.imread(str(path))
    assert img.ndim == 3 and min(img.shape[:2]) >= min_side, img.shape
    pixels = img[..., :3].reshape(-1, 3)
    colors = np.unique((pixels * 255).astype(np.uint8), axis=0)
    assert len(colors) > 50, f"{path.name}: only {len(colors)} colours"
    # not a blank canvas: a real share of the pixels is drawn on
    assert (pixels.mean(axis=1) < 0.95).mean() > 0.02, path.name


def test_report_writes_html_and_real_figures(tmp_path):
    doc = toy_job(
        "report",
        max_trials=8,
        parallelism=2,
        epochs=5,
        pruner="median",
        pruner_settings={"n_startup_trials": 2, "n_warmup_steps": 1},
        parameters=[
            {"name": "x", "type": "float", "low": 0.0, "high": 1.0},
            {"name": "width", "type": "int", "low": 1, "high": 64, "log": True},
            {"name": "mode", "type": "categorical", "choices": ["ok"]},
        ],
        warm_start=[{"x": 0.3, "width": 2}, {"x": 0.35, "width": 30}, {"x": 0.25, "width": 8}, {"x": 0.99}],
    )
    result = run_local(validate_document(doc), workdir=tmp_path / "w", settings=FAST)
    out = tmp_path / "report"
    cli = subprocess.run(
        [sys.executable, "-m", "openautoglm.cli", "report", result.storage, "--job", "report", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    names = {p.name for p in out.glob("*.png")}
    assert names == {"optimization_history.png", "parameters.png", "importances.png", "intermediate_values.png"}
    for png in out.glob("*.png"):
        assert_real_picture(png)
    page = (out / "index.html").read_text()
    assert "Best trial" in page and all(f'src="{n}"' in page for n in names)
    assert page.count("<tr>") == 1 + 8


def test_report_of_an_unknown_job_is_a_clear_error(tmp_path):
    journal = tmp_path / "s.journal"
    run = subprocess.run(
        [sys.executable, "-m", "openautoglm.cli", "report", str(journal), "--job", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "no study named 'nope'" in run.stderr
