"""A program using the push client: the only helper program that imports our package."""

import openautoglm_trial as trial

lr = trial.params()["lr"]
for step in range(1, 4):
    trial.report(step, accuracy=min(1.0, lr * step * 100), loss=1.0 / step, **{"Validation-accuracy": 0.1 * step})
print("pushed", flush=True)
