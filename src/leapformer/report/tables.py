"""Markdown tables and target rows shared by the benchmarks and the task reports.

This module sits below both ``leapformer.bench`` and ``leapformer.tasks``: it
imports neither, so reports and benchmarks can share formatting without
depending on each other.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from leapformer._io import atomic_write_text


def machine_line(m: dict) -> str:
    """The ``- machine: ...`` line of a results file, from :func:`machine_info`."""
    return (f"- machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
            f"({m['torch_threads']} threads), Python {m['python']}")


def fmt_len(n: int) -> str:
    """4096 -> ``"4k"``; 100 -> ``"100"``."""
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def fmt(x: float | None, small: int = 3) -> str:
    """A number with about three significant digits; ``"-"`` for None or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.{small}f}"


def target(name: str, goal: str, value: float | None, ok: Callable[[float], bool],
           fmt_spec: str, detail: str = "") -> dict:
    """One target row ``{name, target, value, status, shown}``; status PASS, MISS or n/a."""
    status = "n/a" if value is None else ("PASS" if ok(value) else "MISS")
    shown = "-" if value is None else fmt_spec.format(value) + (f" ({detail})" if detail else "")
    return {"name": name, "target": goal, "value": value, "status": status, "shown": shown}


def targets_table(targets: list[dict]) -> list[str]:
    """Markdown lines of a ``## Targets`` section."""
    lines = ["## Targets", "", "| target | goal | measured | status |", "|---|---|---|---|"]
    lines += [f"| {t['name']} | {t['target']} | {t['shown']} | {t['status']} |" for t in targets]
    return lines


def write_files(markdown: str, data: dict, out_dir: str | Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.json`` under ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    atomic_write_text(md, markdown)
    atomic_write_text(js, json.dumps(data, indent=1) + "\n")
    return md, js
