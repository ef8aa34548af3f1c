"""A zero-work trial that follows the trial contract: it writes its result and exits.

What is left of a trial's cost when training costs nothing: the engine's own overhead
(bench/operator_scale.py) on top of starting a Python process.
"""

import json
import os
import sys
import time

# --sleep=S: a trial that takes S seconds (the many-jobs case's one-second trials).
for arg in sys.argv[1:]:
    if arg.startswith("--sleep="):
        time.sleep(float(arg.split("=", 1)[1]))
params = json.loads(os.environ["OPENAUTOGLM_TRIAL_PARAMS"])
with open(os.environ["OPENAUTOGLM_TERMINATION_LOG"], "w") as f:
    json.dump(
        {
            "status": "completed",
            "metrics": {"score": params["x"]},
            "best": {"score": params["x"]},
            "history": {"score": [params["x"]]},
            "epochs": 1,
        },
        f,
    )
