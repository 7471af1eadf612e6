"""Run a grid of LRA (task, mechanism) pairs one after another, resumably.

Each pair trains into ``out/<task>-<mechanism>``; a pair whose ``results.json``
exists is skipped, one with a ``last.pt`` but no results is resumed, so an
interrupted grid continues where it stopped (run the same command again). A
finished pair with fewer steps than asked is resumed to the new count. A pair
saved with other settings (profile, seed, data, profile fields, model) is
refused, naming the differing keys, unless ``overwrite`` (which retrains every
pair from scratch). At the end the accuracy table
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
             overrides: dict | None = None, overwrite: bool = False,
             command: str | None = None,
             announce: Callable[[str], None] = log.info) -> dict:
    """Train every (task, mechanism) not yet done; returns ``{"runs", "report", "figure"}``.

    ``steps``, ``overrides`` and ``command`` are passed to
    :func:`~leapformer.tasks.lra.run_lra`; ``overwrite`` retrains every pair.
    """
    from leapformer.nn import MECHANISMS
    from leapformer.tasks.lra.run import check_data_dir, run_lra
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
    bad = sorted(set(data_dirs) - set(tasks))
    if bad:
        raise ValueError(f"--data-dir names tasks {bad} that are not in the grid's tasks "
                         f"{list(tasks)}")
    for task, folder in data_dirs.items():
        check_data_dir(folder)
    pairs = [(t, m) for t in tasks for m in mechanisms]
    plan = {pair: _plan(out / f"{pair[0]}-{pair[1]}", *pair, profile=profile, seed=seed,
                        data_dir=data_dirs.get(pair[0]), steps=steps, overrides=overrides,
                        overwrite=overwrite) for pair in pairs}  # every refusal before training
    for i, (task, mech) in enumerate(pairs, 1):
        run = out / f"{task}-{mech}"
        if plan[task, mech] == "skip":
            announce(f"[{i}/{len(pairs)}] {task} {mech}: done, skipped")
            continue
        resume = plan[task, mech] == "resume"
        announce(f"[{i}/{len(pairs)}] {task} {mech}" + (" (resuming)" if resume else ""))
        t0 = time.perf_counter()
        res = run_lra(task, mech, profile=profile, out=run, data_dir=data_dirs.get(task),
                      seed=seed, resume=resume, overwrite=plan[task, mech] == "overwrite",
                      progress=progress, steps=steps, overrides=overrides, command=command)
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


def _plan(run: Path, task: str, mechanism: str, *, profile: str, seed: int, data_dir,
          steps: int | None, overrides: dict | None, overwrite: bool) -> str:
    """What to do with one pair's folder: ``"skip"`` (done with these settings),
    ``"resume"``, ``"overwrite"`` or ``"new"``; ValueError if it holds a run with
    other settings (and not ``overwrite``)."""
    from leapformer.tasks._skeleton import config_diff, holds_run
    from leapformer.tasks.lra.run import RESUME_KEYS, lra_config, lra_settings, saved_config

    if overwrite:
        return "overwrite"
    if not holds_run(run):
        return "new"
    done = (run / "results.json").is_file()
    if not done and not (run / "last.pt").is_file():
        return "overwrite"  # stopped before its first complete checkpoint: nothing to keep
    path = run / "config.json"
    if not path.is_file():  # a run made before config.json existed
        return "skip" if done else "resume"
    saved = saved_config(json.loads(path.read_text()))
    new = lra_config(task, mechanism, lra_settings(task, profile, steps=steps,
                                                   overrides=overrides),
                     profile=profile, seed=seed, data_dir=data_dir, mechanism_options=None)
    diff = config_diff(saved, new, RESUME_KEYS)
    if diff:
        raise ValueError(f"{run} holds a run with other settings (differing: "
                         f"{', '.join(diff)}); pass --overwrite to retrain every pair, or "
                         "choose another --out")
    if saved.get("steps", new["steps"]) > new["steps"]:
        raise ValueError(f"{run} was trained for {saved['steps']} steps, more than the "
                         f"{new['steps']} asked; pass --overwrite to retrain every pair, or "
                         "choose another --out")
    return "skip" if done and saved.get("steps") == new["steps"] else "resume"
