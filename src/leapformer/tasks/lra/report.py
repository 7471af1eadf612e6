"""Collect LRA ``results.json`` files into the accuracy table (tasks x mechanisms)."""

from __future__ import annotations

import json
from pathlib import Path

from leapformer.tasks.lra.sets import TASKS


def collect(run_dirs: list[str | Path]) -> list[dict]:
    """Every ``results.json`` under the given folders (searched recursively)."""
    found = []
    for root in map(Path, run_dirs):
        if not root.exists():
            raise FileNotFoundError(f"run folder {root} does not exist")
        paths = [root] if root.is_file() else sorted(root.rglob("results.json"))
        for path in paths:
            try:
                res = json.loads(path.read_text())
                res["_path"] = str(path)
                found.append(res)
            except (json.JSONDecodeError, OSError) as err:
                raise ValueError(f"could not read {path}: {err}") from err
    if not found:
        raise ValueError(f"no results.json under {[str(r) for r in run_dirs]}")
    return found


def _num(x, spec: str) -> str:
    return "-" if x is None else spec.format(x)


def render_table(results: list[dict]) -> str:
    """Markdown: test accuracy per task and mechanism, the average over the tasks
    present, and the training throughput and peak memory of each run."""
    tasks = [t for t in TASKS if any(r["task"] == t for r in results)]
    mechs = sorted({r["attention"] for r in results},
                   key=lambda m: (m != "softmax", m))
    cell = {(r["attention"], r["task"]): r for r in results}  # the last run of a pair wins
    head = "| mechanism | " + " | ".join(tasks) + " | average | train tokens/s | steps/s | peak RSS MB | parameters |"
    lines = [head, "|---|" + "---:|" * (len(tasks) + 5)]
    for m in mechs:
        accs = [cell[(m, t)]["test_accuracy"] for t in tasks if (m, t) in cell]
        runs = [cell[(m, t)] for t in tasks if (m, t) in cell]
        row = [f"{100 * cell[(m, t)]['test_accuracy']:.2f}" if (m, t) in cell else "-"
               for t in tasks]
        avg = f"{100 * sum(accs) / len(accs):.2f}" if len(accs) == len(tasks) else "-"
        tok = " / ".join(_num(r.get("train_tokens_per_s"), "{:.0f}") for r in runs)
        sps = " / ".join(_num(r.get("train_steps_per_s"), "{:.2f}") for r in runs)
        mem = " / ".join(_num(r.get("peak_rss_mb"), "{:.0f}") for r in runs)
        params = " / ".join(str(r["parameters"]) for r in runs)
        lines.append(f"| {m} | " + " | ".join(row) + f" | {avg} | {tok} | {sps} | {mem} | {params} |")
    return "\n".join(lines) + "\n"


def figure1_points(results: list[dict], speed: dict | None = None) -> tuple[list[dict], str]:
    """Points of Figure 1 (one per mechanism with every task present) and the x label.

    Accuracy: the mean test accuracy over the tasks present (%). Throughput and
    memory: from an LRA speed benchmark result (``leapformer bench lra-speed``
    JSON: training tokens/s and peak MB at its length) when given, else from
    the runs themselves (mean training tokens/s, largest peak RSS).
    """
    tasks = [t for t in TASKS if any(r["task"] == t for r in results)]
    cell = {(r["attention"], r["task"]): r for r in results}
    mechs = sorted({r["attention"] for r in results})
    rows = {}
    if speed is not None:
        rows = {r["mechanism"]: r for r in speed["rows"] if r["mode"] == "train" and not r["error"]}
    points = []
    for m in mechs:
        runs = [cell[(m, t)] for t in tasks if (m, t) in cell]
        if len(runs) != len(tasks):
            continue
        acc = 100 * sum(r["test_accuracy"] for r in runs) / len(runs)
        if speed is not None:
            if m not in rows:
                continue
            thr, mem = rows[m]["tokens_per_s"], rows[m]["peak_mb"]
        else:
            tps = [r["train_tokens_per_s"] for r in runs if r.get("train_tokens_per_s")]
            if not tps:
                continue
            thr = sum(tps) / len(tps)
            mem = max(r.get("peak_rss_mb") or 0.0 for r in runs)
        points.append({"mechanism": m, "accuracy": acc, "throughput": thr, "memory_mb": mem})
    if speed is not None:
        n = speed["config"]["length"]
        label = f"training throughput at {n} tokens (tokens/s, bubble = peak MB)"
    else:
        label = "training throughput of the runs (tokens/s, bubble = peak RSS MB)"
    return points, label


def _averages(results: list[dict]) -> tuple[list[str], dict[str, float]]:
    """Tasks present and the mean test accuracy (%) of each mechanism that ran all of them."""
    tasks = [t for t in TASKS if any(r["task"] == t for r in results)]
    cell = {(r["attention"], r["task"]): r for r in results}
    avgs = {}
    for m in {r["attention"] for r in results}:
        if all((m, t) in cell for t in tasks):
            avgs[m] = 100 * sum(cell[(m, t)]["test_accuracy"] for t in tasks) / len(tasks)
    return tasks, avgs


def evaluate_targets(results: list[dict], speed: dict | None = None) -> list[dict]:
    """The issue's LRA targets: LeaP's average accuracy at or above cosFormer's and
    every other efficient mechanism's, within 1 point of softmax; with a speed
    result, LeaP's training throughput at its length within 1.25x of ReLU
    linear and at least 3x softmax."""
    from leapformer.report.tables import target

    _, avgs = _averages(results)
    leap = avgs.get("leap")
    others = {m: a for m, a in avgs.items() if m not in ("leap", "softmax")}
    best_other = max(others, key=others.get) if others else None
    rows = [
        target("LeaP average accuracy - cosFormer's", ">= 0",
               None if leap is None or "cosformer" not in avgs else leap - avgs["cosformer"],
               lambda v: v >= 0, "{:+.2f} pt"),
        target("LeaP average accuracy - best other efficient mechanism's", ">= 0",
               None if leap is None or best_other is None else leap - others[best_other],
               lambda v: v >= 0, "{:+.2f} pt", detail=f"best: {best_other}"),
        target("LeaP average accuracy - softmax's", ">= -1 pt",
               None if leap is None or "softmax" not in avgs else leap - avgs["softmax"],
               lambda v: v >= -1.0, "{:+.2f} pt"),
    ]
    if speed is not None:
        row = {r["mechanism"]: r for r in speed["rows"] if r["mode"] == "train" and not r["error"]}
        n = speed["config"]["length"]
        lp = row.get("leap", {})
        rows += [
            target(f"LeaP training throughput vs softmax at {n}", ">= 3x", lp.get("vs_softmax"),
                   lambda v: v >= 3.0, "{:.2f}x"),
            target(f"LeaP training throughput vs ReLU linear at {n}", ">= 0.8x (within 1.25x)",
                   lp.get("vs_linear"), lambda v: v >= 0.8, "{:.2f}x"),
        ]
    return rows


def render_report(results: list[dict], speed: dict | None = None, *, command: str = "") -> str:
    """The whole markdown report: what was run, the accuracy table, the speed rows
    used for Figure 1 (when given) and the targets."""
    from leapformer.report.tables import targets_table

    tasks, avgs = _averages(results)
    profiles = sorted({str(r.get("profile", "?")) for r in results})
    lines = ["# Long-Range Arena results", ""]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [f"- runs: {len(results)} (tasks: {', '.join(tasks)}; profile: {', '.join(profiles)})",
              ("- accuracy: test accuracy (%) of the best checkpoint; average over the tasks "
              "listed (only for mechanisms that ran all of them)"),
              ("- throughput and peak RSS per run are listed per task in the order of the "
              "columns; peak RSS is the process's (a grid runs many runs in one process)"), "",
              "## Accuracy", "", render_table(results).rstrip("\n"), ""]
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
            lines.append(f"| {r['mechanism']} | {'-' if acc is None else f'{acc:.2f}'} "
                         f"| {r['tokens_per_s']:.0f} | {r['vs_softmax']:.2f} "
                         f"| {r['vs_linear']:.2f} | {r['peak_mb']:.0f} |")
        lines.append("")
    lines += [*targets_table(evaluate_targets(results, speed)), ""]
    return "\n".join(lines)
