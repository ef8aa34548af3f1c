"""The Python SDK, used the way the original Open-AutoGLM SDK is::

    from openautoglm import AutoTrainer
    result = AutoTrainer(model_name="tiny-gpt2", dataset="stdlib-docs", max_trials=50).hyperopt(
        objective="loss", direction="minimize", timeout=3600)
    result.best_params, result.best_value, result.study

It writes a TuningJob (the same resource the operator runs) and runs it with the local
engine. Models and data sets are built-in presets or local paths: nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import optuna

from openautoglm.engine.status import JobStatus
from openautoglm.local.runner import run_local
from openautoglm.spec import API_VERSION, KIND, MAX_NAME_LENGTH
from openautoglm.validation import validate_document

#: Where trials run: this machine, or a cluster running the operator (kubectl's context).
BACKENDS = ("local", "kubernetes")
#: Built-in model presets: name -> (task, task settings). Text models are built from a config.
MODEL_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "mlp": ("digits", {}),
    "tiny-gpt2": ("text-lm", {"n_layer": 2, "n_embd": 64, "n_head": 2}),
    "small-gpt2": ("text-lm", {"n_layer": 4, "n_embd": 128, "n_head": 4}),
}
#: Built-in data sets: name -> (task, task settings).
DATASETS: dict[str, tuple[str, dict[str, Any]]] = {
    "digits": ("digits", {}),
    "stdlib-docs": ("text-lm", {}),
}


@dataclasses.dataclass
class HyperoptResult:
    best_params: dict[str, Any] | None
    best_value: float | None
    #: The Optuna study, for deeper analysis (optuna.visualization, trials_dataframe()).
    #: None with the kubernetes backend: the study lives in the cluster (see ``storage``).
    study: optuna.Study | None
    #: The job's status: a JobStatus locally, the TuningJob's ``.status`` dict in a cluster.
    status: JobStatus | dict[str, Any]
    storage: str
    tuning_job: dict[str, Any]

    @property
    def best_checkpoint(self) -> dict[str, str] | None:
        """Where the best trial's checkpoint is kept (trial.checkpoint): ``{"path": ...}`` on this
        machine, ``{"claim": ..., "path": ...}`` (a directory on that PersistentVolumeClaim) in a
        cluster; None without trial.checkpoint, with ``keep: none``, or without a completed trial."""
        best = self.status.get("bestTrial") if isinstance(self.status, dict) else self.status.best
        return (best or {}).get("checkpoint")

    @property
    def pareto_front(self) -> list[dict[str, Any]]:
        if isinstance(self.status, dict):
            return self.status.get("paretoFront") or []
        return self.status.pareto


def _resolve(model_name: str, dataset: str) -> tuple[str, dict[str, Any]]:
    """Map (model, dataset) to a built-in task and its settings; never downloads."""
    settings: dict[str, Any] = {}
    model_path = Path(model_name).expanduser()
    if model_name in MODEL_PRESETS:
        model_task, model_settings = MODEL_PRESETS[model_name]
        settings.update(model_settings)
    elif model_path.is_dir() and (model_path / "config.json").exists():
        model_task = "text-lm"
        settings["model"] = str(model_path.resolve())
    else:
        raise ValueError(
            f"model_name {model_name!r} is neither a built-in preset {sorted(MODEL_PRESETS)} nor a local "
            "directory with a transformers checkpoint (config.json); models are never downloaded"
        )
    data_path = Path(dataset).expanduser()
    if dataset in DATASETS:
        data_task, data_settings = DATASETS[dataset]
        settings.update(data_settings)
    elif data_path.exists():
        data_task = "text-lm"
        settings["dataset"] = str(data_path.resolve())
    else:
        raise ValueError(
            f"dataset {dataset!r} is neither a built-in data set {sorted(DATASETS)} nor a local file or folder"
        )
    if model_task != data_task:
        raise ValueError(
            f"model {model_name!r} is for the {model_task} task but dataset {dataset!r} is for {data_task}"
        )
    return model_task, settings


class AutoTrainer:
    """Tune a model's training hyperparameters on a data set.

    Args:
        model_name: a preset (``mlp``, ``tiny-gpt2``, ``small-gpt2``) or a local directory
            holding a transformers checkpoint.
        dataset: a built-in data set (``digits``, ``stdlib-docs``) or a local text file/folder.
        max_trials: trial budget.
        search_space: TuningJob ``parameters`` (list of dicts); default: the task's own.
        workers: Horovod workers per trial.
        parallelism: trials at once.
        epochs: epochs per trial.
        sampler, pruner, seed: as in a TuningJob's algorithm / earlyStopping.
        task_settings: extra settings for the task (e.g. ``steps_per_epoch``).
        workdir: where the study and trial logs go (default ``./.openautoglm``).
        storage: study storage (journal path or postgresql:// URL).
    """

    def __init__(
        self,
        model_name: str,
        dataset: str,
        max_trials: int = 50,
        *,
        search_space: list[dict[str, Any]] | None = None,
        workers: int = 1,
        parallelism: int = 1,
        epochs: int = 10,
        sampler: str | None = None,
        pruner: str = "median",
        pruner_settings: dict[str, Any] | None = None,
        seed: int | None = None,
        task_settings: dict[str, Any] | None = None,
        name: str | None = None,
        workdir: str | Path | None = None,
        storage: str | None = None,
        backend: str = "local",
        namespace: str = "default",
        image: str | None = None,
        kubeconfig: str | None = None,
        poll_seconds: float = 5.0,
    ):
        from openautoglm_trial.tasks import default_search_space

        self.model_name = model_name
        self.dataset = dataset
        self.task, settings = _resolve(model_name, dataset)
        settings.update(task_settings or {})
        self.task_settings = settings
        self.max_trials = max_trials
        self.search_space = search_space if search_space is not None else default_search_space(self.task)
        self.workers, self.parallelism, self.epochs = workers, parallelism, epochs
        self.sampler, self.pruner, self.pruner_settings, self.seed = sampler, pruner, pruner_settings or {}, seed
        self.name = name
        self.workdir = Path(workdir) if workdir is not None else Path.cwd() / ".openautoglm"
        self.storage = storage
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r}: choose one of {sorted(BACKENDS)}")
        self.backend = backend
        self.namespace, self.image, self.kubeconfig, self.poll_seconds = namespace, image, kubeconfig, poll_seconds

    def tuning_job(
        self, objective: str | list[dict[str, str]] = "loss", direction: str = "minimize", timeout: int | None = None
    ) -> dict[str, Any]:
        """The TuningJob this trainer runs (also what you would ``kubectl apply``)."""
        obj: Any = (
            {"metrics": objective} if isinstance(objective, list) else {"metric": objective, "direction": direction}
        )
        spec: dict[str, Any] = {
            "objective": obj,
            "budget": {"maxTrials": self.max_trials, "parallelism": min(self.parallelism, self.max_trials)},
            "algorithm": {"sampler": self.sampler} if self.sampler else {},
            "earlyStopping": {
                "pruner": "none" if isinstance(objective, list) else self.pruner,
                "settings": {} if isinstance(objective, list) else self.pruner_settings,
            },
            "parameters": self.search_space,
            "trial": {
                "task": self.task,
                "taskSettings": self.task_settings,
                "epochs": self.epochs,
                "workers": self.workers,
            },
            "metrics": {"intervalSeconds": 1},
        }
        if timeout is not None:
            spec["budget"]["timeoutSeconds"] = int(timeout)
        if self.seed is not None:
            spec["algorithm"]["seed"] = self.seed
        if self.image is not None:
            spec["trial"]["image"] = self.image
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name or self._auto_name(spec)},
            "spec": spec,
        }

    def _auto_name(self, spec: dict[str, Any]) -> str:
        # Same trainer, same settings -> same name, so a rerun resumes its study.
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]
        base = re.sub(r"[^a-z0-9-]+", "-", f"{Path(self.model_name).name}-{self.task}".lower()).strip("-")
        base = base[: MAX_NAME_LENGTH - 9].strip("-") or "job"
        return f"{base if base[0].isalpha() else 'j' + base}-{digest}"[:MAX_NAME_LENGTH]

    def hyperopt(
        self,
        objective: str | list[dict[str, str]] = "loss",
        direction: str = "minimize",
        timeout: int | None = 3600,
        *,
        fresh: bool = False,
        progress: bool = True,
    ) -> HyperoptResult:
        """Run the search; return the best parameters and value (or the Pareto front)."""
        from openautoglm_trial.tasks import task_metrics

        names = [o["metric"] for o in objective] if isinstance(objective, list) else [objective]
        known = task_metrics(self.task)
        for n in names:
            if n not in known:
                raise ValueError(f"objective {n!r} is not a metric of the {self.task} task; choose from {known}")
        doc = self.tuning_job(objective, direction, timeout)
        job = validate_document(doc, "AutoTrainer's TuningJob")
        if self.backend == "kubernetes":
            return self._hyperopt_in_cluster(doc, progress)
        on_outcome = None
        if progress:
            from openautoglm.local.progress import ConsoleProgress

            on_outcome = ConsoleProgress()
        try:
            result = run_local(
                job, workdir=self.workdir / job.name, storage=self.storage, fresh=fresh, on_outcome=on_outcome
            )
        finally:
            if on_outcome is not None:
                on_outcome.close()
        return HyperoptResult(result.best_params, result.best_value, result.study, result.status, result.storage, doc)

    def _hyperopt_in_cluster(self, doc: dict[str, Any], progress: bool) -> HyperoptResult:
        """Submit the TuningJob to the cluster's operator and follow its status to the end."""
        import sys
        import time

        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException

        from openautoglm.spec import GROUP, PLURAL, VERSION

        config.load_kube_config(config_file=self.kubeconfig)
        api = client.CustomObjectsApi(client.ApiClient())
        doc = {**doc, "metadata": {**doc["metadata"], "namespace": self.namespace}}
        name = doc["metadata"]["name"]
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, doc)
        except ApiException as err:
            if err.status != 409:  # 409: submitted before; follow the existing job (resume)
                raise ValueError(f"the cluster rejected the TuningJob: {err.body}") from None
        last = None
        while True:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
            status = obj.get("status") or {}
            line = (status.get("phase"), status.get("progress"), (status.get("bestTrial") or {}).get("value"))
            if progress and line != last and status:
                print(
                    f"TuningJob {self.namespace}/{name}: {line[0]} · trials {line[1]} · best {line[2]}", file=sys.stderr
                )
                last = line
            if status.get("phase") in ("Succeeded", "Failed"):
                best = status.get("bestTrial") or {}
                return HyperoptResult(
                    best.get("params"), best.get("value"), None, status, status.get("studyStorage", ""), doc
                )
            time.sleep(self.poll_seconds)
