"""Learning curves of LRA runs: training loss and validation accuracy against the step.

Every run folder holds ``metrics.jsonl`` next to its ``results.json``: a ``train``
record every ``log_every`` steps (``loss``: the mean training loss since the last
record) and an ``eval`` record every ``eval_every`` steps (``accuracy``, ``loss`` on
the validation split). :func:`learning_curves` reads them for one task, grouped as
the report groups runs (:func:`leapformer.tasks.lra.report.group_cells`: mechanism and
settings, seeds together), and averages the seeds step by step.
:func:`render_curves` writes the markdown table (validation accuracy and training
loss at each evaluation step, one column pair per mechanism) and
:func:`plot_curves` the figure (two panels; the band is the seeds' range).

A resumed run may have logged a step twice; the last record of a step counts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from leapformer._io import read_jsonl

log = logging.getLogger(__name__)


def read_metrics(path: str | Path) -> tuple[dict[int, float], dict[int, float]]:
    """``(train loss by step, validation accuracy by step)`` from one ``metrics.jsonl``;
    a line that is not JSON is an error naming the file and line."""
    train: dict[int, float] = {}
    valid: dict[int, float] = {}
    for rec in read_jsonl(path):
        step = rec.get("step")
        if not isinstance(step, int):
            continue
        if rec.get("kind") == "train" and rec.get("loss") is not None:
            train[step] = float(rec["loss"])
        elif rec.get("kind") == "eval" and rec.get("accuracy") is not None:
            valid[step] = float(rec["accuracy"])
    return train, valid


def _mean_over_runs(series: list[dict[int, float]]) -> dict[int, tuple[float, float, float]]:
    """``step -> (mean, min, max)`` over the runs that logged that step, for the steps
    every run logged."""
    steps = set(series[0])
    for s in series[1:]:
        steps &= set(s)
    out = {}
    for step in sorted(steps):
        vals = np.array([s[step] for s in series])
        out[step] = (float(vals.mean()), float(vals.min()), float(vals.max()))
    return out


def learning_curves(results: list[dict], task: str) -> dict[str, dict]:
    """``{label: {"seeds": [...], "train": {step: (mean, min, max)}, "valid": {...}}}``
    for the runs of ``task`` (``results`` as :func:`~leapformer.tasks.lra.report.collect`
    returns them, with ``_path``); runs without ``metrics.jsonl`` are skipped with a
    warning. Raises ValueError when no run of the task has one."""
    from leapformer.tasks.lra.report import group_cells

    cells = {label: cell for (label, t), cell in group_cells(results).items() if t == task}
    curves = {}
    for label in sorted(cells, key=lambda m: (not m.startswith("softmax"), m)):
        train, valid, seeds = [], [], []
        for run in cells[label].runs:
            metrics = Path(run.get("_path", "")).parent / "metrics.jsonl"
            if not metrics.is_file():
                log.warning("learning curves: %s has no metrics.jsonl; skipped", metrics.parent)
                continue
            t, v = read_metrics(metrics)
            if t and v:
                train.append(t)
                valid.append(v)
                seeds.append(run.get("seed"))
            else:
                log.warning("learning curves: %s has no %s records; skipped", metrics,
                            "training" if not t else "validation")
        if seeds:
            curves[label] = {"seeds": seeds, "train": _mean_over_runs(train),
                             "valid": _mean_over_runs(valid)}
            logged = set().union(*(set(v) for v in valid))
            if len(curves[label]["valid"]) < len(logged):
                log.warning("learning curves: the seeds of %s evaluated at different steps; "
                            "only the %d steps all of them share are drawn", label,
                            len(curves[label]["valid"]))
    if not curves:
        known = sorted({r.get("task") for r in results})
        raise ValueError(f"no run of task {task!r} has a metrics.jsonl with training and "
                         f"validation records (tasks of the runs: {', '.join(map(str, known))})")
    return curves


def _loss_at(train: dict[int, tuple], step: int) -> float | None:
    """The training loss logged at ``step``, or at the last step before it."""
    before = [s for s in train if s <= step]
    return train[max(before)][0] if before else None


def render_curves(curves: dict[str, dict], task: str) -> list[str]:
    """Markdown lines: validation accuracy (%) / training loss at every evaluation step
    that all the runs of a mechanism logged, mean over seeds."""
    labels = list(curves)
    steps = sorted({s for c in curves.values() for s in c["valid"]})
    seeds = "; ".join(f"{m}: {len(c['seeds'])}" for m, c in curves.items())
    lines = [f"## Learning curves: {task}", "",
             ("Validation accuracy (%) / training loss (the mean over the last logging "
              f"window) at each evaluation, mean over seeds (seeds: {seeds}):"), "",
             "| step | " + " | ".join(labels) + " |", "|---:|" + "---:|" * len(labels)]
    for step in steps:
        cells = []
        for m in labels:
            v = curves[m]["valid"].get(step)
            loss = _loss_at(curves[m]["train"], step)
            if v is None:
                cells.append("-")
            else:
                cells.append(f"{100 * v[0]:.1f} / " + ("-" if loss is None else f"{loss:.3f}"))
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot_curves(curves: dict[str, dict], path: str | Path, *, task: str) -> Path:
    """Two panels, training loss and validation accuracy against the step, one line per
    mechanism (mean over seeds, band = the seeds' range); PNG at ``path``."""
    from leapformer.tasks.lra.figures import _pyplot, _save

    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, c) in enumerate(curves.items()):
        color = colors[i % len(colors)]
        for ax, series, scale in ((ax_loss, c["train"], 1.0), (ax_acc, c["valid"], 100.0)):
            steps = sorted(series)
            mean = [scale * series[s][0] for s in steps]
            ax.plot(steps, mean, color=color, label=f"{label} ({len(c['seeds'])} seeds)",
                    marker="o" if len(steps) < 30 else None, markersize=3)
            if len(c["seeds"]) > 1:
                ax.fill_between(steps, [scale * series[s][1] for s in steps],
                                [scale * series[s][2] for s in steps], color=color, alpha=0.15)
    ax_loss.set(xlabel="step", ylabel="training loss", title=f"{task}: training loss")
    ax_acc.set(xlabel="step", ylabel="validation accuracy (%)",
               title=f"{task}: validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=8)
    return _save(fig, path)
