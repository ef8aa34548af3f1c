"""A tiny trial program that follows the trial contract without training anything.

Used by engine tests as a `trial.command` so the reconcile loop (pruning, failures,
resume) is tested with real processes in seconds. Its curve: ``score`` rises towards
``1 - (x - 0.3)**2``; ``mode`` = ok | fail | crash | hang | mute changes its behaviour
(mute: trains as ok, but its /metrics accepts connections and never answers, as a hung exporter).

Hostile modes train as ok, each with one thing a tenant could do to the shared engine:

* ``huge-metrics``: /metrics answers 200 MiB (streamed, no Content-Length), then a good result;
* ``trickle-metrics``: /metrics sends one byte every 1.5 s, forever, then a good result;
* ``inf-epoch``: /metrics exports ``openautoglm_trial_epoch +Inf``, then a good result;
* ``nested-result``: the termination message is 2,000 nested brackets (under 4096 bytes);
* ``overflow-result``: the termination message has ``"epochs": 1e300`` and non-finite values.
"""

import json
import os
import signal
import socket
import sys
import threading
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
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
    sys.exit(code)


HUGE_BLOCK = (b"# " + b"x" * 1021 + b"\n") * 1024  # 1 MiB of comment lines
HUGE_BLOCKS = 200
TRICKLE_SECONDS = 1.5
#: 2,000 nested brackets inside an otherwise good message: 4,000 + 60 bytes
NESTED_RESULT = '{"status":"completed","metrics":{"score":0.5},"info":' + "[" * 2000 + "]" * 2000 + "}"
OVERFLOW_RESULT = (
    '{"status":"completed","reason":null,"metrics":{"score":1e999,"cost":NaN},"best":{"score":Infinity},'
    '"history":{"score":[1e308,1' + "0" * 400 + ',-Infinity]},"epochs":1e300,"rank":0,"seconds":1e400}'
)


def serve_hostile(address, mode):
    """A /metrics that answers too much, or too slowly, to every connection."""
    server = socket.create_server(address, backlog=64)

    def answer(conn):
        try:
            conn.recv(65536)
            if mode == "huge-metrics":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                for _ in range(HUGE_BLOCKS):
                    conn.sendall(HUGE_BLOCK)
                return
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
            sent = 0
            while True:  # the head byte by byte, then comment bytes, forever
                conn.sendall(head[sent : sent + 1] or b"#")
                sent += 1
                time.sleep(TRICKLE_SECONDS)
        except OSError:
            pass  # the reader gave up
        finally:
            conn.close()

    def accept():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


signal.signal(signal.SIGTERM, lambda *_: finish({"status": "failed", "reason": "terminated", "rank": rank}, 143))
reg = CollectorRegistry()
metric = Gauge("openautoglm_trial_metric", "latest metric", ["metric"], registry=reg)
epoch_g = Gauge("openautoglm_trial_epoch", "epochs done", registry=reg)
mode = params.get("mode", "ok")
address = (env["OPENAUTOGLM_BIND_ADDRESS"], int(env["OPENAUTOGLM_METRICS_PORT"]))
if mode in ("huge-metrics", "trickle-metrics"):
    serve_hostile(address, mode)
elif mode == "mute":
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
    epoch_g.set(float("inf") if mode == "inf-epoch" else e)
if mode == "nested-result":
    finish(NESTED_RESULT)
if mode == "overflow-result":
    finish(OVERFLOW_RESULT)
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
