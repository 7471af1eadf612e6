"""Helpers shared by the benchmarks: timing, machine description, formatting, targets.

Timing method (all benchmarks): each function is warmed up, then the functions of
one group are timed round-robin (interleaved, same process and inputs) until each
has its repetitions, so slow drifts of a shared machine hit all of them alike.
Repetitions adapt to the cost: ``target_s / t_warm``, clamped to
``[min_reps, max_reps]``. An optional untimed ``setup`` call runs before every
call (warm-up and timed), e.g. to rewind a decoding cache.
"""

from __future__ import annotations

import contextlib
import logging
import datetime
import os
import platform
import sys
import statistics
import time
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], object], device: torch.device,
              setup: Callable[[], object] | None = None) -> float:
    """Seconds for one call (device synchronised); ``setup()`` runs first, untimed."""
    if setup is not None:
        setup()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def warm_up(fn, device, warmup: int, setup=None) -> float:
    """Run ``fn`` once, and ``warmup - 1`` more times if it is fast; return the last time (s)."""
    t = time_once(fn, device, setup)
    if t < 0.5:
        for _ in range(warmup - 1):
            t = time_once(fn, device, setup)
    return t


def time_interleaved(fns: dict[str, Callable[[], object]], *, device: torch.device, warmup: int,
                     min_reps: int, max_reps: int, target_s: float,
                     setup: dict[str, Callable[[], object]] | None = None
                     ) -> dict[str, list[float]]:
    """Warm each function up, then time them round-robin; returns seconds per call per name.

    ``setup[name]`` (optional) runs untimed before every call of ``fns[name]``.
    """
    setup = setup or {}
    reps = {}
    for name, fn in fns.items():
        t = warm_up(fn, device, warmup, setup.get(name))
        reps[name] = max(min_reps, min(max_reps, int(target_s / max(t, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(max(reps.values(), default=0)):
        for name, fn in fns.items():
            if r < reps[name]:
                samples[name].append(time_once(fn, device, setup.get(name)))
    return samples


def median_ms(fn: Callable[[], object], *, reps: int = 10, warmup: int = 3,
              device: str | torch.device = "cpu") -> float:
    """Median wall time of ``fn()`` in ms over ``reps`` calls after ``warmup`` calls."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    return 1e3 * statistics.median(time_once(fn, device) for _ in range(reps))


def machine_info(device: str | torch.device = "cpu") -> dict:
    """CPU model, core and thread counts, torch version, date (UTC), device."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                   cpu)
    info = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),  # decides busy-machine times
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (the profiler's C++ start/stop log lines)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_bytes(fn: Callable[[], object], device: str | torch.device = "cpu") -> int | None:
    """Peak bytes allocated during one ``fn()`` above those allocated before it.

    CUDA: from the caching allocator's statistics. CPU: the peak of the running
    sum of the allocator events recorded by ``torch.profiler`` (allocations
    positive, frees negative, ordered by time); None if they cannot be read.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    activities = [torch.profiler.ProfilerActivity.CPU]
    with _quiet_stderr(), torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        fn()
    try:
        events = prof.profiler.kineto_results.events()
        records = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    except AttributeError:  # profiler internals moved
        logger.warning("cannot read profiler memory events in torch %s", torch.__version__)
        return None
    running = peak = 0
    for _, nbytes in records:
        running += nbytes
        peak = max(peak, running)
    return peak


def write_table(out_dir, stem: str, rows: list[dict], info: dict, *, command: str,
                load: str, markdown: str) -> str:
    """Write a benchmark's ``stem.json`` (machine, command, load, rows) and ``stem.md``
    (``markdown``) under ``out_dir``, each through a temporary file and a rename;
    returns ``markdown``."""
    import json
    from pathlib import Path

    from leapformer._io import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{stem}.json",
                      json.dumps({"machine": info, "command": command, "load": load,
                                  "rows": rows}, indent=2) + "\n")
    atomic_write_text(out_dir / f"{stem}.md", markdown)
    return markdown


def load_line() -> str:
    """The load average now, as benchmark tables print it."""
    load = os.getloadavg()
    return f"load average before the run {load[0]:.2f} (1 min), {load[1]:.2f} (5 min)"


def table_header(title: str, info: dict, *, command: str, load: str) -> list[str]:
    """The first lines of a benchmark table: title, command, machine and load."""
    return [f"# {title}", "", f"- command: `{command}`",
            f"- machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
            f"{info['torch_threads']} thread(s); {load}"]
