"""import-katib on malformed Experiments: a clear refusal naming the field, never an exception.

Issue 22: ``parameters: oops`` and ``metricStrategies: [null, x]`` raised AttributeError, and the
CLI exited 1 with a traceback. Every field of every vendored Experiment is swapped here for values
of other types (a string, a number, a list, a mapping, null ...), one field at a time, then
several at random: :func:`convert` returns a Conversion or raises :class:`NotAnExperiment` with a
message naming the field, and ``openautoglm import-katib`` exits 0 or 2.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from katib_experiments import DATA, JOB_POD, experiment

from openautoglm import cli
from openautoglm.katib import Conversion, MalformedExperiment, NotAnExperiment, convert, lossy, render

FILES = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*.yaml"))
#: Values of every JSON type, and YAML's odd ones, to put where another type is.
SWAPS: list[Any] = [
    "oops",
    7,
    -1.5,
    math.nan,
    True,
    None,
    [None, "x"],
    ["a", 1],
    {"a": None},
    {},
    [],
    {1: "x"},
]
Path_ = tuple[str | int, ...]


def experiments(name: str) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((DATA / name).read_text())
    return [d for d in docs if isinstance(d, dict) and d.get("kind") == "Experiment"]


def fields(node: Any, path: Path_ = ()) -> Iterator[Path_]:
    """Every field and list item below ``node`` (not the document itself)."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        yield (*path, key)
        yield from fields(value, (*path, key))


def swapped(doc: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)
    return out


def dotted(path: Path_) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def answer(doc: dict[str, Any], path: Path_ | None = None, *, rendered: bool = False) -> None:
    """convert() returns (and the result renders), or refuses naming ``path``, its parent or a child."""
    try:
        conversion = convert(doc)
    except MalformedExperiment as err:
        assert err.problems and all(reason for _, reason in err.problems)
        if path is not None:
            where = dotted(path)
            assert any(p.startswith(where) or where.startswith(p) for p, _ in err.problems), (where, err.problems)
        return
    except NotAnExperiment as err:  # kind or apiVersion swapped
        assert str(err)
        return
    assert isinstance(conversion, Conversion)
    assert all(isinstance(p, str) and reason for p, reason in conversion.unmapped)
    if rendered:  # PyYAML is slow: the field-by-field sweep leaves this to the random one
        yaml.safe_load(render(conversion))


# ----------------------------------------------------------------------------- the cases of the issue
@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"parameters": "oops"}, "spec.parameters"),
        ({"objective": {"type": "minimize", "objectiveMetricName": "loss", "metricStrategies": [None, "x"]}}, None),
    ],
)
def test_malformed_fields_are_named(spec: dict[str, Any], path: str | None) -> None:
    with pytest.raises(MalformedExperiment) as refused:
        convert(experiment(**spec))
    problems = dict(refused.value.problems)
    if path:
        assert problems == {path: "must be a list, got 'oops'"}
    else:
        assert problems == {
            "spec.objective.metricStrategies[0]": "must not be null",
            "spec.objective.metricStrategies[1]": "must be a mapping, got 'x'",
        }


def test_the_cli_refuses_malformed_input_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = experiment(parameters="oops")
    exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"] = "python3 x.py"
    f = tmp_path / "exp.yaml"
    f.write_text(yaml.safe_dump(exp))
    for flags in ([], ["--lossy"]):
        assert cli.main(["import-katib", *flags, str(f)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and "Traceback" not in err
        assert "2 fields of the wrong type (Kubernetes would refuse the Experiment)" in err
        assert "spec.parameters: must be a list, got 'oops'" in err
        assert f"{JOB_POD}.containers[0].command: must be a list (the exec form" in err
        assert "Nothing written." in err


def test_unreadable_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        "binary.yaml": b"\xff\xfe\x00kind: Experiment",
        "deep.yaml": b"[" * 1500 + b"]" * 1500,  # PyYAML composes recursively
        "self.yaml": b"apiVersion: kubeflow.org/v1beta1\nkind: Experiment\nspec: &a\n  x: *a\n",
    }
    for name, data in cases.items():
        f = tmp_path / name
        f.write_bytes(data)
        assert cli.main(["import-katib", str(f)]) == 2, name
        assert "Traceback" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- every field, swapped
@pytest.mark.parametrize("name", FILES)
def test_every_field_swapped_for_other_types(name: str) -> None:
    """Each field of the file gets three of SWAPS (rotating, so that every type lands at every depth)."""
    for doc in experiments(name):
        for i, path in enumerate(fields(doc)):
            for k in (0, 4, 8):
                answer(swapped(doc, path, SWAPS[(i + k) % len(SWAPS)]), path)


# ----------------------------------------------------------------------------- several at once, then the CLI
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.sampled_from(SWAPS[:6]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
DOCS = [doc for name in FILES for doc in experiments(name)]
mutations = st.sampled_from(DOCS).flatmap(
    lambda doc: st.tuples(
        st.just(doc), st.lists(st.tuples(st.sampled_from(list(fields(doc))), json_values), min_size=1, max_size=4)
    )
)


@settings(
    max_examples=150,
    derandomize=True,  # the same examples on every run
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(mutations)
def test_mutated_experiments_never_raise(mutated: tuple[dict[str, Any], list[tuple[Path_, Any]]]) -> None:
    """Several fields of one Experiment at once, with random JSON values; then what the CLI validates."""
    doc, changes = mutated
    for path, value in changes:
        try:
            doc = swapped(doc, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier change removed the path
            continue
    answer(doc, rendered=True)
    try:
        conversion = convert(doc)
    except NotAnExperiment:
        return
    lossy.problems(conversion.job, "fuzz")  # the converted job's validation: problems, no exception
