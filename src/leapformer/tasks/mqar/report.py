"""The MQAR report: accuracy vs model width and vs decoding state size (docs/math.md §5.4).

Reads the ``results.json`` of MQAR runs (:func:`collect`), keeps for each (cell,
mechanism, width, seed) the learning rate with the best validation accuracy
(:func:`select_best`, as Zoology reports the best of its learning-rate sweep:
Arora et al. 2023, "Zoology: Measuring and Improving Recall in Efficient Language
Models"), and aggregates the seeds of each (cell, mechanism, width) as a mean ± 95%
interval (:mod:`leapformer.report.intervals`): t over seeds when there are two or
more, else a bootstrap over the run's test sequences (from the per-sequence counts
of right answers ``test_correct_per_sequence``), else none.

:func:`render_report` writes markdown: per cell (``seq_len``, ``num_kv``) a table
of test accuracy against width (one row per mechanism) with verdicts per width, and
a table of accuracy against the decoding state per layer (first, with ``focus=M``,
``M``'s standing against each other mechanism at every cell and width; with ``paired=M``, also
``M`` minus every other mechanism over the seeds both ran, per width:
:mod:`leapformer.report.paired`); then the target
"softmax >= 99% at every cell with width >= 64". :func:`plot_accuracy_vs_width`
draws Zoology's Fig. 2: accuracy against width, one line per mechanism, one panel
per cell (matplotlib, Agg backend).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from leapformer._io import atomic_open
from leapformer.report.intervals import Interval, interval_for, separated, verdict
from leapformer.report.names import mechanism_label
from leapformer.report.paired import paired_lines
from leapformer.report.tables import target, targets_table
from leapformer._io import read_json_object, require_keys

log = logging.getLogger(__name__)

MECHANISM_ORDER = ("softmax", "linear", "elu", "performer", "cosformer", "leap")
REQUIRED = ("attention", "d_model", "seq_len", "num_kv", "seed", "lr", "test_accuracy")
# settings besides cell, mechanism, width, lr and seed (reported when they differ)
SETTING_KEYS = ("vocab", "layers", "heads", "short_conv", "mlp", "positions", "steps",
                "batch_size", "n_train")
INTERVAL_NOTE = ("± = 95% interval: t over seeds, or for a single seed a bootstrap over "
                 "its test sequences; no ± = a single run without per-sequence results")
SOFTMAX_TARGET = 0.99


def collect(run_dirs: list[str | Path]) -> list[dict]:
    """Every MQAR ``results.json`` under the given folders (searched recursively), each
    with ``_path``; files of other tasks are skipped, broken MQAR files are errors.
    ``attention`` becomes the run's :func:`mechanism_label` (the mechanism with its
    options) and ``mechanism`` keeps the bare name."""
    found = []
    for root in map(Path, run_dirs):
        if not root.exists():
            raise FileNotFoundError(f"runs folder {root} does not exist")
        paths = [root] if root.is_file() else sorted(root.rglob("results.json"))
        for path in paths:
            data = read_json_object(path)
            if data.get("task", "mqar") != "mqar":
                log.info("skipping %s: task %r", path, data.get("task"))
                continue
            require_keys(data, REQUIRED, path, "an MQAR results file")
            options = data.get("mechanism_options")
            if options is None:  # results written before the key existed
                config = data.get("config") if isinstance(data.get("config"), dict) else {}
                model = config.get("model")
                options = model.get("mechanism_options") if isinstance(model, dict) else None
            if options is not None and not isinstance(options, dict):
                raise ValueError(f"{path}: mechanism_options must be an object, got "
                                 f"{options!r}")
            found.append({**data, "mechanism": data["attention"],
                          "attention": mechanism_label(data["attention"], options),
                          "_path": str(path)})
    return found


def keep_only(results: list[dict], *, lrs=None, seeds=None) -> list[dict]:
    """The results whose learning rate is in ``lrs`` and seed in ``seeds`` (None: any),
    e.g. one fixed learning rate over seeds when the sweep covers only some of them."""
    return [r for r in results
            if (lrs is None or any(abs(r["lr"] - x) <= 1e-12 * max(1.0, x) for x in lrs))
            and (seeds is None or r["seed"] in seeds)]


def select_best(results: list[dict]) -> list[dict]:
    """The run with the best validation accuracy per (cell, mechanism, width, seed): the
    learning rates (and any other setting that differs, e.g. steps) compete as a
    hyper-parameter sweep. Ties, and runs without a validation accuracy, go to the
    earlier result."""
    best: dict[tuple, tuple[float, dict]] = {}
    for r in results:
        key = (r["seq_len"], r["num_kv"], r["attention"], r["d_model"], r["seed"])
        score = r.get("best_valid_accuracy")
        score = -1.0 if score is None else float(score)
        if key not in best or score > best[key][0]:
            best[key] = (score, r)
    return [r for _, r in best.values()]


def _interval(runs: list[dict]) -> Interval:
    values = [float(r["test_accuracy"]) for r in runs]
    per_example = None
    if len(runs) == 1 and runs[0].get("test_correct_per_sequence"):
        per_example = np.asarray(runs[0]["test_correct_per_sequence"], float) / runs[0]["num_kv"]
    return interval_for(values, per_example)


def aggregate(results: list[dict]) -> dict[tuple, dict]:
    """``(seq_len, num_kv, mechanism, width) -> {"interval", "runs", "state_bytes", "lrs"}``
    over the best-lr run of every seed."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in select_best(results):
        groups[(r["seq_len"], r["num_kv"], r["attention"], r["d_model"])].append(r)
    out = {}
    for key, runs in groups.items():
        runs.sort(key=lambda r: r["seed"])
        differ = [k for k in SETTING_KEYS if len({repr(r.get(k)) for r in runs}) > 1]
        if differ:
            log.warning("the kept runs of %s (one per seed) differ in %s", key, differ)
        out[key] = {"interval": _interval(runs), "runs": runs,
                    "state_bytes": runs[0].get("state_bytes"),
                    "lrs": sorted({r["lr"] for r in runs})}
    return out


def _mech_sort(names) -> list[str]:
    order = {m: i for i, m in enumerate(MECHANISM_ORDER)}
    return sorted(set(names), key=lambda m: (order.get(m, len(order)), m))


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.1f} KiB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.2f} MiB"


def _paired_lines(cell: tuple[int, int], mechs: list[str], widths: list[int],
                  agg: dict[tuple, dict], focus: str) -> list[str]:
    T, K = cell
    lines = []
    for w in widths:
        values = {m: {r["seed"]: float(r["test_accuracy"]) for r in agg[(T, K, m, w)]["runs"]}
                  for m in mechs if (T, K, m, w) in agg}
        pairs = paired_lines(values, focus)
        if pairs:
            lines += [f"- d={w}:"] + ["  " + p for p in pairs]
    if not lines:
        return []
    return [f"Paired by seed ({focus} minus each mechanism, test accuracy in points; each "
            "seed's best learning rate; separated = the 95% t interval of the differences "
            "excludes 0):", "", *lines, ""]


def _cell_lines(cell: tuple[int, int], agg: dict[tuple, dict],
                paired: str | None = None) -> list[str]:
    T, K = cell
    keys = [k for k in agg if k[:2] == cell]
    mechs = _mech_sort(k[2] for k in keys)
    widths = sorted({k[3] for k in keys})
    lines = [f"## seq_len {T}, {K} key-value pairs", "",
             "Test accuracy per query (%), best learning rate per width:", "",
             "| mechanism | " + " | ".join(f"d={w}" for w in widths) + " |",
             "|---|" + "---|" * len(widths)]
    for m in mechs:
        cells = [agg[(T, K, m, w)]["interval"].format(1) if (T, K, m, w) in agg else "-"
                 for w in widths]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    verdicts = []
    for w in widths:
        named = {m: agg[(T, K, m, w)]["interval"] for m in mechs if (T, K, m, w) in agg}
        if len(named) > 1:
            verdicts.append(f"- d={w}: {verdict(named)}")
    lines += [""] + (verdicts + [""] if verdicts else [])
    if paired:
        lines += _paired_lines(cell, mechs, widths, agg, paired)
    lines += ["Accuracy against the decoding state per layer and sequence:", "",
              "| mechanism | width | state per layer | accuracy (%) | lr |",
              "|---|---|---|---|---|"]
    rows = sorted(keys, key=lambda k: (agg[k]["state_bytes"] or 0, k[2], k[3]))
    for k in rows:
        a = agg[k]
        lrs = ", ".join(f"{x:g}" for x in a["lrs"])
        lines.append(f"| {k[2]} | {k[3]} | {_bytes(a['state_bytes'])} | "
                     f"{a['interval'].format(1)} | {lrs} |")
    return lines + [""]


def focus_lines(agg: dict[tuple, dict], focus: str) -> list[str]:
    """Where ``focus`` stands against every other mechanism, per cell and width (rows in
    order of cell and width, with ``focus``'s state size): the difference of the means in
    points, marked "better" / "worse" only when the two intervals do not overlap (the
    rule of the verdicts), "n.s." (not separated) otherwise. Empty without ``focus``."""
    keys = sorted(k for k in agg if k[2] == focus)
    others = [m for m in _mech_sort(k[2] for k in agg) if m != focus]
    if not keys or not others:
        return []
    lines = [f"## Where {focus} stands", "",
             f"{focus} minus each mechanism, test accuracy in points (best learning rate per "
             "seed, mean over seeds); better / worse = the 95% intervals do not overlap, "
             "n.s. = not separated; - = not run:", "",
             f"| cell | width | {focus} state | {focus} (%) | " + " | ".join(others) + " |",
             "|---|---|---|---|" + "---|" * len(others)]
    for T, K, _, w in keys:
        mine = agg[(T, K, focus, w)]["interval"]
        cells = []
        for m in others:
            other = agg.get((T, K, m, w))
            if other is None:
                cells.append("-")
                continue
            theirs = other["interval"]
            diff = 100 * (mine.mean - theirs.mean)
            mark = ("better" if diff > 0 else "worse") if separated(mine, theirs) else "n.s."
            cells.append(f"{diff:+.1f} {mark}")
        lines.append(f"| ({T}, {K}) | {w} | {_bytes(agg[(T, K, focus, w)]['state_bytes'])} | "
                     f"{mine.format(1)} | " + " | ".join(cells) + " |")
    counts = {m: [0, 0, 0] for m in others}
    for T, K, _, w in keys:
        for m in others:
            if (T, K, m, w) in agg:
                a, b = agg[(T, K, focus, w)]["interval"], agg[(T, K, m, w)]["interval"]
                counts[m][0 if not separated(a, b) else (1 if a.mean > b.mean else 2)] += 1
    summary = "; ".join(f"vs {m}: {c[1]} better, {c[2]} worse, {c[0]} not separated"
                        for m, c in counts.items() if sum(c))
    if not summary:
        return lines + ["", f"No other mechanism ran at {focus}'s cells and widths.", ""]
    ratios = _state_ratios(agg, focus, keys, others)
    return lines + ["", f"Over the points both ran: {summary}.", *([ratios] if ratios else []),
                    ""]


def _state_ratios(agg: dict[tuple, dict], focus: str, keys: list[tuple],
                  others: list[str]) -> str:
    """One line: each mechanism's decoding state relative to ``focus``'s at the same cell
    and width (the comparison above is at equal width, not at equal state)."""
    parts = []
    for m in others:
        ratios = [agg[(T, K, m, w)]["state_bytes"] / agg[(T, K, focus, w)]["state_bytes"]
                  for T, K, _, w in keys
                  if (T, K, m, w) in agg and agg[(T, K, m, w)].get("state_bytes")
                  and agg[(T, K, focus, w)].get("state_bytes")]
        if ratios:
            lo, hi = min(ratios), max(ratios)
            parts.append(f"{m} {lo:.2f}x" if hi - lo < 0.005 else f"{m} {lo:.2f}-{hi:.2f}x")
    if not parts:
        return ""
    return (f"The comparison is at equal width, not equal state: each mechanism's decoding "
            f"state per layer relative to {focus}'s at the same point: {', '.join(parts)} "
            "(state against accuracy: the per-cell tables below).")


def softmax_target(agg: dict[tuple, dict]) -> dict:
    """Target row: softmax >= 99% test accuracy at every cell with width >= 64."""
    rows = [(k, a["interval"].mean) for k, a in agg.items() if k[2] == "softmax" and k[3] >= 64]
    if not rows:
        return target("softmax at every cell, width >= 64", ">= 99%", None, bool, "{:.1f}%")
    (T, K, _, w), worst = min(rows, key=lambda x: x[1])
    return target("softmax at every cell, width >= 64", ">= 99%", 100 * worst,
                  lambda v: v >= 100 * SOFTMAX_TARGET, "{:.1f}%",
                  detail=f"lowest: T={T}, kv={K}, d={w}")


def _settings_line(results: list[dict]) -> str:
    def values(key):
        vals = sorted({repr(r.get(key)) for r in results})
        return ", ".join(v.strip("'") for v in vals)

    return (f"- settings: vocab {values('vocab')}; layers {values('layers')}; steps "
            f"{values('steps')}; batch {values('batch_size')}; short conv "
            f"{values('short_conv')}; learning rates tried {values('lr')}; seeds "
            f"{values('seed')}")


def render_report(results: list[dict], command: str | None = None,
                  paired: str | None = None, focus: str | None = "auto",
                  notes: list[str] | None = None) -> str:
    """The markdown report of MQAR runs (see the module docstring); ``paired`` names the
    mechanism to compare with every other one seed by seed; ``focus`` the mechanism whose
    standing against each other one is summarised first (:func:`focus_lines`; ``"auto"``:
    LeaP when the runs have it; None: no summary); ``notes``: extra bullet lines for the
    header (how the runs were made, what they show)."""
    if not results:
        raise ValueError("no MQAR results to report (no results.json found)")
    names = {r["attention"] for r in results}
    if focus == "auto":
        focus = "leap" if "leap" in names else None
    for label, value in (("paired", paired), ("focus", focus)):
        if value is not None and value not in names:
            raise ValueError(f"{label} must name a mechanism of the runs "
                             f"({', '.join(_mech_sort(names))}), got {value!r}")
    agg = aggregate(results)
    lines = ["# MQAR: recall against model width", "",
             "Multi-query associative recall as in Zoology (Arora et al. 2023, Fig. 2; "
             "docs/math.md §5.4): test accuracy per query of the learning rate with the best "
             "validation accuracy.", ""]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [f"- {n}" for n in notes or []]
    lines += [_settings_line(results), f"- {INTERVAL_NOTE}", ""]
    if focus is not None:
        lines += focus_lines(agg, focus)
    for cell in sorted({k[:2] for k in agg}):
        lines += _cell_lines(cell, agg, paired)
    lines += targets_table([softmax_target(agg)])
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_width(results: list[dict], path: str | Path,
                           title: str | None = None) -> Path:
    """Zoology's Fig. 2: test accuracy against width (log scale), one line per mechanism
    (error bars: the 95% interval), one panel per (seq_len, num_kv); PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(results)
    if not agg:
        raise ValueError("no MQAR results to plot")
    cells = sorted({k[:2] for k in agg})
    mechs = _mech_sort(k[2] for k in agg)
    fig, axes = plt.subplots(1, len(cells), figsize=(4.2 * len(cells), 3.6), squeeze=False,
                             sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]  # one colour per mechanism
    handles = {}
    for ax, (T, K) in zip(axes[0], cells):
        widths = sorted({k[3] for k in agg if k[:2] == (T, K)})
        for m in mechs:
            pts = [(w, agg[(T, K, m, w)]["interval"]) for w in widths if (T, K, m, w) in agg]
            if not pts:
                continue
            x = [w for w, _ in pts]
            y = [100 * iv.mean for _, iv in pts]
            err = np.array([[100 * (iv.mean - iv.low), 100 * (iv.high - iv.mean)]
                            for _, iv in pts]).T
            handles[m] = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=m,
                                     color=colors[mechs.index(m) % len(colors)])
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths)
        ax.set_xticklabels([str(w) for w in widths])
        ax.set_title(f"seq_len {T}, {K} kv pairs")
        ax.set_xlabel("model width")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("MQAR accuracy (%)")
    axes[0][-1].legend([handles[m] for m in mechs if m in handles],
                       [m for m in mechs if m in handles], loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path
