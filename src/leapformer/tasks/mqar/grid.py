"""A resumable MQAR grid: mechanisms x widths x (seq_len, num_kv) cells x learning rates
x seeds, one run after another (docs/math.md §5.4), as in Zoology's Fig. 2 (Arora et
al. 2023, "Zoology: Measuring and Improving Recall in Efficient Language Models").

Each run trains into ``out/T<seq_len>-kv<num_kv>/<mechanism>-d<width>/lr<lr>-s<seed>``
(with ``mechanism_options``, ``<mechanism>`` is the label ``leap+head_norm=rms``).
A run whose ``results.json`` exists is skipped, one with a ``last.pt`` but no results
is resumed, so an interrupted grid continues where it stopped. For every (cell,
mechanism, width, seed) the learning rate with the best *validation* accuracy is kept
(ties: the first in ``lrs``) and its *test* accuracy is reported. With ``accept``
(e.g. 0.99), once one learning rate of a (cell, mechanism, width, seed) reaches that
validation accuracy, its remaining learning rates are not run (a recall that is
already solved cannot be improved by more than ``1 - accept``).

At the end ``best.json`` (the kept runs), ``report.md`` and ``figure.png`` (accuracy
vs width, one panel per cell) are written.

Defaults (:data:`GRID_DEFAULTS`) come from a calibration on one CPU thread (see
``docs/math.md`` §5.4): ``512 // num_kv`` sequences per batch (512 queries and 8192
tokens per step in each default cell; Zoology's batches are 4-8x larger), 1000
steps, learning rates {1e-3, 3e-3, 1e-2}, a short convolution before each
attention. Softmax learns in a sudden transition whose step grows with the
width and falls with the learning rate: at (256, 16) width 64 needed lr 1e-2
(99.9% after 700 steps), width 128 lr 3e-3 (99.5% after 1000; lr 1e-2 stayed at
1%), at (128, 8) width 256 lr 1e-3 (97.4% after 600). Hence one learning rate per
width of the sweep. The full default grid (72 runs per learning rate and seed)
takes about 20 CPU hours per seed on one thread, two thirds of it at width 256.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from leapformer._io import atomic_write_text
from leapformer.tasks.mqar.run import batch_for

log = logging.getLogger(__name__)

#: The grid of the MQAR experiment (CPU-sized; see the module docstring).
GRID_DEFAULTS: dict = {
    "mechanisms": ["softmax", "linear", "elu", "performer", "cosformer", "leap"],
    "widths": [32, 64, 128, 256],
    "cells": [(64, 4), (128, 8), (256, 16)],
    "lrs": [1e-3, 3e-3, 1e-2],
    "seeds": [0],
    "steps": 1000,
    "queries_per_batch": 512,
    "vocab": 8192,
    "short_conv": True,
}


def run_dir(out: str | Path, seq_len: int, num_kv: int, mechanism: str, width: int,
            lr: float, seed: int) -> Path:
    """The folder of one run of the grid (``mechanism``: its label, with any options)."""
    return Path(out) / f"T{seq_len}-kv{num_kv}" / f"{mechanism}-d{width}" / f"lr{lr:g}-s{seed}"


def parse_cell(text: str) -> tuple[int, int]:
    """``"64:4"`` -> ``(64, 4)``: ``seq_len:num_kv``; ValueError naming the text."""
    a, sep, b = str(text).partition(":")
    try:
        if not sep:
            raise ValueError
        cell = (int(a), int(b))
    except ValueError:
        raise ValueError(f"a cell is SEQ_LEN:NUM_KV (e.g. 64:4), got {text!r}") from None
    if cell[0] < 1 or cell[1] < 1:
        raise ValueError(f"a cell needs a positive seq_len and num_kv, got {text!r}")
    return cell


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_grid(out: str | Path, *, mechanisms: Sequence[str] = GRID_DEFAULTS["mechanisms"],
             widths: Sequence[int] = GRID_DEFAULTS["widths"],
             cells: Sequence[tuple[int, int]] = GRID_DEFAULTS["cells"],
             lrs: Sequence[float] = GRID_DEFAULTS["lrs"],
             seeds: Sequence[int] = GRID_DEFAULTS["seeds"], steps: int = GRID_DEFAULTS["steps"],
             queries_per_batch: int = GRID_DEFAULTS["queries_per_batch"],
             vocab: int = GRID_DEFAULTS["vocab"], short_conv: bool = GRID_DEFAULTS["short_conv"],
             accept: float | None = None, progress: bool = True, command: str | None = None,
             run_options: dict | None = None, mechanism_options: dict | None = None,
             announce: Callable[[str], None] = log.info) -> dict:
    """Train every run of the grid not yet done, keep the best learning rate per (cell,
    mechanism, width, seed), write ``best.json``, ``report.md`` and ``figure.png``.

    ``run_options``: more keyword arguments of :func:`~leapformer.tasks.mqar.run_mqar`
    (e.g. ``{"n_train": 5000, "eval_every": 100}``). ``mechanism_options``: keyword
    options of every mechanism's attention (e.g. ``{"head_norm": "rms"}``); the runs are
    filed and reported under :func:`~leapformer.report.names.mechanism_label`. Returns
    ``{"runs": [...kept...], "report": markdown, "figure": path or None, "trained": n,
    "skipped": n}``.
    """
    from leapformer.models.mqar import MQARConfig, MQARModel
    from leapformer.nn import MECHANISMS
    from leapformer.report.names import mechanism_label
    from leapformer.tasks.mqar.report import (
        collect,
        plot_accuracy_vs_width,
        render_report,
        select_best,
    )
    from leapformer.tasks.mqar.run import run_mqar

    for name, values in (("mechanisms", mechanisms), ("widths", widths), ("cells", cells),
                         ("lrs", lrs), ("seeds", seeds)):
        if not values:
            raise ValueError(f"{name} must not be empty")
    bad = [m for m in mechanisms if m not in MECHANISMS or not MECHANISMS[m].full]
    if bad:
        raise ValueError(f"mechanisms {bad} are unknown or have no causal form; use some of "
                         f"{sorted(n for n, c in MECHANISMS.items() if c.full)}")
    if accept is not None and not 0.0 < accept <= 1.0:
        raise ValueError(f"accept must be in (0, 1], got {accept!r}")
    cells = [tuple(c) for c in cells]
    options = dict(run_options or {})
    clash = set(options) & {"d_model", "seq_len", "num_kv", "vocab", "lr", "seed", "steps",
                            "short_conv", "out", "resume", "progress", "command",
                            "mechanism_options"}
    if clash:
        raise ValueError(f"run_options cannot set {sorted(clash)} (set by the grid)")
    mech_opts = dict(mechanism_options or {})
    label = {m: mechanism_label(m, mech_opts) for m in mechanisms}
    for m in mechanisms:  # every option checked before hours of other runs
        if "/" in label[m] or "\\" in label[m] or label[m].startswith("."):
            raise ValueError(f"mechanism_options {mech_opts} make {label[m]!r}, not a folder "
                             "name (no '/', '\\' or leading '.')")
        for width in widths:
            MQARModel(MQARConfig(vocab=vocab, d_model=width, attention=m, layers=1,
                                 heads=options.get("heads", 1), max_length=2,
                                 short_conv=False, mechanism_options=mech_opts))
    out = Path(out)
    plan = [(c, m, w, s, lr) for c in cells for m in mechanisms for w in widths for s in seeds
            for lr in lrs]
    trained = skipped = 0
    for i, ((T, K), mech, width, seed, lr) in enumerate(plan, 1):
        tag = f"[{i}/{len(plan)}] T={T} kv={K} {label[mech]} d={width} lr={lr:g} seed={seed}"
        run = run_dir(out, T, K, label[mech], width, lr, seed)
        if (run / "results.json").exists():
            announce(f"{tag}: done, skipped")
            skipped += 1
            continue
        if accept is not None:
            solved = [r for r in (_read(run_dir(out, T, K, label[mech], width, x, seed)
                                        / "results.json") for x in lrs if x != lr)
                      if r and (r.get("best_valid_accuracy") or 0.0) >= accept]
            if solved:
                announce(f"{tag}: skipped, lr={solved[0]['lr']:g} reached validation "
                         f"accuracy {solved[0]['best_valid_accuracy']:.4f} >= {accept}")
                skipped += 1
                continue
        resume = (run / "last.pt").exists()
        announce(tag + (" (resuming)" if resume else ""))
        t0 = time.perf_counter()
        opts = {"batch_size": batch_for(K, queries_per_batch), **options}
        res = run_mqar(mech, d_model=width, seq_len=T, num_kv=K, vocab=vocab, lr=lr,
                       seed=seed, steps=steps, short_conv=short_conv, out=run, resume=resume,
                       progress=progress, command=command, mechanism_options=mech_opts, **opts)
        trained += 1
        announce(f"{tag}: test accuracy {100 * res['test_accuracy']:.2f} (validation "
                 f"{100 * (res['best_valid_accuracy'] or 0):.2f}), "
                 f"{time.perf_counter() - t0:.0f} s")
    wanted = {run_dir(out, T, K, label[m], w, lr, s) for (T, K), m, w, s, lr in plan}
    results = [r for r in collect([out]) if Path(r["_path"]).parent in wanted]
    kept = select_best(results)
    atomic_write_text(out / "best.json", json.dumps(
        {"settings": {"mechanisms": list(mechanisms), "widths": list(widths),
                      "cells": [list(c) for c in cells], "lrs": list(lrs), "seeds": list(seeds),
                      "steps": steps, "queries_per_batch": queries_per_batch, "vocab": vocab,
                      "short_conv": short_conv, "accept": accept, "run_options": options,
                      "mechanism_options": mech_opts},
         "runs": [{k: r.get(k) for k in ("_path", "attention", "d_model", "seq_len", "num_kv",
                                          "seed", "lr", "best_valid_accuracy", "test_accuracy",
                                          "state_bytes", "train_wall_s")} for r in kept]},
        indent=1) + "\n")
    report = render_report(results, command=command,
                           focus=label["leap"] if "leap" in label else "auto")
    atomic_write_text(out / "report.md", report)
    figure = plot_accuracy_vs_width(results, out / "figure.png") if kept else None
    return {"runs": kept, "report": report, "figure": figure, "trained": trained,
            "skipped": skipped}
