"""OpenAutoGLM Tune: hyperparameter tuning of distributed (Horovod) training.

The engine (reconcile step) runs trials through a backend: local processes
(``openautoglm tune``) or Kubernetes pods (the operator). ``AutoTrainer`` is the SDK.
"""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    # The SDK pulls in optuna and the runner: import it only when asked for.
    if name == "AutoTrainer":
        from openautoglm.sdk import AutoTrainer

        return AutoTrainer
    raise AttributeError(name)


__all__ = ["AutoTrainer", "__version__"]
