"""Busy cores on purpose: other torch processes running while a benchmark measures.

``leapformer bench ops --contended N`` starts ``N`` processes of this module
(``python -m leapformer.bench.contention``), each a torch process with its own
OpenMP thread pool doing back-to-back work, and stops them when the
measurement ends. This is what a shared server or ``torchrun --nproc_per_node 2``
on a CPU does to a process: its parallel ops wait on threads the OS has
descheduled. The work is a 1024^2 float32 matmul (``"matmul"``) or LeaP's
bidirectional attention at 4k tokens, 8 heads of 64 (``"leap"``: two processes
both running LeaP). Each process uses ``threads`` threads (default: torch's
default, which follows ``OMP_NUM_THREADS`` when it is set, else one per core) and
exits by itself if its parent dies.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator

logger = logging.getLogger(__name__)

WORKS = ("matmul", "leap")
STARTUP_S = 60.0  # a process that has not started working by then is an error


@contextlib.contextmanager
def contention(n: int, *, work: str = "matmul", threads: int | None = None,
               start_timeout_s: float = STARTUP_S) -> Iterator[list[subprocess.Popen]]:
    """Run ``n`` busy torch processes for the duration of the ``with`` block."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"contended must be an integer >= 0, got {n!r}")
    if work not in WORKS:
        raise ValueError(f"contention work must be one of {WORKS}, got {work!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"contention threads must be an integer >= 1, got {threads!r}")
    procs: list[subprocess.Popen] = []
    cmd = [sys.executable, "-m", "leapformer.bench.contention", "--work", work,
           "--parent", str(os.getpid())]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    try:
        for _ in range(n):
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True))
        deadline = time.monotonic() + start_timeout_s
        for p in procs:  # each prints "ready" once its first unit of work is done
            line = _read_line(p, deadline)
            if line != "ready":
                raise RuntimeError(f"a contention process did not start (exit code "
                                   f"{p.poll()}, said {line!r})")
        logger.info("%d contention process(es) running %s", n, work)
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
            p.stdout.close()


def _read_line(p: subprocess.Popen, deadline: float) -> str:
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            return "(nothing before the start timeout)"
        return p.stdout.readline().strip()


def _work(kind: str):
    import torch

    if kind == "matmul":
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
        return lambda: a @ b
    from leapformer.ops import leap_attention

    q, k, v = (torch.randn(1, 8, 4096, 64) for _ in range(3))
    qp, kp = torch.rand(1, 8, 4096), torch.rand(1, 8, 4096)

    def call():
        with torch.no_grad():
            return leap_attention(q, k, v, qp, kp)
    return call


def main(argv: list[str] | None = None) -> int:
    """Entry point of one contention process (not a user command)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", choices=WORKS, default="matmul")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    fn = _work(args.work)
    fn()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while os.getppid() == args.parent:
        fn()
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess by contention()
    raise SystemExit(main())
