"""Pathfinder-32 (Long-Range Arena): generator, official directory layout, pixel tokens.

An image shows two round markers and several curved "snakes" made of short
straight *paddles*. The label says whether the two markers sit at the two ends
of the same snake (1, connected) or at ends of two different snakes (0).
LRA's hardest 32x32 variant, ``curv_contour_length_14`` (docs/math.md §5.1), uses
snakes of 14 paddles of length 2 px, markers of radius 1.5 px and short
distractor snakes; a model reads the 1,024 pixels in raster order as tokens.

- :mod:`~leapformer.data.pathfinder.generator`: :func:`generate_pathfinder`
  (the construction, and how it differs from the original generator);
- :mod:`~leapformer.data.pathfinder.layout`: the official LRA folder layout,
  :func:`load_pathfinder_dir` and :func:`save_pathfinder_dir` (PNG codec:
  ``leapformer.data._png``);
- :mod:`~leapformer.data.pathfinder.tokens`: :func:`pathfinder_tokens`.
"""

from leapformer.data.pathfinder.common import (
    DEFAULT_DIFFICULTY,
    DIFFICULTIES,
    PATHFINDER_SIZE,
    PIXEL_VOCAB_SIZE,
)
from leapformer.data.pathfinder.generator import PathfinderInfo, generate_pathfinder
from leapformer.data.pathfinder.layout import load_pathfinder_dir, save_pathfinder_dir
from leapformer.data.pathfinder.tokens import pathfinder_tokens

__all__ = [
    "DEFAULT_DIFFICULTY",
    "DIFFICULTIES",
    "PATHFINDER_SIZE",
    "PIXEL_VOCAB_SIZE",
    "PathfinderInfo",
    "generate_pathfinder",
    "load_pathfinder_dir",
    "pathfinder_tokens",
    "save_pathfinder_dir",
]
