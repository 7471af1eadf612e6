"""Collect LRA ``results.json`` files into the accuracy table (tasks x mechanisms).

Runs over several seeds are grouped: results of one task and mechanism whose
settings (profile, data source, profile settings, model) are equal
and that differ only in ``seed`` form one cell, reported as mean ± a 95%
interval (:mod:`leapformer.report.intervals`):

- two or more seeds: mean ± t·SE over the seeds;
- a single run: a percentile bootstrap over its test examples, from the
  per-example correctness ``test_correct`` that ``leapformer lra`` saves (see
  :func:`encode_correct`); a run without it has no interval.

The average over the tasks has an interval too: over the per-seed averages
when every task has the same >= 2 seeds, else (single runs) a stratified
bootstrap that resamples each task's test examples independently.

Under every table a verdict ranks mechanisms only where their intervals do not
overlap and says "not separated" otherwise (:func:`~leapformer.report.intervals.verdict`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leapformer.bench.names import canonical_result
from leapformer.report.intervals import Interval, interval_for, ranked_verdict, seed_interval
from leapformer.report.paired import paired_lines
from leapformer.tasks.lra.sets import TASKS

log = logging.getLogger(__name__)

# results.json keys that define a run's settings: runs equal in these (and in task
# and mechanism) are seeds of one configuration.
SETTING_KEYS = ("profile", "data_source", "profile_settings", "model", "mechanism_options")
CORRECT_ENCODING = "bits-hex"
INTERVAL_NOTE = ("± = 95% interval: t over seeds (seeds column), or for a single run a "
                 "bootstrap over its test examples; no ± = single run without per-example "
                 "results")


# -- per-example correctness --------------------------------------------------
def encode_correct(correct) -> dict:
    """Per-example 0/1 correctness as a compact JSON object (results.json ``test_correct``).

    ``{"encoding": "bits-hex", "n": N, "bits": HEX}``: the examples in test-set
    order packed 8 to a byte, most significant bit first (``numpy.packbits``),
    written as hexadecimal and cut to ``ceil(N / 4)`` digits, so 1000 test
    examples take 250 characters.
    """
    bits = np.asarray(correct, dtype=bool).reshape(-1)
    digits = np.packbits(bits).tobytes().hex()[: (bits.size + 3) // 4]
    return {"encoding": CORRECT_ENCODING, "n": int(bits.size), "bits": digits}


def decode_correct(obj, where: str = "test_correct") -> np.ndarray:
    """The 0/1 float array of :func:`encode_correct`'s object; ValueError naming ``where``."""
    if not isinstance(obj, dict) or obj.get("encoding") != CORRECT_ENCODING:
        raise ValueError(f"{where}: expected an object with encoding {CORRECT_ENCODING!r}, "
                         f"got {str(obj)[:60]!r}")
    n, digits = obj.get("n"), obj.get("bits")
    if not isinstance(n, int) or n < 1 or not isinstance(digits, str) \
            or len(digits) != (n + 3) // 4:
        raise ValueError(f"{where}: n={n!r} does not match {len(str(digits))} hex digits")
    try:
        raw = bytes.fromhex(digits + "0" * (len(digits) % 2))
    except ValueError as err:
        raise ValueError(f"{where}: bits is not hexadecimal: {err}") from err
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:n].astype(np.float64)


# -- reading ------------------------------------------------------------------
def collect(run_dirs: list[str | Path]) -> list[dict]:
    """Every LRA ``results.json`` under the given folders (searched recursively); the
    results of other tasks (MQAR, LM, ...) are skipped, with a note in the log."""
    found, other = [], 0
    for root in map(Path, run_dirs):
        if not root.exists():
            raise FileNotFoundError(f"run folder {root} does not exist")
        paths = [root] if root.is_file() else sorted(root.rglob("results.json"))
        for path in paths:
            try:
                res = json.loads(path.read_text())
            except (json.JSONDecodeError, OSError) as err:
                raise ValueError(f"could not read {path}: {err}") from err
            if not isinstance(res, dict) or res.get("task") not in TASKS:
                other += 1
                continue
            res["_path"] = str(path)
            found.append(res)
    if other:
        log.warning("lra report: skipped %d results.json that are not LRA results (no LRA "
                    "'task')", other)
    if not found:
        extra = f" ({other} of other tasks)" if other else ""
        raise ValueError(f"no LRA results.json under {[str(r) for r in run_dirs]}{extra}")
    return found


# -- grouping over seeds ------------------------------------------------------
@dataclass
class Cell:
    """The runs (one per seed) of one task and mechanism configuration."""

    task: str
    label: str
    runs: list[dict]
    interval: Interval
    per_example: np.ndarray | None = field(default=None, repr=False)  # single run only

    @property
    def seeds(self) -> list:
        return [r.get("seed") for r in self.runs]

    @property
    def by_seed(self) -> dict:
        return {r.get("seed"): r["test_accuracy"] for r in self.runs}

    def mean(self, key: str) -> float | None:
        vals = [r[key] for r in self.runs if r.get(key) is not None]
        return sum(vals) / len(vals) if vals else None


def _settings(r: dict) -> dict:
    """The run's settings, flat: profile fields by name, model fields as ``model.NAME``.
    A profile or model field the run does not record (it was written before the field
    existed) counts as the field's default, and a None value as absent, so older runs
    group with newer ones of the same configuration."""
    from leapformer.models import ClassifierConfig
    from leapformer.tasks.lra.profile import LRAProfile, field_defaults

    defaults = {"profile_settings": field_defaults(LRAProfile),
                "model": field_defaults(ClassifierConfig)}
    flat = {}
    for key in SETTING_KEYS:
        value = r.get(key)
        if isinstance(value, dict):
            value = {**defaults.get(key, {}), **value}
            flat.update({k if key == "profile_settings" else f"{key}.{k}": v
                         for k, v in value.items() if v is not None})
        elif value is not None:
            flat[key] = value
    return flat


def _key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def _variant(settings: dict, others: list[dict]) -> str:
    """``"[steps=200, lr=0.001]"``: the settings in which this group differs from ``others``."""
    keys = sorted({k for o in others for k in set(o) | set(settings)
                   if o.get(k) != settings.get(k)})
    shown = ", ".join(f"{k}={settings.get(k)}" for k in keys[:3])
    return f" [{shown}{', ...' if len(keys) > 3 else ''}]"


def _cell(task: str, label: str, runs: list[dict]) -> Cell:
    per_example = None
    if len(runs) == 1 and runs[0].get("test_correct") is not None:
        r = runs[0]
        per_example = decode_correct(r["test_correct"], f"{r.get('_path', '?')}: test_correct")
        if abs(per_example.mean() - r["test_accuracy"]) > 1e-9:
            raise ValueError(f"{r.get('_path', '?')}: test_correct (mean {per_example.mean():.6f}) "
                             f"disagrees with test_accuracy {r['test_accuracy']:.6f}")
    interval = interval_for([r["test_accuracy"] for r in runs], per_example)
    return Cell(task, label, runs, interval, per_example)


def group_cells(results: list[dict]) -> dict[tuple[str, str], Cell]:
    """``{(label, task): Cell}``: runs grouped by task, mechanism and settings.

    The label is the mechanism, or ``"mechanism [key=value, ...]"`` when one task
    has several settings of that mechanism. Two runs of one configuration with the
    same seed are one run: the last by path is kept (with a warning).
    """
    groups: dict[tuple[str, str, str], dict] = {}
    for r in sorted(results, key=lambda r: r.get("_path", "")):
        for key in ("task", "attention", "test_accuracy"):
            if key not in r:
                raise ValueError(f"{r.get('_path', '?')} is not an LRA results.json: missing {key}")
        s = _settings(r)
        g = groups.setdefault((r["task"], r["attention"], _key(s)), {"settings": s, "runs": {}})
        if r.get("seed") in g["runs"]:
            log.warning("lra report: two runs of %s %s with seed %s; using %s", r["task"],
                        r["attention"], r.get("seed"), r.get("_path", "?"))
        g["runs"][r.get("seed")] = r
    cells = {}
    for (task, mech, key), g in groups.items():
        others = [o["settings"] for (t, m, k), o in groups.items()
                  if t == task and m == mech and k != key]
        label = mech + (_variant(g["settings"], others) if others else "")
        runs = [g["runs"][s] for s in sorted(g["runs"], key=lambda s: (s is None, str(s)))]
        cells[(label, task)] = _cell(task, label, runs)
    return cells


def _tasks(cells) -> list[str]:
    return [t for t in TASKS if any(task == t for _, task in cells)]


def _labels(cells) -> list[str]:
    return sorted({label for label, _ in cells}, key=lambda m: (not m.startswith("softmax"), m))


def _stratified_bootstrap(vectors: list[np.ndarray], resamples: int = 2000,
                          seed: int = 0) -> Interval:
    """95% percentile bootstrap of the mean of per-task accuracies, each task's test
    examples resampled on their own (0/1 values: a resampled mean is Binomial(n, p)/n)."""
    rng = np.random.default_rng(seed)
    means = np.mean([rng.binomial(v.size, v.mean(), size=resamples) / v.size for v in vectors],
                    axis=0)
    low, high = np.quantile(means, [0.025, 0.975])
    mean = float(np.mean([v.mean() for v in vectors]))
    return Interval(mean, float(low), float(high), sum(v.size for v in vectors), "bootstrap",
                    float(means.std(ddof=1)))


def average_interval(cells: list[Cell]) -> Interval:
    """The mean test accuracy over the cells (tasks) with its interval (module docstring)."""
    if len(cells) == 1:
        return cells[0].interval
    common = set.intersection(*(set(c.seeds) for c in cells))
    if all(len(c.runs) >= 2 for c in cells) and len(common) >= 2:
        order = sorted(common, key=str)
        return seed_interval([sum(c.by_seed[s] for c in cells) / len(cells) for s in order])
    if all(c.per_example is not None for c in cells):
        return _stratified_bootstrap([c.per_example for c in cells])
    mean = sum(c.interval.mean for c in cells) / len(cells)
    return Interval(mean, mean, mean, 1, "single")


def averages(results: list[dict], cells: dict | None = None
             ) -> tuple[list[str], dict[str, Interval]]:
    """Tasks present and ``{label: Interval}`` of the average over them, for each
    mechanism configuration that ran every task (``cells``: :func:`group_cells`'s)."""
    cells = group_cells(results) if cells is None else cells
    tasks = _tasks(cells)
    out = {}
    for label in _labels(cells):
        if all((label, t) in cells for t in tasks):
            out[label] = average_interval([cells[(label, t)] for t in tasks])
    return tasks, out


# -- rendering ----------------------------------------------------------------
def _num(x, spec: str) -> str:
    return "-" if x is None else spec.format(x)


def _seeds(ns: list[int]) -> str:
    return str(ns[0]) if len(set(ns)) == 1 else " / ".join(map(str, ns))


def verdict_lines(results: list[dict], cells: dict | None = None) -> list[str]:
    """One verdict line per column (the average first, when there are several tasks)."""
    cells = group_cells(results) if cells is None else cells
    tasks, avgs = averages(results, cells)
    columns = [("average", avgs)] if len(tasks) > 1 else []
    columns += [(t, {label: c.interval for (label, task), c in cells.items() if task == t})
                for t in tasks]
    return [f"- {ranked_verdict(named, unit=name)}" for name, named in columns if len(named) > 1]


def paired_section(cells: dict, focus: str) -> list[str]:
    """Markdown lines: per task, ``focus`` minus every other label over the seeds both
    ran (:mod:`leapformer.report.paired`); [] when ``focus`` shares no seed with any."""
    lines = []
    for t in _tasks(cells):
        values = {label: {r.get("seed"): float(r["test_accuracy"]) for r in c.runs}
                  for (label, task), c in cells.items() if task == t}
        pairs = paired_lines(values, focus)
        if pairs:
            lines += [f"- {t}:"] + ["  " + p for p in pairs]
    if not lines:
        return []
    return ["", (f"Paired by seed ({focus} minus each mechanism, test accuracy in points; "
                 "runs with the same seed see the same data; separated = the 95% t "
                 "interval of the differences excludes 0):"), *lines]


def render_table(results: list[dict], paired: str | None = None) -> str:
    """Markdown: test accuracy (%, mean ± 95% interval) per task and mechanism, the
    average over the tasks present, the seed counts, the runs' mean training
    throughput, peak memory and parameters; then the verdict per column (and, with
    ``paired``, that mechanism against each other one seed by seed)."""
    cells = group_cells(results)
    if paired is not None and paired not in {label for label, _ in cells}:
        raise ValueError(f"paired must name a mechanism of the runs "
                         f"({', '.join(_labels(cells))}), got {paired!r}")
    tasks, avgs = averages(results, cells)
    head = ("| mechanism | " + " | ".join(tasks) + " | average | seeds | train tokens/s "
            "| steps/s | peak RSS MB | parameters |")
    lines = [head, "|---|" + "---:|" * (len(tasks) + 6)]
    for label in _labels(cells):
        row = [cells[(label, t)].interval.format(2) if (label, t) in cells else "-"
               for t in tasks]
        here = [cells[(label, t)] for t in tasks if (label, t) in cells]
        avg = avgs[label].format(2) if label in avgs else "-"
        tok = " / ".join(_num(c.mean("train_tokens_per_s"), "{:.0f}") for c in here)
        sps = " / ".join(_num(c.mean("train_steps_per_s"), "{:.2f}") for c in here)
        mem = " / ".join(_num(max((r["peak_rss_mb"] for r in c.runs if r.get("peak_rss_mb")),
                                  default=None), "{:.0f}") for c in here)
        params = " / ".join(str(c.runs[0].get("parameters", "-")) for c in here)
        lines.append(f"| {label} | " + " | ".join(row) + f" | {avg} "
                     f"| {_seeds([len(c.runs) for c in here])} | {tok} | {sps} | {mem} "
                     f"| {params} |")
    verdicts = verdict_lines(results, cells)
    if verdicts:
        lines += ["", ("Verdict (ranked only where the 95% intervals do not overlap; "
                       "braces: not separated):"), *verdicts]
    if paired is not None:
        lines += paired_section(cells, paired)
    lines += ["", INTERVAL_NOTE + "."]
    return "\n".join(lines) + "\n"


def figure1_points(results: list[dict], speed: dict | None = None) -> tuple[list[dict], str]:
    """Points of Figure 1 (one per mechanism with every task present) and the x label.

    Accuracy: the mean test accuracy over the tasks present (%; each task's mean
    over its seeds). Throughput and memory: from an LRA speed benchmark result
    (``leapformer bench lra-speed`` JSON: training tokens/s and peak MB at its
    length) when given, else from the runs themselves (mean training tokens/s,
    largest per-run peak RSS). Old benchmark mechanism names are mapped
    (:func:`leapformer.bench.names.canonical_result`).
    """
    speed = canonical_result(speed)
    cells = group_cells(results)
    tasks = _tasks(cells)
    rows = {}
    if speed is not None:
        rows = {r["mechanism"]: r for r in speed["rows"] if r["mode"] == "train" and not r["error"]}
    points = []
    for m in sorted({label for label, _ in cells}):
        here = [cells[(m, t)] for t in tasks if (m, t) in cells]
        if len(here) != len(tasks):
            continue
        acc = 100 * sum(c.interval.mean for c in here) / len(here)
        if speed is not None:
            if m not in rows:
                continue
            thr, mem = rows[m]["tokens_per_s"], rows[m]["peak_mb"]
        else:
            tps = [c.mean("train_tokens_per_s") for c in here if c.mean("train_tokens_per_s")]
            if not tps:
                continue
            thr = sum(tps) / len(tps)
            mem = max(r.get("peak_rss_mb") or 0.0 for c in here for r in c.runs)
        points.append({"mechanism": m, "accuracy": acc, "throughput": thr, "memory_mb": mem})
    if speed is not None:
        n = speed["config"]["length"]
        label = f"training throughput at {n} tokens (tokens/s, bubble = peak MB)"
    else:
        label = "training throughput of the runs (tokens/s, bubble = peak RSS MB)"
    return points, label


def render_report(results: list[dict], speed: dict | None = None, *, command: str = "",
                  paired: str | None = None, curves: list[str] | None = None) -> str:
    """The whole markdown report: what was run, the accuracy table with its verdict,
    the learning-curve section ``curves`` (markdown lines from
    :func:`leapformer.tasks.lra.curves.render_curves`, when given) and the speed rows
    used for Figure 1 (when given)."""
    speed = canonical_result(speed)
    tasks, avgs = averages(results)
    profiles = sorted({str(r.get("profile", "?")) for r in results})
    scopes = {r.get("peak_rss_scope", "process") for r in results if r.get("peak_rss_mb")}
    lines = ["# Long-Range Arena results", ""]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [f"- runs: {len(results)} (tasks: {', '.join(tasks)}; profile: {', '.join(profiles)})",
              ("- accuracy: test accuracy (%) of the best checkpoint, mean over seeds; "
               "average over the tasks listed (only for mechanisms that ran all of them)"),
              ("- throughput, peak RSS and parameters are listed per task in the order of the "
               "columns (means over seeds; peak RSS: the largest)")]
    if scopes == {"run"}:
        lines.append("- peak RSS: each run's own peak resident memory (the process's "
                     "high-water mark is reset when the run starts; it includes the "
                     "interpreter and libraries)")
    elif scopes:
        lines.append("- peak RSS: some runs recorded the whole process's peak (a grid "
                     "runs many runs in one process), so it may not be the run's own")
    lines += ["", "## Accuracy", "", render_table(results, paired).rstrip("\n"), ""]
    if curves:
        lines += list(curves)
    if speed is not None:
        n = speed["config"]["length"]
        lines += [f"## Training speed at {n} tokens (Figure 1's x axis and bubble size)", "",
                  (f"From `{speed.get('command', 'leapformer bench lra-speed')}`; "
                  f"{speed['machine'].get('device', '')}."), "",
                  "| mechanism | average accuracy | train tokens/s | vs softmax | vs linear | peak MB |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in speed["rows"]:
            if r["mode"] != "train" or r["error"]:
                continue
            acc = avgs.get(r["mechanism"])
            lines.append(f"| {r['mechanism']} | {'-' if acc is None else acc.format(2)} "
                         f"| {r['tokens_per_s']:.0f} | {r['vs_softmax']:.2f} "
                         f"| {r['vs_linear']:.2f} | {r['peak_mb']:.0f} |")
        lines.append("")
    return "\n".join(lines)
