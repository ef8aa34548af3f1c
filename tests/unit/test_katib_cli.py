"""`openautoglm import-katib` on the command line: exit codes, what it prints, --lossy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from katib_experiments import DATA, JOB_POD, experiment, load, paths, reason

from openautoglm import cli
from openautoglm.katib import convert


# ============================================================================= the CLI
def test_cli_converts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = DATA / "hp-tuning" / "tpe.yaml"
    assert cli.main(["import-katib", str(src)]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out) == convert(load("hp-tuning/tpe.yaml")).job  # the YAML round-trips
    assert err == ""
    job_file = tmp_path / "job.yaml"
    job_file.write_text(out)
    assert cli.main(["validate", str(job_file)]) == 0
    capsys.readouterr()
    assert cli.main(["import-katib", str(src), "-o", str(tmp_path / "out.yaml")]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "wrote" in err
    assert yaml.safe_load((tmp_path / "out.yaml").read_text()) == convert(load("hp-tuning/tpe.yaml")).job


def test_cli_lists_unmappable_fields(capsys: pytest.CaptureFixture[str]) -> None:
    src = DATA / "hp-tuning" / "simple-pbt.yaml"
    assert cli.main(["import-katib", str(src)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "spec.algorithm.algorithmName: 'pbt' has no equivalent" in err
    assert "spec.resumePolicy" not in err  # dropped with a note since issue 22
    assert "--lossy" in err


def test_cli_lossy(capsys: pytest.CaptureFixture[str]) -> None:
    src = DATA / "hp-tuning" / "simple-pbt.yaml"
    assert cli.main(["import-katib", "--lossy", str(src)]) == 0
    out, err = capsys.readouterr()
    job = yaml.safe_load(out)
    assert job == convert(load("hp-tuning/simple-pbt.yaml")).job
    assert "algorithm" not in job["spec"] or "sampler" not in job["spec"]["algorithm"]
    assert "spec.algorithm.algorithmName" in err and "dropped (--lossy)" in err
    assert "# NOT converted (dropped by --lossy):" in out


def test_cli_lossy_without_a_trial_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["import-katib", "--lossy", str(DATA / "trial-template" / "trial-configmap-source.yaml")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "spec.trial" in err and "Nothing written" in err


def test_cli_rejects_other_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "job.yaml"
    f.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap"}))
    assert cli.main(["import-katib", str(f)]) == 2
    assert "exactly one Katib Experiment" in capsys.readouterr().err


def test_console_script() -> None:
    """The installed `openautoglm` entry point (or the module when it is not on PATH), reading stdin."""
    exe = shutil.which("openautoglm")
    argv = ([exe] if exe else [sys.executable, "-m", "openautoglm.cli"]) + ["import-katib", "-"]
    proc = subprocess.run(
        argv,
        input=(DATA / "early-stopping" / "median-stop.yaml").read_text(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    job = yaml.safe_load(proc.stdout)
    assert job["spec"]["earlyStopping"] == {
        "pruner": "median",
        "settings": {"n_startup_trials": 1, "n_warmup_steps": 2},
    }


REFUSED = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*.yaml"))


@pytest.mark.parametrize("name", REFUSED)
def test_the_lossy_hint_is_true(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 22: every refusal ended with "--lossy writes the TuningJob without these fields", and
    --lossy then failed with "give exactly one of task or command", words a Katib user never saw."""
    code = cli.main(["import-katib", str(DATA / name)])
    err = capsys.readouterr().err
    if code == 0 or "cannot be mapped to a TuningJob" not in err:
        return  # converted, or not an Experiment Kubernetes would take
    lossy = cli.main(["import-katib", "--lossy", str(DATA / name)])
    lossy_err = capsys.readouterr().err
    for text in (err, lossy_err):
        assert "exactly one of task" not in text and "Traceback" not in text
    if "--lossy writes the TuningJob without these fields" in err:
        assert lossy == 0, lossy_err
    else:
        assert "--lossy cannot write a TuningJob" in err
        assert lossy == 2 and "--lossy cannot write a TuningJob" in lossy_err
        assert "Nothing written" in lossy_err


def test_lossy_says_what_it_could_not_produce_in_katib_terms(capsys: pytest.CaptureFixture[str]) -> None:
    src = str(DATA / "trial-template" / "trial-configmap-source.yaml")
    assert cli.main(["import-katib", src]) == 2
    err = capsys.readouterr().err
    assert "--lossy cannot write a TuningJob: it would have no trial command" in err
    assert cli.main(["import-katib", "--lossy", src]) == 2
    err = capsys.readouterr().err
    assert "no trial command" in err and "spec.trialTemplate" in err and "spec.trial.task" not in err


def test_a_parameter_named_like_a_flag_does_not_drop_the_command_silently() -> None:
    """Issue 22: a parameter named `--lr` is unmapped, and --lossy dropped the command that uses it
    without naming the command."""
    exp = experiment()
    exp["spec"]["parameters"][0]["name"] = "--lr"
    exp["spec"]["trialTemplate"]["trialParameters"][0]["reference"] = "--lr"
    c = convert(exp)
    assert paths(c) == {"spec.parameters[0].name", f"{JOB_POD}.containers[0].command"}
    why = reason(c, f"{JOB_POD}.containers[0].command")
    assert "${trialParameters.learningRate}" in why and "'--lr'" in why and "spec.parameters[0]" in why
