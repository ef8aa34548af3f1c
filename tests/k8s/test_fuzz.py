"""Fuzz (issue 13, case 9): generated TuningJobs through `openautoglm validate`, the CRD's admission
and a running operator.

The jobs come from fuzz_jobs.py: documents straight from the CRD's openAPIV3Schema (the model's own),
plausible jobs built from its enums and bounds, and those mutated (a required field dropped, a wrong
type, out-of-range numbers, unknown fields, bad names, low > high, duplicates, huge and unicode
strings, NaN-like values, cross-field mistakes). What a user relies on:

* ``validate`` never crashes: a job is valid or InvalidTuningJob lists problems, each at a field path;
* admission (what the emulated API server runs) names a field in every objection;
* the two agree, except for the documented differences below (each with its reason);
* a job the API server admits is what validate sees in the operator (defaults keep the meaning);
* through the API: a refused job is a 422 whose causes name fields; an admitted job reaches
  Running or a terminal phase (an admitted job validate refuses: Failed/InvalidSpec naming the
  field), and the operator neither dies nor logs a traceback.

Hypothesis runs derandomized (the same jobs on every run); each test prints its counts.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import admission
import kubernetes
import yaml
from fuzz_jobs import SPEC, jobs
from hypothesis import HealthCheck, given, settings
from test_operator import NS, Operator

from openautoglm.cli import EXIT_INVALID, EXIT_OK
from openautoglm.k8s.controller import job_document
from openautoglm.spec import GROUP, NAME_RE, PLURAL, VERSION, TuningJob
from openautoglm.validation import InvalidTuningJob, Problem, validate_document

#: In-process jobs (validate + admission); through the API server and the operator. See docs/testing.md.
N_JOBS = 1100
N_CLUSTER = 240
BATCH = 12
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

#: Rejected by validate, admitted by the CRD: (problem path, message fragment, why). The operator
#: validates every job before running it, so these end Failed/InvalidSpec naming the same field.
MODEL_ONLY: list[tuple[str, str, str]] = [
    (r"spec\.algorithm\.(settings.*|sampler)$", "", "sampler settings: checked against the sampler registry"),
    (r"spec\.earlyStopping\.settings.*$", "", "pruner settings: checked against the pruner registry"),
    (r"spec\.trial\.taskSettings\..*$", "unknown setting", "a task's settings live in the trial runtime"),
    (r"spec\.parameters\[\d+\]\.name$", "is not a hyperparameter", "a task's hyperparameters: trial runtime"),
    (r"spec\.parameters\[\d+\]\.(choices\[\d+\]|value)$", "task's bounds", "mixed scalars: CEL cannot order them"),
    (r"spec\.parameters\[\d+\]\.when\..*$", "defined before|is not one of", "order and values: over the CEL budget"),
    (r"spec\.trial\.command(\[\d+\])?$", "trialParameters", "findAll over command items: over the CEL budget"),
    (r"spec\.metrics\.collector\.filter$", "regular expression|two groups", "CEL cannot compile a regex from data"),
    (r"spec\.trial\.podTemplate.*$", "", "podtemplate checks without a CRD rule (tests/unit/test_podtemplate.py)"),
    (
        r"spec\.warmStart\[\d+\]\.params\..*$",
        "choices|range|number|integer|fixed at",
        "mixed scalars: over the CEL budget",
    ),
]
#: Admitted by validate, refused by the CRD: (admission message pattern, why).
CRD_ONLY: list[tuple[str, str]] = [
    (r"^spec\.warmStart: Too many", "a bound that keeps the warm-start rule's CEL cost in budget"),
    (r"^spec\.parameters\[\d+\]\.when: Too many", "a bound that keeps the when rule's CEL cost in budget"),
    (r"^spec\.warmStart\[\d+\]\.params: Too many", "CEL cost bound"),
    (r"^<nil>: Invalid value: \"null\": some validation rules were not checked", "the API server's note"),
]


def _names_a_field(path: str, doc: Any) -> bool:
    """A path into the job: a top-level field, then .field or [index] steps, the first step under
    spec a field of the spec's schema or, for an unknown field, of the document."""
    m = re.match(r"^(apiVersion|kind|metadata|spec)($|[.\[])", path)
    if not m:
        return False
    if not path.startswith("spec."):
        return True
    first = re.split(r"[.\[]", path[len("spec.") :])[0]
    spec = doc.get("spec") if isinstance(doc, dict) else None
    return first in SPEC["properties"] or (isinstance(spec, dict) and first in spec)


def _validate(doc: Any) -> tuple[TuningJob | None, list[Problem]]:
    """(the job, []) or (None, its problems): anything but InvalidTuningJob is a crash (the test fails)."""
    try:
        return validate_document(doc), []
    except InvalidTuningJob as err:
        assert err.problems, "InvalidTuningJob without problems"
        return None, err.problems


def _model_only(p: Problem) -> str | None:
    for path, fragment, why in MODEL_ONLY:
        if re.match(path, p.path) and re.search(fragment, p.message):
            return why
    return None


def _crd_only(message: str) -> str | None:
    for pattern, why in CRD_ONLY:
        if re.search(pattern, message):
            return why
    return None


def _related(a: str, b: str) -> bool:
    """One path is the other or contains it (spec.parameters contains spec.parameters[4].when.x)."""
    return a == b or any(long.startswith(short + sep) for short, long in ((a, b), (b, a)) for sep in ".[")


def _no_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    return [_no_nulls(v) for v in value] if isinstance(value, list) else value


def _same_job(stored: TuningJob, given: Any) -> bool:
    """The same spec, but for nulls inside the pod template, which the API server prunes by the
    Pod schema and the model keeps (a free-form overlay that reads a null as absent)."""
    a, b = (j.spec.model_dump(exclude={"trial": {"pod_template"}}) for j in (stored, given))
    return a == b and _no_nulls(stored.spec.trial.pod_template) == _no_nulls(given.spec.trial.pod_template)


def check_job(doc: dict[str, Any], counts: collections.Counter) -> dict[str, Any]:
    """validate and admission on one document; assertions on each and on their agreement."""
    job, problems = _validate(doc)
    for p in problems:
        assert p.message.strip(), f"a problem without a message at {p.path}"
        assert _names_a_field(p.path, doc), f"validate's problem names no field: {p}"
    stored, objections = admission.admit(doc, strict=True)  # strict: kubectl apply's default
    for message in objections:
        path = message.split(": ", 1)[0]
        assert _names_a_field(path, doc) or _crd_only(message), f"admission's objection names no field: {message}"
    counts["validate accepted" if not problems else "validate rejected"] += 1
    counts["admission accepted" if not objections else "admission rejected"] += 1
    if objections and problems:
        counts["agree: both rejected"] += 1
        v_paths = [p.path for p in problems]
        a_paths = [m.split(": ", 1)[0] for m in objections]
        if any(_related(a, v) for a in a_paths for v in v_paths):
            counts["  ... naming a common field"] += 1
    elif not objections and not problems:
        counts["agree: both accepted"] += 1
    elif objections:
        unexplained = [m for m in objections if not _crd_only(m)]
        assert not unexplained, f"the CRD refuses what validate accepts: {unexplained}\n{json.dumps(doc)[:3000]}"
        counts["differ: CRD only (documented)"] += 1
    else:
        unexplained = [p for p in problems if not _model_only(p)]
        assert not unexplained, (
            f"the CRD admits what validate refuses: {[str(p) for p in unexplained]}\n{json.dumps(doc)[:3000]}"
        )
        counts["differ: validate only (documented)"] += 1
    if not objections:
        # The operator validates the stored object (pruned, defaulted): the same verdict, the same job.
        seen, refused = _validate(job_document(stored))
        assert bool(refused) == bool(problems), f"{[str(p) for p in refused]}\n{json.dumps(doc)[:3000]}"
        assert seen is None or _same_job(seen, job), json.dumps(doc)[:3000]
    return {"valid": not problems, "admitted": not objections}


def _summary(title: str, counts: collections.Counter, seconds: float) -> str:
    lines = [f"{title} ({seconds:.1f} s):"] + [f"  {k}: {v}" for k, v in counts.items()]
    return "\n".join(lines)


def test_fuzzed_jobs_through_validate_and_admission(tmp_path: Path) -> None:
    t0 = time.monotonic()
    counts: collections.Counter = collections.Counter()
    docs: list[tuple[dict[str, Any], bool]] = []

    @settings(FUZZ, max_examples=N_JOBS)
    @given(jobs())
    def one(case: tuple[str, dict[str, Any], list[str]]) -> None:
        origin, doc, _mutations = case
        counts[f"jobs: {origin}"] += 1
        result = check_job(doc, counts)
        docs.append((doc, result["valid"]))

    one()
    counts["seconds: generate, validate, admit"] = round(time.monotonic() - t0, 1)
    counts["jobs (distinct)"] = len({json.dumps(d, sort_keys=True, default=str) for d, _ in docs})
    # the command line on the same jobs, in one process: the same verdict, no traceback
    files = []
    for i, (doc, _) in enumerate(docs):
        path = tmp_path / f"job-{i}.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        files.append(path)
    cli = subprocess.run(
        [sys.executable, "-m", "openautoglm.cli", "validate", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in cli.stderr, cli.stderr[-5000:]
    assert cli.returncode in (EXIT_OK, EXIT_INVALID), cli.stderr[-5000:]
    valid_by_cli = {line.split(": TuningJob ")[0] for line in cli.stdout.splitlines() if ": TuningJob " in line}
    for path, (_, valid) in zip(files, docs, strict=True):
        assert (str(path) in valid_by_cli) == valid, f"`openautoglm validate {path}` disagrees with validate_document"
    counts["CLI agrees with validate_document"] = len(files)
    counts["seconds: in all"] = round(time.monotonic() - t0, 1)
    print("\n" + _summary("fuzz: validate and admission", counts, time.monotonic() - t0))
    assert counts["jobs (distinct)"] >= 1000
    assert counts["validate accepted"] >= 0.15 * len(docs) and counts["validate rejected"] >= 0.4 * len(docs)


# ----------------------------------------------------------------------------- through the cluster
def _unique_name(doc: dict[str, Any], i: int) -> None:
    # The fuzzer mutates metadata too (a list, a string): only a mapping's name is made unique.
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if isinstance(name, str) and NAME_RE.match(name) and len(name) <= 40:
        doc["metadata"]["name"] = f"fz{i}-{name}"[:40].rstrip("-")


def cluster_cases() -> list[tuple[str, dict[str, Any], list[str]]]:
    """The jobs sent to the API server, each with a unique name (the same ones on every run)."""
    cases: list[tuple[str, dict[str, Any], list[str]]] = []

    @settings(FUZZ, max_examples=N_CLUSTER)
    @given(jobs(cheap=True))
    def collect(case: tuple[str, dict[str, Any], list[str]]) -> None:
        cases.append(case)

    collect()
    for i, (_, doc, _) in enumerate(cases):
        _unique_name(doc, i)
    return cases


def test_fuzzed_jobs_through_the_api_server_and_a_running_operator(cluster, tmp_path: Path) -> None:
    t0 = time.monotonic()
    cases = cluster_cases()
    counts: collections.Counter = collections.Counter()
    operator = Operator(cluster, tmp_path)
    operator.start()
    api = kubernetes.client.CustomObjectsApi(cluster.api_client())
    tuningjobs = f"{GROUP}/{VERSION}/{PLURAL}"
    try:
        for start in range(0, len(cases), BATCH):
            admitted: dict[str, bool] = {}  # name -> valid for the model
            for origin, doc, mutations in cases[start : start + BATCH]:
                counts[f"jobs: {origin}"] += 1
                # The URL names the group, version and kind (kubectl picks it from them: a wrong one
                # is "no matches for kind" before any request); the body's own are the server's.
                doc = {**doc, "apiVersion": f"{GROUP}/{VERSION}", "kind": "TuningJob"}
                objections = admission.review(doc, strict=True)
                try:
                    api.create_namespaced_custom_object(
                        GROUP, VERSION, NS, PLURAL, json.loads(json.dumps(doc)), field_validation="Strict"
                    )
                except kubernetes.client.ApiException as err:
                    body = json.loads(err.body or "{}")
                    assert err.status in (400, 422), f"{err.status} {err.body[:2000]} for {mutations}"
                    if err.status == 400:
                        counts["API refused (400, not JSON/not an object)"] += 1
                        continue
                    causes = body["details"]["causes"]
                    assert causes and all(
                        _names_a_field(c["field"], doc) or _crd_only(f"{c['field'] or '<nil>'}: {c['message']}")
                        for c in causes
                    ), causes
                    assert objections or body["message"].find("metadata.name") >= 0, body
                    counts["API refused (422, fields named)"] += 1
                else:
                    assert not objections, f"the API server admitted what admission refuses: {objections}"
                    counts["API admitted"] += 1
                    stored = cluster.get(tuningjobs, NS, doc["metadata"]["name"])
                    admitted[doc["metadata"]["name"]] = not _validate(job_document(stored))[1]

            def settled(names: dict[str, bool] = admitted) -> bool:
                return all(
                    (cluster.get(tuningjobs, NS, n) or {}).get("status", {}).get("phase")
                    in ("Running", "Succeeded", "Failed")
                    for n in names
                )

            cluster.wait_for(settled, 60, f"jobs {sorted(admitted)} to run or end")
            for name, valid in admitted.items():
                obj = cluster.get(tuningjobs, NS, name)
                status = obj["status"]
                if valid:
                    assert status.get("reason") != "InvalidSpec", status
                    counts[f"admitted and valid: {status['phase']}"] += 1
                else:
                    _, problems = _validate(job_document(obj))
                    assert status["phase"] == "Failed" and status["reason"] == "InvalidSpec", status
                    assert problems[0].path in status["message"], (status, problems)
                    counts["admitted, refused by the operator: Failed/InvalidSpec naming the field"] += 1
                api.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
            assert operator.proc.poll() is None, "the operator died"
        cluster.wait_for(lambda: not cluster.list(tuningjobs, NS), 60, "every job to be deleted")
        cluster.wait_for(lambda: not cluster.pods(NS), 60, "every trial pod to be deleted")
    finally:
        operator.stop()
    log = operator.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 2000 : log.find("Traceback") + 4000]
    assert not cluster.api.internal_errors, cluster.api.internal_errors[:3]
    counts["trial pods started"] = len(cluster.process_log)
    print("\n" + _summary("fuzz: API server and operator", counts, time.monotonic() - t0))
    assert counts["API admitted"] >= 0.3 * len(cases) and counts["API refused (422, fields named)"] >= 0.3 * len(cases)
