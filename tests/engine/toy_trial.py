"""A tiny trial program that follows the trial contract without training anything.

Used by engine tests as a `trial.command` so the reconcile loop (pruning, failures,
resume) is tested with real processes in seconds. Its curve: ``score`` rises towards
``1 - (x - 0.3)**2``; ``mode`` = ok | fail | crash | hang | mute changes its behaviour
(mute: trains as ok, but its /metrics accepts connections and never answers, as a hung exporter).
"""

import json
import os
import signal
import sys
import time

from prometheus_client import CollectorRegistry, Gauge, start_http_server

env = os.environ
params = json.loads(env["OPENAUTOGLM_TRIAL_PARAMS"])
epochs = int(env["OPENAUTOGLM_EPOCHS"])
rank = int(env.get("HOROVOD_RANK", "0"))
log_path = env["OPENAUTOGLM_TERMINATION_LOG"]
seconds = float(params.get("epoch_seconds", 0.25))


def finish(doc, code=0):
    with open(log_path, "w") as f:
        json.dump(doc, f)
    sys.exit(code)


signal.signal(signal.SIGTERM, lambda *_: finish({"status": "failed", "reason": "terminated", "rank": rank}, 143))
reg = CollectorRegistry()
metric = Gauge("openautoglm_trial_metric", "latest metric", ["metric"], registry=reg)
epoch_g = Gauge("openautoglm_trial_epoch", "epochs done", registry=reg)
mode = params.get("mode", "ok")
address = (env["OPENAUTOGLM_BIND_ADDRESS"], int(env["OPENAUTOGLM_METRICS_PORT"]))
if mode == "mute":
    import socket
    import threading

    mute = socket.create_server(address, backlog=64, reuse_port=False)
    held = []  # accepted and never answered (nor closed) until the process ends

    def hold() -> None:
        while True:
            held.append(mute.accept())

    threading.Thread(target=hold, daemon=True).start()
else:
    start_http_server(address[1], addr=address[0], registry=reg)
if mode == "fail":
    finish({"status": "failed", "reason": "toy failure on purpose", "rank": rank}, 1)
if mode == "crash":
    os._exit(3)  # no termination message at all
x = float(params.get("x", 0.3))
history = []
for e in range(1, epochs + 1):
    time.sleep(seconds if mode != "hang" else 3600)
    score = (1 - (x - 0.3) ** 2) * (1 - 0.5 / e)
    history.append(score)
    metric.labels("score").set(score)
    metric.labels("cost").set(10 * x)
    epoch_g.set(e)
finish(
    {
        "status": "completed",
        "reason": None,
        "metrics": {"score": history[-1], "cost": 10 * x},
        "best": {"score": max(history), "cost": 10 * x},
        "history": {"score": history},
        "epochs": epochs,
        "rank": rank,
        "info": {"params": params},
    }
)
