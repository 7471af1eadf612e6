"""Checkpoints written atomically: to a temporary file in the same folder, then
renamed over the old one, so an interrupted save never loses the last good
checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from leapformer._io import atomic_open


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """``torch.save(state)`` to ``path`` atomically."""
    with atomic_open(path) as fh:
        torch.save(state, fh)
    return Path(path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`; clear error if missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"could not read checkpoint {path}: {err}") from err
