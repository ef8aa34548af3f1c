"""Fields a tenant writes and the shared operator acts on (issue 21): each hostile value is refused
as early as it can be, by `openautoglm validate` and by the CRD's schema and CEL rules alike, with
its field path; the harmless forms next to them stay admitted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import admission
import pytest
import yaml
from helpers import HOSTILE_FIELDS, digits_job

from openautoglm import promql
from openautoglm.validation import InvalidTuningJob, load_tuning_job, validate_document


def _job(section: str, value: Any) -> dict[str, Any]:
    doc = digits_job()
    doc["spec"][section] = value
    return doc


@pytest.mark.parametrize(
    ("section", "value", "path", "fragment"), [c[1:] for c in HOSTILE_FIELDS], ids=[c[0] for c in HOSTILE_FIELDS]
)
def test_validate_refuses_it_with_its_path(section: str, value: Any, path: str, fragment: str) -> None:
    with pytest.raises(InvalidTuningJob) as err:
        validate_document(_job(section, value))
    at_path = [str(p) for p in err.value.problems if p.path == f"spec.{path}"]
    assert at_path, [str(p) for p in err.value.problems]
    assert any(fragment in p for p in at_path), at_path


@pytest.mark.parametrize(
    ("section", "value", "path", "fragment"), [c[1:] for c in HOSTILE_FIELDS], ids=[c[0] for c in HOSTILE_FIELDS]
)
def test_the_crd_refuses_it_with_its_path(section: str, value: Any, path: str, fragment: str) -> None:
    problems = admission.review(_job(section, value))
    assert any(p.startswith(f"spec.{path}: ") for p in problems), problems


def test_no_placeholder_outside_the_four_is_filled() -> None:
    # Every placeholder is a plain name: nothing in a template is evaluated.
    query = 'sum(x{namespace="{namespace}",job="{job}",trial="{trial}",m="{metric}"})'
    filled = promql.fill(query, {"namespace": "team-a", "job": "digits", "trial": 7, "metric": "loss"})
    assert filled == 'sum(x{namespace="team-a",job="digits",trial="7",m="loss"})'
    with pytest.raises(ValueError, match="placeholder"):
        promql.fill("x{trial:300000000}", {"namespace": "a", "job": "b", "trial": 1, "metric": "m"})


def test_the_crd_and_validate_agree_on_random_templates() -> None:
    # The CEL rule is a regex built from the placeholder names (RE2 has no lookahead): the same
    # verdict as the model on a few hundred templates, checked by the real admission path.
    import random

    rng = random.Random(21)
    pieces = ["{", "}", "job", "trial", "metric", "namespace", "=", '"', "x", ":", ".", "[0]", "~", " "]
    for _ in range(300):
        query = "q" + "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        by_model = not promql.template_problems(query)
        by_crd = not [
            p for p in admission.review(_job("metrics", {"source": "prometheus", "prometheus": {"query": query}}))
        ]
        assert by_model == by_crd, query


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("budget.maxTrials", "12"),
        ("budget.parallelism", True),
        ("trial.epochs", "3"),
        ("metrics.intervalSeconds", "5"),
        ("parameters[0].log", "true"),
        ("parameters[0].low", "0.001"),
    ],
)
def test_validate_types_as_strictly_as_the_api_server(field: str, value: Any) -> None:
    from helpers import mutate

    doc = mutate(digits_job(), f"spec.{field}", value)
    with pytest.raises(InvalidTuningJob) as err:
        validate_document(doc)
    assert any(p.path == f"spec.{field}" for p in err.value.problems), err.value
    assert any(p.startswith(f"spec.{field}: ") for p in admission.review(doc))


def test_numbers_read_from_yaml_as_kubectl_reads_them(tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML) reads `1e-4` as a string; kubectl (go-yaml) as a number. Strict validation
    # must not refuse what the API server takes, and an integral 12.0 is an integer there too.
    doc = digits_job()
    doc["spec"]["budget"]["maxTrials"] = 12.0
    text = yaml.safe_dump(doc).replace("low: 0.001", "low: 1e-3")
    assert "low: 1e-3" in text
    path = tmp_path / "job.yaml"
    path.write_text(text)
    job = load_tuning_job(path)
    assert job.spec.parameters[0].low == 1e-3
    assert job.spec.budget.max_trials == 12


def test_cli_validate_names_the_hostile_field(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(_job("storage", {"journal": {"path": "../team-b/x.journal"}})))
    out = subprocess.run(
        [sys.executable, "-m", "openautoglm.cli", "validate", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    assert "spec.storage.journal.path" in out.stdout + out.stderr
