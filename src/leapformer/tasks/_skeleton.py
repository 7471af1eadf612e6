"""The run skeleton every training harness shares (``lra``, ``lm``, ``translate``).

A task's ``run_*`` function is: settings (preset + overrides) -> :func:`open_run`
(the run folder: policy, lock) -> resume check (:func:`check_resume`) -> data ->
model -> :class:`~leapformer.train.Trainer` -> best checkpoint -> final
evaluation -> :func:`write_results`. This module holds the parts that are the
same for every task, so they cannot drift apart.

What :func:`open_run` does with the folder (docs/training.md, "Run folders"):

- a folder that holds a run (``last.pt``, ``best.pt`` or ``results.json``) is
  refused unless ``resume`` (continue ``last.pt``; the trainer drops the
  ``metrics.jsonl`` records written after that checkpoint) or ``overwrite``
  (the run's outputs are deleted first; data caches are kept);
- ``resume`` without ``last.pt`` is refused before anything is created;
- starting afresh, a ``metrics.jsonl`` left by a run killed before its first
  checkpoint is deleted, so no step is recorded twice;
- while the run is open, ``OUT/.lock`` is held (``fcntl.flock``): a second
  process on the same folder gets a clear error naming the holder. The kernel
  releases the lock when its process dies, even by SIGKILL, so a lock file
  left behind is taken over;
- if the call fails and it created the folder, the folder is removed again
  when nothing was written into it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import resource
import shutil
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from leapformer._io import atomic_write_text
from leapformer.train import DistInfo
from leapformer.train.distributed import barrier, broadcast_object

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
#: files that mark a folder as holding a run
RUN_MARKERS = ("last.pt", "best.pt", "results.json")
#: what ``overwrite`` deletes (besides a task's ``outputs``): a run's own files
RUN_FILES = ("last.pt", "best.pt", "results.json", "metrics.jsonl", "config.json")


class RunInUseError(RuntimeError):
    """Another process holds the run folder's lock."""


# -- the folder --------------------------------------------------------------------------
def _check_path(out: Path) -> None:
    """``out`` is a folder or can become one (no file on the way)."""
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"run folder {out} is a file, not a folder")
        return
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"cannot create run folder {out}: {parent} is a file")
            return


def holds_run(out: Path) -> list[str]:
    """The run files in ``out`` (``[]``: no run there)."""
    return [name for name in RUN_MARKERS if (out / name).exists()]


def _make_folder(out: Path) -> list[Path]:
    """Create ``out`` (and parents); returns the folders created, deepest first."""
    created = []
    for folder in (out, *out.parents):
        if folder.exists():
            break
        created.append(folder)
    out.mkdir(parents=True, exist_ok=True)
    return created


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): keep it and everything above
            return


def _clear(out: Path, outputs: Sequence[str]) -> None:
    """Delete a run's outputs: :data:`RUN_FILES`, the glob patterns ``outputs`` and
    temporary files of interrupted writes."""
    doomed = [out / name for name in RUN_FILES]
    for pattern in (*outputs, ".*.tmp"):
        doomed.extend(out.glob(pattern))
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _policy(out: Path, *, resume: bool, overwrite: bool, outputs: Sequence[str]) -> None:
    """Apply the folder policy of the module docstring (rank 0, under the lock)."""
    found = holds_run(out)
    if overwrite:
        if found:
            log.warning("overwriting the run in %s (%s)", out, ", ".join(found))
        _clear(out, outputs)
    elif found and not resume:
        state = "finished: " if "results.json" in found else ""
        raise FileExistsError(f"{out} already holds a run ({state}{', '.join(found)}); pass "
                              "resume=True (--resume) to continue it, overwrite=True "
                              "(--overwrite) to start again, or choose another out folder")
    elif not resume and (out / "metrics.jsonl").exists():
        log.warning("%s holds metrics.jsonl but no checkpoint (a run stopped before its "
                    "first one): starting afresh", out)
        (out / "metrics.jsonl").unlink()


@contextlib.contextmanager
def open_run(out: str | Path, *, resume: bool = False, overwrite: bool = False,
             dist: DistInfo | None = None, outputs: Sequence[str] = ()) -> Iterator[Path]:
    """``with open_run(out, resume=..., overwrite=...) as out:`` the run folder, checked,
    created and locked (module docstring). ``outputs``: glob patterns of further files
    a run derives (e.g. evaluation folders) that ``overwrite`` deletes too."""
    dist = dist or DistInfo()
    out = Path(out)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the "
                         "run in the folder, overwrite replaces it")
    _check_path(out)
    if resume and not (out / "last.pt").is_file():
        raise FileNotFoundError(f"cannot resume: no checkpoint {out / 'last.pt'}")
    created = _make_folder(out) if dist.is_main else []
    lock = RunLock(out)
    try:
        error = None
        if dist.is_main:
            try:
                lock.acquire()
                _policy(out, resume=resume, overwrite=overwrite, outputs=outputs)
            except (OSError, RuntimeError, ValueError) as err:
                error = err
        if dist.enabled:  # every rank fails alike, none waits for the others forever
            message = broadcast_object(None if error is None else str(error), dist)
            if error is None and message is not None:
                error = RuntimeError(message)
            barrier(dist)
        if error is not None:
            raise error
        yield out
    except BaseException:
        lock.release()
        _remove_if_empty(created)
        raise
    lock.release()


class RunLock:
    """An exclusive ``fcntl.flock`` on ``folder/.lock``; the file names its holder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        for _ in range(5):  # the holder may unlink the file between our open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunInUseError(f"run folder {self.folder} is in use by another process "
                                    f"({holder}; lock {self.path}): wait for it to end, or "
                                    "choose another out folder") from None
            except OSError as err:  # a file system without locks (some network mounts)
                log.warning("%s: cannot lock (%s); two commands writing here would collide",
                            self.folder, err)
                self.fd = fd
                return
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = os.read(fd, 200).decode(errors="replace").strip()
            if previous:
                log.warning("%s: taking over the lock of %s, which has ended", self.folder,
                            previous)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            self.fd = fd
            return
        raise RunInUseError(f"could not lock {self.path}: it keeps changing")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still holding it: the next one locks a fresh file
        os.close(self.fd)
        self.fd = None


# -- resuming ----------------------------------------------------------------------------
def config_diff(old: dict, new: dict, keys: Sequence[str]) -> list[str]:
    """The keys (``key`` or ``key.field`` of dict values) where ``old`` and ``new`` differ."""
    diff = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            diff += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            diff.append(key)
    return diff


def check_resume(out: Path, config: dict, keys: Sequence[str], saved: dict | None = None
                 ) -> None:
    """A resumed run must have the settings ``keys`` of the run in ``out`` (``saved``,
    else its ``config.json``; a run without one is not checked). ValueError naming
    every differing key with the saved and the new value."""
    path = Path(out) / "config.json"
    if saved is None and not path.is_file():
        return
    old = saved if saved is not None else json.loads(path.read_text())
    diff = config_diff(old, config, keys)
    if diff:
        shown = "; ".join(f"{d}: saved {_get(old, d)!r}, now {_get(config, d)!r}"
                          for d in diff[:6])
        more = f" (and {len(diff) - 6} more)" if len(diff) > 6 else ""
        raise ValueError(f"cannot resume {out}: this run's settings differ from the saved "
                         f"ones in {', '.join(diff)} ({shown}{more}); use the saved settings, "
                         "or --overwrite / another out folder to start a new run")


def _get(config: dict, dotted: str):
    key, _, sub = dotted.partition(".")
    value = config.get(key)
    return value.get(sub) if sub and isinstance(value, dict) else value


# -- settings ----------------------------------------------------------------------------
def capped_warmup(warmup_steps: int, steps: int) -> int:
    """The warm-up of a run whose ``steps`` were given explicitly (e.g. a short ``--steps``
    for a smoke run): at most a tenth of the steps, at least 1, and never more than the
    preset's ``warmup_steps`` (a schedule without warm-up keeps none). The rule of
    ``lra``, ``lm train`` and ``translate train``."""
    return min(warmup_steps, max(1, steps // 10))


# -- results -----------------------------------------------------------------------------
def write_json(path: Path, data: dict) -> Path:
    """``path`` written atomically; an OSError names ``path`` (not its temporary file)."""
    try:
        return atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    except OSError as err:
        if err.errno is None:
            raise OSError(f"cannot write {path}: {err}") from err
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from err


def reset_peak_memory() -> bool:
    """Reset this process's peak resident memory (Linux: ``5`` into /proc/self/clear_refs
    sets VmHWM to the current RSS), so a run (one of a grid) measures its own peak;
    False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_memory(device: torch.device | str | None = None, *, since_reset: bool = False
                ) -> dict:
    """``{"peak_rss_mb", "peak_rss_scope"}`` (+ ``"peak_cuda_mb"`` on CUDA): the peak
    resident memory (KB / 1e3) since :func:`reset_peak_memory` when ``since_reset``
    (VmHWM; scope ``"run"``), else the whole process's (``ru_maxrss``; ``"process"``)."""
    out = None
    if since_reset:
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        out = {"peak_rss_mb": int(line.split()[1]) / 1e3,
                               "peak_rss_scope": "run"}
    if out is None:
        out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
               "peak_rss_scope": "process"}
    device = None if device is None else torch.device(device)
    if device is not None and device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 1e6
    return out


def runs_in_folder(fn=None, *, outputs: Sequence[str] = ()):
    """Decorator (``@runs_in_folder`` or ``@runs_in_folder(outputs=...)``): ``fn(...,
    out=, resume=, overwrite=, dist=)`` runs inside :func:`open_run` and gets the opened
    folder as ``out`` (``overwrite`` is consumed here)."""
    import functools

    if fn is None:
        return functools.partial(runs_in_folder, outputs=outputs)

    @functools.wraps(fn)
    def run(*args, out, resume: bool = False, overwrite: bool = False,
            dist: DistInfo | None = None, **kwargs):
        with open_run(out, resume=resume, overwrite=overwrite, dist=dist,
                      outputs=outputs) as folder:
            return fn(*args, out=folder, resume=resume, dist=dist, **kwargs)

    return run
