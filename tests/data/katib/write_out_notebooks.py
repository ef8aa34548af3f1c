"""Write out, as YAML, the Katib Experiment each SDK / pipeline notebook of kubeflow/katib builds.

The notebooks (examples/v1beta1/sdk/*.ipynb, examples/v1beta1/kubeflow-pipelines/*.ipynb) build their
Experiment in Python and send it to a cluster; a migrating user has it as a YAML only once it is written
out. This runs the notebooks' own cells with the Katib SDK of the same commit, the cluster calls stubbed
(KatibClient.create_experiment and Kubeflow Pipelines' katib-launcher capture the Experiment instead), and
writes it as the SDK serializes it. Not run by the tests (they read the YAMLs); run it to refresh them:

    git -C katib checkout <commit>                 # the commit in README.md
    python -m venv /tmp/sdk && /tmp/sdk/bin/pip install ./katib/sdk/python/v1beta1 kubeflow-training==1.9.0 pyyaml
    /tmp/sdk/bin/python write_out_notebooks.py katib .
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import kubeflow.katib as katib
import yaml
from kubeflow.katib import ApiClient

COMMIT = "33c8ff4e5d1814b59abd308e6819e839e9906bc2"


def code(notebook: Path, index: int) -> str:
    cell = json.loads(notebook.read_text())["cells"][index]
    assert cell["cell_type"] == "code", (notebook, index)
    return "".join(cell["source"])


def run_cells(notebook: Path, *indexes: int) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    for i in indexes:
        exec(code(notebook, i), scope)  # the notebook's own cell
    return scope


def _block_literal(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


yaml.SafeDumper.add_representer(str, _block_literal)


def write(out: Path, name: str, header: list[str], experiment: dict[str, Any]) -> None:
    text = yaml.safe_dump(experiment, sort_keys=False, width=10_000)
    assert yaml.safe_load(text) == experiment, "the YAML does not read back as the Experiment"
    lines = [
        "Written out of a notebook of kubeflow/katib (Apache License 2.0, Copyright The Kubeflow Authors),",
        f"commit {COMMIT}:",
        *header,
        "The notebook's cells were run with the Katib SDK of that commit (sdk/python/v1beta1, with",
        "kubeflow-training 1.9.0) and the cluster calls stubbed; the Experiment they would create is",
        "serialized as the SDK sends it (ApiClient().sanitize_for_serialization). Nothing else is changed.",
    ]
    path = out / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"# {line}".rstrip() + "\n" for line in lines) + "---\n" + text)
    print("wrote", path)


def serialize(obj: Any) -> dict[str, Any]:
    return ApiClient().sanitize_for_serialization(obj)


class CapturingClient:
    """KatibClient without a cluster: tune() is the SDK's, create_experiment keeps the Experiment."""

    created: list[Any] = []

    def __init__(self, *_: Any, namespace: str = "default", **__: Any) -> None:
        self.namespace = namespace  # the SDK's default outside a cluster

    def create_experiment(self, experiment: Any, namespace: str | None = None) -> None:
        self.created.append(experiment)

    tune = katib.KatibClient.tune


def tune_experiment(notebook: Path, objective_cell: int, tune_cell: int) -> dict[str, Any]:
    """The Experiment of the notebook's katib_client.tune(...) call; its objective function from a file,
    as tune() reads the function's source (inspect.getsource)."""
    with tempfile.TemporaryDirectory() as tmp:
        module_path = Path(tmp) / "objective.py"
        module_path.write_text(code(notebook, objective_cell) + "\n")
        spec = importlib.util.spec_from_file_location("objective", module_path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        CapturingClient.created.clear()
        real, katib.KatibClient = katib.KatibClient, CapturingClient
        try:
            exec(code(notebook, tune_cell), {"train_mnist_model": module.train_mnist_model})
        finally:
            katib.KatibClient = real
    (experiment,) = CapturingClient.created
    return serialize(experiment)


def stub_kfp(launched: list[tuple[str, dict[str, Any]]]) -> None:
    """Kubeflow Pipelines as far as the notebooks use it: components record their arguments."""
    kfp, dsl, components = (types.ModuleType(n) for n in ("kfp", "kfp.dsl", "kfp.components"))

    def load_component_from_url(url: str) -> Any:
        def op(**arguments: Any) -> Any:
            launched.append((url, arguments))
            return types.SimpleNamespace(output="", outputs={})

        return op

    components.load_component_from_url = load_component_from_url  # type: ignore[attr-defined]
    dsl.pipeline = lambda **_: (lambda f: f)  # type: ignore[attr-defined]
    dsl.ContainerOp = lambda **arguments: launched.append(("ContainerOp", arguments))  # type: ignore[attr-defined]
    kfp.dsl, kfp.components = dsl, components  # type: ignore[attr-defined]
    sys.modules.update({"kfp": kfp, "kfp.dsl": dsl, "kfp.components": components})


def launcher_experiment(url: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The Experiment kubeflow/pipelines' katib-launcher component creates from its arguments."""
    assert url.endswith("katib-launcher/component.yaml"), url
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": arguments["experiment_name"], "namespace": arguments["experiment_namespace"]},
        "spec": arguments["experiment_spec"],
    }


def main(katib_checkout: Path, out: Path) -> None:
    sdk = katib_checkout / "examples" / "v1beta1" / "sdk"
    pipelines = katib_checkout / "examples" / "v1beta1" / "kubeflow-pipelines"

    nb = sdk / "cmaes-and-resume-policies.ipynb"
    scope = run_cells(nb, 4, 6, 8)
    write(
        out,
        "sdk/cmaes-and-resume-policies.yaml",
        [
            "  examples/v1beta1/sdk/cmaes-and-resume-policies.ipynb, cells[6] (In [46]) and cells[8] (In [47])",
            "The Experiment `experiment_from_volume_resume` of cells[8]: a copy of cells[6]'s `experiment`",
            "(cmaes-example) renamed from-volume-resume-cmaes, with resumePolicy FromVolume and maxTrialCount 4.",
            "The notebook creates three Experiments (KatibClient.create_experiment); the other two differ only in",
            "name, resumePolicy (unset, Never) and maxTrialCount (3, 4).",
        ],
        serialize(scope["experiment_from_volume_resume"]),
    )

    scope = run_cells(sdk / "nas-with-darts.ipynb", 3, 5)
    write(
        out,
        "sdk/nas-with-darts.yaml",
        [
            "  examples/v1beta1/sdk/nas-with-darts.ipynb, cells[5] (In [3])",
            "The Experiment `experiment` built there (created by the notebook with KatibClient.create_experiment).",
        ],
        serialize(scope["experiment"]),
    )

    write(
        out,
        "sdk/tune-train-from-func.yaml",
        [
            "  examples/v1beta1/sdk/tune-train-from-func.ipynb, cells[8] (In [13])",
            "The Experiment that the cell's katib_client.tune(...) call creates (objective function from cells[4]).",
            "KatibClient() is given no namespace: metadata.namespace is the SDK's default outside a cluster",
            '("default"; in a Kubeflow notebook, the notebook\'s namespace).',
        ],
        tune_experiment(sdk / "tune-train-from-func.ipynb", 4, 8),
    )
    write(
        out,
        "sdk/mnist-with-push-metrics-collection.yaml",
        [
            "  examples/v1beta1/sdk/mnist-with-push-metrics-collection.ipynb, cells[6] (In [2])",
            "The Experiment that the cell's katib_client.tune(...) call creates (objective function from cells[4]).",
        ],
        tune_experiment(sdk / "mnist-with-push-metrics-collection.ipynb", 4, 6),
    )

    launched: list[tuple[str, dict[str, Any]]] = []
    stub_kfp(launched)
    scope = run_cells(pipelines / "early-stopping.ipynb", 2, 4, 6, 8, 10)
    scope["median_stop"]()
    write(
        out,
        "kubeflow-pipelines/early-stopping.yaml",
        [
            "  examples/v1beta1/kubeflow-pipelines/early-stopping.ipynb, cells[8] (In [5]) and cells[10] (In [6])",
            "The Experiment that the pipeline's katib-launcher step creates: experiment_spec of cells[8], with the",
            "name and namespace the launcher is given in cells[10].",
        ],
        launcher_experiment(*launched[0]),
    )

    launched.clear()
    scope = run_cells(pipelines / "kubeflow-e2e-mnist.ipynb", 2, 5)
    scope["create_katib_experiment_task"]("mnist-e2e", "kubeflow-user-example-com", "200")  # cells[12]'s values
    write(
        out,
        "kubeflow-pipelines/kubeflow-e2e-mnist.yaml",
        [
            "  examples/v1beta1/kubeflow-pipelines/kubeflow-e2e-mnist.ipynb, cells[5] (In [3]) and cells[12] (In [7])",
            "The Experiment that create_katib_experiment_task (cells[5]) hands to the katib-launcher step, with the",
            'arguments of cells[12]: name "mnist-e2e", namespace "kubeflow-user-example-com", training_steps "200".',
        ],
        launcher_experiment(*launched[0]),
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
