"""Constants and argument checks shared by the Pathfinder modules."""

from __future__ import annotations

import math

import numpy as np

PATHFINDER_SIZE = 32
"""Side of LRA's Pathfinder-32 images, in pixels."""
PIXEL_VOCAB_SIZE = 256
"""Number of token ids of :func:`pathfinder_tokens` (one per 8-bit pixel value)."""
DIFFICULTIES = ("curv_baseline", "curv_contour_length_9", "curv_contour_length_14")
"""The three difficulty folders of the LRA release (easy, intermediate, hard)."""
DEFAULT_DIFFICULTY = "curv_contour_length_14"
"""The variant LRA (and LeaPformer) report: contour length 14."""


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _check_float(name, value, low, *, strict=True):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (value <= low if strict else value < low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value}")
    return value
