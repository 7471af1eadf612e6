"""Run a grid of LRA (task, mechanism) pairs one after another, resumably.

Each pair trains into ``out/<task>-<mechanism>``; a pair whose ``results.json``
exists is skipped, one with a ``last.pt`` but no results is resumed, so an
interrupted grid continues where it stopped. At the end the accuracy table
(``report.md``) and Figure 1 (``figure1.png``, from the runs' own throughput,
or from an ``lra-speed`` JSON) are written.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from leapformer._io import atomic_write_text

log = logging.getLogger(__name__)


def run_grid(tasks: Sequence[str], mechanisms: Sequence[str], out: str | Path, *,
             profile: str = "lite", seed: int = 0, data_dirs: dict[str, Path] | None = None,
             speed: dict | None = None, progress: bool = True, steps: int | None = None,
             overrides: dict | None = None,
             announce: Callable[[str], None] = log.info) -> dict:
    """Train every (task, mechanism) not yet done; returns ``{"runs", "report", "figure"}``.

    ``steps`` and ``overrides`` are passed to :func:`~leapformer.tasks.lra.run_lra`.
    """
    from leapformer.nn import MECHANISMS
    from leapformer.tasks.lra.run import run_lra
    from leapformer.tasks.lra.figures import plot_accuracy_throughput
    from leapformer.tasks.lra.report import (
        collect,
        figure1_points,
        render_report,
        render_table,
    )
    from leapformer.tasks.lra.sets import TASKS

    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"unknown tasks {bad}; known: {list(TASKS)}")
    bad = [m for m in mechanisms if m not in MECHANISMS]
    if bad:
        raise ValueError(f"unknown mechanisms {bad}; known: {sorted(MECHANISMS)}")
    out = Path(out)
    data_dirs = data_dirs or {}
    pairs = [(t, m) for t in tasks for m in mechanisms]
    for i, (task, mech) in enumerate(pairs, 1):
        run = out / f"{task}-{mech}"
        if (run / "results.json").exists():
            announce(f"[{i}/{len(pairs)}] {task} {mech}: done, skipped")
            continue
        resume = (run / "last.pt").exists()
        announce(f"[{i}/{len(pairs)}] {task} {mech}" + (" (resuming)" if resume else ""))
        t0 = time.perf_counter()
        res = run_lra(task, mech, profile=profile, out=run, data_dir=data_dirs.get(task),
                      seed=seed, resume=resume, progress=progress, steps=steps,
                      overrides=overrides)
        announce(f"[{i}/{len(pairs)}] {task} {mech}: test accuracy "
                 f"{100 * res['test_accuracy']:.2f}, {time.perf_counter() - t0:.0f} s")
    results = collect([out / f"{t}-{m}" for t, m in pairs])
    table = render_table(results)
    atomic_write_text(out / "report.md", render_report(results, speed))
    figure = None
    points, xlabel = figure1_points(results, speed)
    if points:
        figure = plot_accuracy_throughput(
            points, out / "figure1.png", xlabel=xlabel,
            title=f"LRA {profile} ({', '.join(tasks)}): accuracy vs throughput")
    atomic_write_text(out / "grid.json", json.dumps({"tasks": list(tasks),
                                                     "mechanisms": list(mechanisms),
                                                     "profile": profile, "seed": seed}) + "\n")
    return {"runs": results, "report": table, "figure": figure}
