"""Atomic file writes: write a fresh temporary sibling, fsync, rename over the
target. An interrupted write never leaves a half-written file or loses the
previous one. Also the checked reading of a JSON result file that every report
shares (:func:`read_json_object`, :func:`require_keys`)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_open(path: str | Path, binary: bool = True) -> Iterator[IO]:
    """``with atomic_open(path) as fh: ...`` writes ``path`` atomically (creates its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh file (not mkstemp's 0600) so the result gets the usual permissions
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb" if binary else "x") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # e.g. a read-only folder: keep the real error, not this one
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, binary=False) as fh:
        fh.write(text)
    return Path(path)


def read_json_object(path: str | Path) -> dict:
    """The JSON object in ``path``; ValueError naming the file if it is unreadable or
    not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as err:
        raise ValueError(f"could not read {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"could not read {path}: expected a JSON object, got "  # noqa: TRY004
                         f"{type(data).__name__}")
    return data


def require_keys(data: dict, keys: tuple[str, ...], path: str | Path, what: str) -> None:
    """ValueError naming ``path`` and the missing keys unless ``data`` has all ``keys``."""
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{path} is not {what}: missing {', '.join(missing)}")


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file (``metrics.jsonl``), blank lines skipped; a line
    that is not a JSON object is a ``ValueError`` naming the file and 1-based line."""
    path = Path(path)
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not a JSON record ({err.msg})") from err
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{n}: not a JSON record (a {type(rec).__name__})")
        records.append(rec)
    return records
