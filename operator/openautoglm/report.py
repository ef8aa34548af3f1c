"""`openautoglm report`: how a study went, as an HTML page with PNG figures.

Figures: optimization history (best so far, pruned trials marked), each parameter's value
over trials, parameter importances (fANOVA), intermediate curves with pruned trials
marked, and for several objectives the Pareto front.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from openautoglm.engine.attrs import STUDY_BEST_CHECKPOINT
from openautoglm.engine.storage import open_storage

_COLORS = {
    TrialState.COMPLETE: "#1f77b4",
    TrialState.PRUNED: "#d62728",
    TrialState.FAIL: "#7f7f7f",
    TrialState.RUNNING: "#2ca02c",
}


@dataclasses.dataclass
class Report:
    html: Path
    figures: list[Path]


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display, ever
    import matplotlib.pyplot as plt

    return plt


def _save(fig, ax, path: Path, *, xlabel: str, ylabel: str, title: str, legend: bool = True) -> Path:
    """Label, save and close one figure (the same finish for every chart)."""
    plt = _plt()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _history(study: optuna.Study, trials: list[FrozenTrial], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    ax.scatter(
        [t.number for t in done],
        [t.value for t in done],
        color=_COLORS[TrialState.COMPLETE],
        label="completed",
        zorder=3,
    )
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    ax.scatter(
        [t.number for t in pruned],
        [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
        color=_COLORS[TrialState.PRUNED],
        marker="x",
        label="pruned (last value)",
        zorder=3,
    )
    best: float | None = None
    xs, ys = [], []
    for number, value in sorted((t.number, t.value) for t in done if t.value is not None):
        if best is None or (value > best if maximize else value < best):
            best = value
        xs.append(number)
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="black", label="best so far")
    return _save(
        fig,
        ax,
        path,
        xlabel="trial",
        ylabel=study.metric_names[0] if study.metric_names else "objective",
        title="Optimization history",
    )


def _parameters(trials: list[FrozenTrial], path: Path) -> Path | None:
    plt = _plt()
    names: list[str] = []
    for t in trials:
        names += [n for n in t.params if n not in names]
    if not names:
        return None
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        seen = [t for t in trials if name in t.params]
        dist = seen[0].distributions[name]
        if isinstance(dist, CategoricalDistribution):
            choices = [str(c) for c in dist.choices]
            ys = [choices.index(str(t.params[name])) for t in seen]
            ax.set_yticks(range(len(choices)), choices)
        else:
            ys = [t.params[name] for t in seen]
            if isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log:
                ax.set_yscale("log")
        ax.scatter([t.number for t in seen], ys, c=[_COLORS.get(t.state, "#000") for t in seen], s=18)
        ax.set_title(name)
        ax.set_xlabel("trial")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle("Parameter values over trials (blue completed, red pruned, grey failed)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _importances(study: optuna.Study, path: Path) -> Path | None:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return None
    try:
        imp = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):
        return None  # e.g. every trial had the same parameters
    if not imp:
        return None
    plt = _plt()
    names = list(imp)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    ax.barh(names, [imp[n] for n in names], color="#1f77b4")
    ax.set_xlabel("importance (fANOVA, normalised)")
    ax.set_title("Parameter importances")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _intermediate(trials: list[FrozenTrial], path: Path, metric: str) -> Path | None:
    curves = [t for t in trials if t.intermediate_values]
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for t in curves:
        steps = sorted(t.intermediate_values)
        vals = [t.intermediate_values[s] for s in steps]
        color = _COLORS.get(t.state, "#000")
        ax.plot(steps, vals, color=color, alpha=0.7, linewidth=1.2)
        if t.state == TrialState.PRUNED:
            ax.scatter([steps[-1]], [vals[-1]], color=color, marker="x", s=40, zorder=3)
    ax.plot([], [], color=_COLORS[TrialState.COMPLETE], label="completed")
    ax.scatter([], [], color=_COLORS[TrialState.PRUNED], marker="x", label="pruned here")
    return _save(fig, ax, path, xlabel="epoch", ylabel=metric, title="Intermediate values")


def _pareto(study: optuna.Study, trials: list[FrozenTrial], path: Path) -> Path | None:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    if not done:
        return None
    plt = _plt()
    front = {t.number for t in study.best_trials}
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.scatter(
        [t.values[0] for t in done if t.number not in front],
        [t.values[1] for t in done if t.number not in front],
        color="#aaaaaa",
        label="dominated",
    )
    ax.scatter(
        [t.values[0] for t in done if t.number in front],
        [t.values[1] for t in done if t.number in front],
        color="#d62728",
        label="Pareto front",
    )
    return _save(fig, ax, path, xlabel=names[0], ylabel=names[1], title="Pareto front")


def _checkpoint(study: optuna.Study, number: int) -> str:
    """Where the best trial's model is kept (trial.checkpoint), as the engine recorded it."""
    where = study.user_attrs.get(STUDY_BEST_CHECKPOINT)
    if not isinstance(where, dict) or where.get("number") != number or not where.get("path"):
        return ""
    claim = f" on claim <code>{html.escape(str(where['claim']))}</code>" if where.get("claim") else ""
    return f"<br>Checkpoint: <code>{html.escape(str(where['path']))}</code>{claim}"


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else html.escape(str(v))


def write_report(storage_url: str, job: str, out_dir: Path) -> Report:
    """Write ``index.html`` and the PNG figures of study ``job`` into ``out_dir``."""
    storage = open_storage(storage_url)
    names = [s.study_name for s in storage.get_all_studies()]
    matches = [n for n in names if n == job or n.endswith("/" + job)]
    if not matches:
        raise KeyError(f"no study named {job!r} in {storage_url}; studies there: {names}")
    study = optuna.load_study(study_name=matches[0], storage=storage)
    trials = study.get_trials(deepcopy=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    multi = len(study.directions) > 1
    metric = study.metric_names[0] if study.metric_names else "objective"
    figures = [
        f
        for f in (
            _pareto(study, trials, out_dir / "pareto_front.png")
            if multi
            else _history(study, trials, out_dir / "optimization_history.png"),
            _parameters(trials, out_dir / "parameters.png"),
            None if multi else _importances(study, out_dir / "importances.png"),
            _intermediate(trials, out_dir / "intermediate_values.png", metric),
        )
        if f is not None
    ]
    rows = []
    for t in trials:
        value = t.values if multi else t.value
        reason = t.user_attrs.get("stop_reason") or t.user_attrs.get("fail_reason") or ""
        rows.append(
            f"<tr><td>{t.number}</td><td>{t.state.name}</td><td>{_fmt(value)}</td>"
            f"<td><code>{html.escape(json.dumps(t.params, sort_keys=True))}</code></td>"
            f"<td>{html.escape(reason)}</td></tr>"
        )
    if multi:
        head = f"<p>Pareto front: trials {', '.join(str(t.number) for t in study.best_trials)}</p>"
    else:
        try:
            b = study.best_trial
            head = (
                f"<p>Best trial <b>{b.number}</b>: {html.escape(metric)} = <b>{b.value:.6g}</b><br>"
                f"<code>{html.escape(json.dumps(b.params, sort_keys=True))}</code>{_checkpoint(study, b.number)}</p>"
            )
        except ValueError:
            head = "<p>No trial completed.</p>"
    imgs = "\n".join(
        f'<figure><img src="{f.name}" alt="{f.stem}"><figcaption>{f.stem.replace("_", " ")}</figcaption></figure>'
        for f in figures
    )
    title = f"{html.escape(job)} — OpenAutoGLM Tune report"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}} img{{max-width:100%}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:90%}}</style></head><body>
<h1>TuningJob {html.escape(job)}</h1>{head}
{imgs}
<h2>Trials</h2><table><tr><th>#</th><th>state</th><th>value</th><th>parameters</th><th>note</th></tr>
{"".join(rows)}</table></body></html>"""
    index = out_dir / "index.html"
    index.write_text(page)
    return Report(index, figures)
