"""Checkpoints written atomically: to a temporary file in the same folder, then
renamed over the old one, so an interrupted save never loses the last good
checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from leapformer._io import atomic_open


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """``torch.save(state)`` to ``path`` atomically; an OSError (full or read-only disk)
    names ``path``, not the temporary file."""
    try:
        with atomic_open(path) as fh:
            torch.save(state, fh)
    except OSError as err:
        if err.errno is None:
            raise OSError(f"could not write checkpoint {path}: {err}") from err
        raise OSError(err.errno, f"could not write checkpoint {path}: "
                      f"{err.strerror or err}") from err
    except RuntimeError as err:  # torch.save reports some write failures this way
        raise OSError(f"could not write checkpoint {path}: {err}") from err
    return Path(path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`; clear error if missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        first = str(err).strip().split(". ")[0].splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"could not read checkpoint {path}: it is truncated or not a "
                         f"checkpoint ({first or type(err).__name__})") from err
    if not isinstance(ck, dict):
        raise ValueError(f"could not read checkpoint {path}: it holds a "
                         f"{type(ck).__name__}, not a checkpoint")
    return ck
