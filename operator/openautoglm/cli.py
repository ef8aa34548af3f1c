"""`openautoglm` command line: tune, validate, operator, report, import-katib, ... (``openautoglm --help``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from openautoglm import config
from openautoglm.spec import sampler_name
from openautoglm.validation import InvalidTuningJob, load_tuning_job

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def _trial_rows(result) -> list[dict[str, Any]]:
    from openautoglm.engine.status import trial_summary

    recorded = list(result.job.spec.objective.additional_metrics)
    trials = [trial_summary(t, recorded) for t in result.study.get_trials(deepcopy=False)]
    directions = [o.direction for o in result.job.spec.objective.objectives]
    sign = 1 if directions[0] == "minimize" else -1
    order = {"Completed": 0, "Running": 1, "Pruned": 2, "Failed": 3, "Waiting": 4}

    def key(t: dict[str, Any]) -> tuple:
        v = t.get("value")
        first = v[0] if isinstance(v, list) else v
        return (order[t["state"]], sign * first if isinstance(first, (int, float)) else 0, t["number"])

    return sorted(trials, key=key)


def cmd_tune(args: argparse.Namespace) -> int:
    from rich.console import Console

    from openautoglm.engine import storage as storage_mod
    from openautoglm.engine.study import StudyMismatch
    from openautoglm.local.progress import ConsoleProgress, status_line, summary_table
    from openautoglm.local.runner import run_local

    cfg = config.load()
    path = Path(args.file)
    try:
        job = load_tuning_job(path)
    except InvalidTuningJob as err:
        print(err, file=sys.stderr)
        return EXIT_INVALID
    prometheus = job.spec.metrics.prometheus
    if job.spec.metrics.source == "prometheus" and not (prometheus and prometheus.url) and not cfg.prometheus_url:
        print(
            "error: spec.metrics.source is prometheus: give spec.metrics.prometheus.url "
            "or set OPENAUTOGLM_PROMETHEUS_URL",
            file=sys.stderr,
        )
        return EXIT_INVALID
    workdir = Path(args.workdir) / job.name if args.workdir else cfg.default_workdir(path, job.name)
    if args.gpus is not None:
        from openautoglm.local.gpus import CUDA_VISIBLE_DEVICES, visible_gpus

        # What the workers are given their own from (local/gpus.py), as if the runner saw only these.
        os.environ[CUDA_VISIBLE_DEVICES] = ",".join(visible_gpus(args.gpus, os.environ))
    # No terminal (CI, a log file): long lines stay whole instead of wrapping at 80 columns.
    console = Console(file=sys.stderr, soft_wrap=True)
    progress = ConsoleProgress(console, quiet=args.quiet)
    console.print(
        f"[bold]TuningJob {job.name}[/]: {job.spec.budget.max_trials} trials, "
        f"{job.spec.trial.workers} {job.spec.trial.launcher} workers each, parallelism {job.spec.budget.parallelism}, "
        f"sampler {sampler_name(job.spec)}, pruner {job.spec.early_stopping.pruner}",
        highlight=False,
    )
    try:
        result = run_local(
            job,
            workdir=workdir,
            storage=args.storage,
            fresh=args.fresh,
            on_outcome=progress,
            settings=cfg,
            base_dir=path.resolve().parent,
            job_file=path,
            on_edit=lambda msg: console.print(msg, highlight=False, markup=False),
        )
    except StudyMismatch as err:
        progress.close()
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    finally:
        progress.close()

    out = Console(width=None if sys.stdout.isatty() else 160)
    st = result.status
    if result.resumed and not result.interrupted and st.terminal and not args.quiet:
        console.print("(resumed from the stored study)", highlight=False)
    out.print(summary_table(st, _trial_rows(result)))
    out.print(status_line(st), highlight=False)
    if st.best:
        out.print(
            f"[bold]Best trial {st.best['number']}[/]: {job.spec.objective.objectives[0].metric} = "
            f"{st.best['value']:.6g}",
            highlight=False,
        )
        out.print("Best parameters: " + json.dumps(st.best["params"], sort_keys=True), highlight=False)
        if st.best.get("checkpoint"):
            out.print(f"Best checkpoint: {st.best['checkpoint']['path']}", highlight=False)
    for p in st.pareto:
        out.print(
            f"Pareto trial {p['number']}: {p.get('value')} {json.dumps(p['params'], sort_keys=True)}", highlight=False
        )
    out.print(
        f"Study storage: {storage_mod.describe(result.storage)} (study {result.study.study_name!r})", highlight=False
    )
    out.print(f"Trial logs: {(result.workdir / 'trials').resolve()}", highlight=False)
    if args.json:
        Path(args.json).write_text(json.dumps(st.to_dict(), indent=2))
    if result.interrupted:
        out.print("Interrupted: run the same command again to resume.", highlight=False)
        return EXIT_INTERRUPTED
    if st.phase == "Failed":
        out.print(f"[red]Job failed[/]: {st.reason}: {st.message}", highlight=False)
        return EXIT_FAILED
    out.print(f"Job {st.phase}: {st.reason}: {st.message}", highlight=False)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    worst = EXIT_OK
    for f in args.files:
        try:
            job = load_tuning_job(f)
        except InvalidTuningJob as err:
            print(err, file=sys.stderr)
            worst = EXIT_INVALID
        except OSError as err:
            print(f"{f}: cannot read: {err}", file=sys.stderr)
            worst = EXIT_INVALID
        else:
            print(
                f"{f}: TuningJob {job.name} is valid ({len(job.spec.parameters)} parameters, "
                f"sampler {sampler_name(job.spec)}, pruner {job.spec.early_stopping.pruner})"
            )
    return worst


def cmd_report(args: argparse.Namespace) -> int:
    from openautoglm.report import write_report

    try:
        report = write_report(args.storage, args.job, Path(args.out or f"report-{args.job}"))
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return EXIT_INVALID
    print(f"wrote {report.html} and {len(report.figures)} figures: {', '.join(f.name for f in report.figures)}")
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    from openautoglm import dashboard
    from openautoglm.engine import storage as storage_mod

    location = args.storage or dashboard.default_location()
    try:
        shelf = dashboard.StudyShelf(location)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    studies = shelf.get_all_studies()
    print(
        f"optuna-dashboard, read-only, on http://{args.host}:{args.port}/ over {storage_mod.describe(location)} "
        f"({len(studies)} studies now; new ones appear as they are written)",
        flush=True,
    )
    dashboard.serve(shelf, args.host, args.port)
    return EXIT_OK


def cmd_operator(args: argparse.Namespace) -> int:
    from openautoglm.k8s import handlers

    handlers.run(namespaces=args.namespace or None)
    return EXIT_OK


def cmd_import_katib(args: argparse.Namespace) -> int:
    from openautoglm.katib import main as import_katib

    return import_katib(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="openautoglm", description="Hyperparameter tuning of distributed training.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tune", help="run a TuningJob on this machine (trials as local Horovod processes)")
    t.add_argument("file", help="TuningJob YAML (the same file you would kubectl apply)")
    t.add_argument("--workdir", help="where studies and trial logs go (default: .openautoglm/ next to FILE)")
    t.add_argument("--storage", help="study storage: a journal file path or postgresql://user:pw@host/db")
    t.add_argument("--fresh", action="store_true", help="delete the stored study and start over")
    t.add_argument("--quiet", action="store_true", help="no progress, only the summary")
    t.add_argument("--json", metavar="PATH", help="also write the final status as JSON")
    t.add_argument(
        "--gpus",
        metavar="LIST",
        help="GPUs to share out, each worker its own (indices or UUIDs, comma-separated; none: CPU only); "
        "default: CUDA_VISIBLE_DEVICES, else the GPUs nvidia-smi lists",
    )
    t.set_defaults(func=cmd_tune)

    v = sub.add_parser("validate", help="check TuningJob files; report every problem with its field path")
    v.add_argument("files", nargs="+")
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("report", help="HTML page + PNG figures of a study (history, parameters, importances, curves)")
    r.add_argument("storage", help="the study storage: journal file path or postgresql:// URL")
    r.add_argument("--job", required=True, help="TuningJob name (the study name)")
    r.add_argument("--out", help="output folder (default: report-JOB)")
    r.set_defaults(func=cmd_report)

    d = sub.add_parser(
        "dashboard",
        help="optuna-dashboard, read-only, over the studies of a journal file, a folder of them or a database",
    )
    d.add_argument(
        "storage",
        nargs="?",
        help="journal file, folder (every *.journal under it: the operator's studies volume) or "
        "postgresql:// URL (default: OPENAUTOGLM_STORAGE, else OPENAUTOGLM_STUDY_DIR if it exists, "
        "else ./.openautoglm)",
    )
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 in a pod)")
    d.add_argument("--port", type=int, default=8080)
    d.set_defaults(func=cmd_dashboard)

    o = sub.add_parser("operator", help="run the Kubernetes operator (in-cluster or with your kubeconfig)")
    o.add_argument("--namespace", action="append", help="watch only this namespace (repeatable; default: all)")
    o.set_defaults(func=cmd_operator)

    k = sub.add_parser(
        "import-katib",
        help="convert a Katib Experiment into a TuningJob (YAML on stdout); "
        "exit 2 listing every field that cannot be mapped",
    )
    k.add_argument("file", help="Katib Experiment YAML (kubeflow.org/v1beta1), or - for stdin")
    k.add_argument("-o", "--output", metavar="OUT", help="write the TuningJob to OUT instead of stdout")
    k.add_argument(
        "--lossy",
        action="store_true",
        help="drop the fields that cannot be mapped (still listed on stderr) instead of failing",
    )
    k.set_defaults(func=cmd_import_katib)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=config.load().log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
