"""A training program that knows nothing of OpenAutoGLM: it prints (or writes, or serves)
Katib-style metrics. Options choose what it does; see ``--help``."""

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--mode", choices=["stdout", "file-text", "file-json", "prometheus"], default="stdout")
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--accuracy", type=float, nargs="*", help="accuracy of each epoch")
parser.add_argument("--loss", type=str, nargs="*", help="loss of each epoch ('nan' allowed)")
parser.add_argument("--epoch-seconds", type=float, default=0.0)
parser.add_argument("--file", help="metrics file (file modes)")
parser.add_argument("--file-delay", type=float, default=0.0, help="create the file this late")
parser.add_argument("--address", default=os.environ.get("OPENAUTOGLM_BIND_ADDRESS") or "127.0.0.1")
parser.add_argument("--port", type=int)
parser.add_argument("--wait-for", help="before the last epoch, wait until this file exists")
parser.add_argument("--then-sleep", type=float, default=0.0, help="sleep before exiting")
parser.add_argument("--exit-code", type=int, default=0)
parser.add_argument("--raise-error", help="raise ValueError(this) at the end")
parser.add_argument("--no-objective", action="store_true", help="print only loss and epoch")
parser.add_argument("--sigterm-marker", help="on SIGTERM, write this file and exit 0")
parser.add_argument("--record-argv", help="write sys.argv[1:] as JSON to this file")
args, unknown = parser.parse_known_args()

if args.record_argv:
    Path(args.record_argv).write_text(json.dumps(sys.argv[1:]))
if args.sigterm_marker:

    def _on_sigterm(signum, frame):
        Path(args.sigterm_marker).write_text("SIGTERM")
        sys.exit(0)

    signal.signal(signal.SIGTERM, _on_sigterm)

gauges = {}
if args.mode == "prometheus":
    from prometheus_client import Gauge, start_http_server

    start_http_server(args.port, addr=args.address)
    gauges = {name: Gauge(name, name) for name in ("accuracy", "loss", "epoch")}

if args.file and args.file_delay:
    time.sleep(args.file_delay)


def emit(values):
    if args.mode == "stdout":
        print(" ".join(f"{k}={v}" for k, v in values.items()), flush=True)
        print("a line without metrics", flush=True)
    elif args.mode == "file-text":
        with open(args.file, "a") as f:
            f.write("INFO " + " ".join(f"{k}={v}" for k, v in values.items()) + "\n")
    elif args.mode == "file-json":
        with open(args.file, "a") as f:
            record = {k: (str(v) if k == "loss" else v) for k, v in values.items()}
            f.write(json.dumps({**record, "timestamp": time.time(), "note": "x"}) + "\n")
    else:
        for name, value in values.items():
            gauges[name].set(value)


for epoch in range(1, args.epochs + 1):
    if args.wait_for and epoch == args.epochs:
        deadline = time.monotonic() + 20
        while not os.path.exists(args.wait_for) and time.monotonic() < deadline:
            time.sleep(0.05)
    accuracy = args.accuracy[epoch - 1] if args.accuracy else 0.5 + epoch / 10
    loss = float(args.loss[epoch - 1]) if args.loss else 1.5 - epoch / 5
    values = (
        {"epoch": epoch, "loss": loss} if args.no_objective else {"epoch": epoch, "accuracy": accuracy, "loss": loss}
    )
    emit(values)
    if math.isnan(loss):
        time.sleep(30)  # a diverged run that goes on: the supervisor must stop it
    time.sleep(args.epoch_seconds)

time.sleep(args.then_sleep)
print("training done", file=sys.stderr, flush=True)
if args.raise_error:
    raise ValueError(args.raise_error)
sys.exit(args.exit_code)
