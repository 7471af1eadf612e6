"""Pathfinder-32 generator.

**Generator** (:func:`generate_pathfinder`). It follows the construction of the
original generator (Linsley et al. 2018, ``drewlinsley/pathfinder``
``snakes2.py``, with LRA's pathfinder32 settings) in its structure:

- two *target* snakes start from seeds ``seed_distance`` px apart (the first in
  the central 4x4 pixels, the second in a random direction, both on pixel
  centres), each grows ``contour_length`` paddles, every paddle turning from the
  previous one by an angle drawn with density ``cos^2(continuity * delta)``;
- ``num_distractors`` distractor snakes of ``distractor_length`` paddles start
  at random free places (defaults as LRA: ``contour_length // 3`` paddles,
  ``20 // distractor_length`` snakes);
- markers: one on the seed end (*origin*) of a random target snake; the other on
  the far end (*terminal*) of the same snake (label 1) or of the other target
  snake (label 0). The snakes are drawn the same way for both labels; only the
  choice of the second end differs.

Simplifications relative to the original, stated honestly:

1. **Continuous contours by default.** The original leaves a gap of
   ``2 * paddle_margin`` px (2 px at 32x32) between consecutive paddles, so its
   snakes are dashed and a 14-paddle contour runs over about 56 px; here
   paddles join end to end (``paddle_gap=0``), so it runs over 28 px.
   ``paddle_gap=2.0`` gives dashed snakes of the original's extent, but with
   the stricter separation below they crowd a 32x32 image: generation is about
   3x slower and fewer distractors fit (about 3 of 5 on average).
2. **Rendering.** A paddle is a capsule of width ``paddle_thickness`` (1 px)
   whose pixel value is ``255 * clip(thickness / 2 + 0.5 - d, 0, 1)``, ``d`` the
   distance from the pixel centre to the segment (markers likewise with
   ``marker_radius``): an analytic anti-aliasing, instead of the original's
   lines drawn at twice the resolution (``paddle_thickness 0.5``,
   ``antialias_scale 2``) and Lanczos down-sampling. No contrast jitter: every
   stroke reaches 255 (the original's saved PNGs are rescaled to their maximum).
3. **Turning angles** are drawn from the continuous density above; a paddle
   that would leave the image or touch another object is rejected. Up to 16
   i.i.d. proposals are tried per paddle (the first valid one is a draw from
   the density restricted to valid directions); if all fail, 48 evenly spaced
   directions weighted by the density are tried, which is what the original
   does with the pixels on a circle around a pivot (weighted by the same law
   and a free-space mask).
4. **Separation is exact at the pixel level.** Pixels lit (value > 0) by two
   different objects (snake or marker) are never 8-adjacent, and a snake keeps
   clear of its own paddles except the three before it. The original keeps
   objects apart with a dilated occupancy mask of ``paddle_margin`` px, which
   is close to this but not a guarantee. Consequence, and the reason for the
   rule: the label can be read off the pixels (a flood fill over lit pixels
   from one marker reaches the other exactly when the label is 1), so no
   label is wrong because two snakes happen to touch.
5. **Failures.** An image whose target snakes cannot be completed is redrawn
   (as in the original). A distractor that runs into a dead end is discarded
   and another is tried, at most ``2 * num_distractors + 2`` tries per image, so
   a crowded image can hold fewer distractors than asked for
   (``info.num_distractors`` reports how many; the original also gives up
   when the image is full). No single-paddle clutter (the original's
   ``use_single_paddles`` option; LRA does not say whether it was on).
6. **Labels** are exactly balanced (``n // 2`` ones and ``n - n // 2``
   zeros, shuffled) instead of a fair coin per image, and all randomness comes
   from ``numpy.random.Generator`` streams derived from ``seed``: the same
   ``(n, seed, parameters)`` give identical arrays (with the same numpy).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from leapformer.data.pathfinder._snakes import _Geometry, _Round, _TurnSampler, _window
from leapformer.data.pathfinder.common import PATHFINDER_SIZE, _check_float, _check_int

logger = logging.getLogger(__name__)

_CHUNK = 2048              # images generated together (bounds memory)
_MIN_ROUND = 64            # images drawn together when only a few are still missing


@dataclass(frozen=True)
class PathfinderInfo:
    """Geometry of generated images (``return_info=True``), in pixel coordinates
    ``(row, col)`` of the image, pixel ``(r, c)`` centred at ``(r, c)``.

    - ``markers``: float64 ``[n, 2, 2]``, the centres of the two markers; marker 0
      is on the origin (seed) end of target snake 0, marker 1 on the terminal end
      of target snake 0 (label 1) or of target snake 1 (label 0).
    - ``snake_ends``: float64 ``[n, 2, 2, 2]``: target snake, end (0 origin,
      1 terminal), ``(row, col)``.
    - ``num_distractors``: int64 ``[n]``, distractor snakes drawn in each image.
    """

    markers: np.ndarray
    snake_ends: np.ndarray
    num_distractors: np.ndarray


def _place_markers(geo: _Geometry, rng: np.random.Generator, canvas: np.ndarray,
                   ends: np.ndarray, labels: np.ndarray):
    """Draw the two markers on padded coverage images ``canvas`` and crop them:
    one on the origin of a random target snake (made snake 0), the other on the
    terminal end of the same snake (label 1) or of the other one (label 0).
    Returns ``uint8`` images and ``markers``, ``ends`` in image coordinates."""
    m = len(labels)
    ends = ends.copy()
    swap = rng.integers(0, 2, m) == 1
    ends[swap] = ends[swap][:, ::-1]
    markers = np.empty((m, 2, 2))
    markers[:, 0] = ends[:, 0, 0]
    markers[:, 1] = np.where(labels[:, None] == 1, ends[:, 0, 1], ends[:, 1, 1])
    ix = np.arange(m)
    for k in range(2):
        cy, cx = markers[:, k, 0], markers[:, k, 1]
        rows, cols, d, _ = _window(cy, cx, cy, cx, geo.marker_lit, 0.0)
        at = (ix[:, None], rows, cols)
        cov = np.clip(geo.marker_lit - d, 0.0, 1.0).astype(np.float32)
        canvas[at] = np.maximum(canvas[at], cov)
    p, s = geo.pad, geo.size
    images = np.rint(canvas[:, p:p + s, p:p + s] * 255.0).astype(np.uint8)
    return images, markers - p, ends - p


def generate_pathfinder(
    n: int,
    *,
    seed: int,
    size: int = PATHFINDER_SIZE,
    contour_length: int = 14,
    paddle_length: float = 2.0,
    marker_radius: float = 1.5,
    distractor_length: int | None = None,
    num_distractors: int | None = None,
    paddle_gap: float = 0.0,
    paddle_thickness: float = 1.0,
    continuity: float = 1.0,
    seed_distance: float = 7.0,
    padding: float = 1.0,
    return_info: bool = False,
):
    """Generate ``n`` Pathfinder images and labels (see the module docstring).

    Returns ``(images, labels)``: ``uint8 [n, size, size]`` and ``int64 [n]``
    (1 = the markers are connected by one snake), with ``n // 2`` ones,
    shuffled; with ``return_info=True`` also a :class:`PathfinderInfo`.

    Defaults are LRA's ``pathfinder32/curv_contour_length_14``: contour of 14
    paddles of 2 px, markers of radius 1.5 px, seeds 7 px apart, 1 px border,
    continuity 1.0; ``distractor_length`` defaults to ``contour_length // 3``
    and ``num_distractors`` to ``20 // distractor_length``. ``paddle_gap``: px
    between consecutive paddles (0 = continuous snakes; the original has 2).
    The same ``(n, seed, parameters)`` always give identical arrays.
    """
    n = _check_int("n", n, 0)
    seed = _check_int("seed", seed, 0)
    size = _check_int("size", size, 8)
    contour_length = _check_int("contour_length", contour_length, 1)
    if distractor_length is None:
        distractor_length = max(1, contour_length // 3)
    distractor_length = _check_int("distractor_length", distractor_length, 1)
    if num_distractors is None:
        num_distractors = 20 // distractor_length
    num_distractors = _check_int("num_distractors", num_distractors, 0)
    if not isinstance(return_info, bool):
        raise TypeError(f"return_info must be a bool, got {type(return_info).__name__}")
    geo = _Geometry(
        size=size, contour_length=contour_length,
        paddle_length=_check_float("paddle_length", paddle_length, 0.0),
        paddle_gap=_check_float("paddle_gap", paddle_gap, 0.0, strict=False),
        paddle_thickness=_check_float("paddle_thickness", paddle_thickness, 0.0),
        marker_radius=_check_float("marker_radius", marker_radius, 0.0),
        distractor_length=distractor_length, num_distractors=num_distractors,
        continuity=_check_float("continuity", continuity, 0.0),
        seed_distance=_check_float("seed_distance", seed_distance, 0.0),
        padding=_check_float("padding", padding, 0.0, strict=False),
    )
    if geo.padding >= (size - 1) / 2:
        raise ValueError(f"padding must be < (size - 1) / 2 = {(size - 1) / 2}, got {geo.padding}")

    start = time.perf_counter()
    n_chunks = -(-n // _CHUNK)
    seq = np.random.SeedSequence(seed)
    label_seq, *chunk_seqs = seq.spawn(1 + n_chunks)
    labels = np.zeros(n, dtype=np.int64)
    labels[: n // 2] = 1
    labels = np.random.Generator(np.random.PCG64(label_seq)).permutation(labels)

    images = np.zeros((n, size, size), dtype=np.uint8)
    markers = np.zeros((n, 2, 2))
    ends = np.zeros((n, 2, 2, 2))
    placed = np.zeros(n, dtype=np.int64)
    turn = _TurnSampler(geo.continuity)
    attempts = 0
    for c in range(n_chunks):
        rng = np.random.Generator(np.random.PCG64(chunk_seqs[c]))
        chunk = np.arange(c * _CHUNK, min(n, (c + 1) * _CHUNK))
        canvas = np.zeros((chunk.size, geo.grid, geo.grid), dtype=np.float32)
        c_ends = np.zeros((chunk.size, 2, 2, 2))
        filled = tried = 0
        while filled < chunk.size:
            m = max(chunk.size - filled, _MIN_ROUND)
            ok, img, en, pl = _Round(geo, rng, turn, m).run()
            good = np.flatnonzero(ok)[: chunk.size - filled]
            put = chunk[filled:filled + good.size]
            at = put - chunk[0]
            canvas[at], c_ends[at], placed[put] = img[good], en[good], pl[good]
            filled += good.size
            tried += m
            if filled < chunk.size and tried >= 2000 and filled < 0.01 * tried:
                raise ValueError(
                    f"could not fit two separate target snakes of contour_length={contour_length} "
                    f"(paddle_length={geo.paddle_length}, paddle_gap={geo.paddle_gap}, "
                    f"marker_radius={geo.marker_radius}, seed_distance={geo.seed_distance}) in a "
                    f"{size}x{size} image: {filled} of {tried} attempts succeeded; "
                    "use a larger size or shorter snakes")
        attempts += tried
        images[chunk], markers[chunk], ends[chunk] = _place_markers(geo, rng, canvas, c_ends,
                                                                    labels[chunk])
    if n:
        logger.info("generated %d Pathfinder images (%dx%d, contour %d) in %.2f s: %d drawn, "
                    "%.2f of %d distractors per image", n, size, size, contour_length,
                    time.perf_counter() - start, attempts, placed.mean(), num_distractors)
    if return_info:
        return images, labels, PathfinderInfo(markers, ends, placed)
    return images, labels
