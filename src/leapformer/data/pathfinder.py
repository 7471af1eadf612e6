"""Pathfinder-32 (Long-Range Arena): generator, official directory layout, pixel tokens.

An image shows two round markers and several curved "snakes" made of short
straight *paddles*. The label says whether the two markers sit at the two ends
of the same snake (1, connected) or at ends of two different snakes (0).
LRA's hardest 32x32 variant, ``curv_contour_length_14`` (docs/math.md §5.1), uses
snakes of 14 paddles of length 2 px, markers of radius 1.5 px and short
distractor snakes; a model reads the 1,024 pixels in raster order as tokens.

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

**Official layout** (:func:`load_pathfinder_dir`, :func:`save_pathfinder_dir`).
The LRA release ``lra_release/pathfinder32/<difficulty>/`` holds
``imgs/<k>/sample_<i>.png`` (8-bit greyscale PNG, 32x32) and
``metadata/<k>.npy``. Despite the suffix, a metadata file is *text* (LRA's
input pipeline decodes it as UTF-8 and splits it on newlines and spaces): one
line per image, fields ``<image dir> <file name> <index> <label> ...``, e.g.
``imgs/0 sample_0.png 0 1 ...``, where ``<image dir>`` is relative to
``<difficulty>/`` and only fields 0, 1 and 3 are used; the original generator's
remaining fields (continuity, contour length, ...) may follow. A metadata file
saved with ``numpy.save`` as a 2-D string array is read as well. The release
contains a few empty (0-byte) PNGs, which LRA's pipeline skips; so does the
loader (with a logged warning) unless ``skip_empty=False``.

**Tokens** (:func:`pathfinder_tokens`): the pixels in raster order, values
0-255 used directly as ids (vocabulary 256), as in LRA.
"""

from __future__ import annotations

import io
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import Tensor

from leapformer._io import atomic_open
from leapformer.data._png import decode_png, encode_png

logger = logging.getLogger(__name__)

PATHFINDER_SIZE = 32
"""Side of LRA's Pathfinder-32 images, in pixels."""
PIXEL_VOCAB_SIZE = 256
"""Number of token ids of :func:`pathfinder_tokens` (one per 8-bit pixel value)."""
DIFFICULTIES = ("curv_baseline", "curv_contour_length_9", "curv_contour_length_14")
"""The three difficulty folders of the LRA release (easy, intermediate, hard)."""
DEFAULT_DIFFICULTY = "curv_contour_length_14"
"""The variant LRA (and LeaPformer) report: contour length 14."""

_AGE_FREE = np.int16(np.iinfo(np.int16).max)  # "no paddle of the current snake near here"
_SELF_CLEAR = 4            # a paddle may touch the zones of the 3 paddles before it, no older ones
_PROPOSALS = 16            # i.i.d. proposals per paddle (and per seed)
_BATCH = 2                 # proposals checked at a time (the first is usually valid)
_FALLBACK = 48             # evenly spaced directions tried when all proposals fail
_CHUNK = 2048              # images generated together (bounds memory)
_MIN_ROUND = 64            # images drawn together when only a few are still missing


# --------------------------------------------------------------------------- generator


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


@dataclass(frozen=True)
class _Geometry:
    size: int
    contour_length: int
    paddle_length: float
    paddle_gap: float
    paddle_thickness: float
    marker_radius: float
    distractor_length: int
    num_distractors: int
    continuity: float
    seed_distance: float
    padding: float

    @property
    def lit(self) -> float:          # a paddle lights the pixels closer than this
        return self.paddle_thickness / 2 + 0.5

    @property
    def marker_lit(self) -> float:   # a marker lights the pixels closer than this
        return self.marker_radius + 0.5

    @property
    def pad(self) -> int:            # working grids are padded so windows never leave them
        return int(math.ceil(max(self.lit, self.marker_lit))) + 4

    @property
    def grid(self) -> int:
        return self.size + 2 * self.pad


def _window_size(length: float, radius: float) -> int:
    """Side of a square window that holds every pixel within ``radius`` of any
    segment of ``length``, when anchored at ``floor(min coordinate - radius)``."""
    return int(math.ceil(length + 2 * radius)) + 2


def _segment_distance(py, px, y0, x0, y1, x1):
    """Distance from points ``(py, px)`` to segments ``(y0, x0)-(y1, x1)``
    (broadcasting; a zero-length segment is a point)."""
    vy, vx = y1 - y0, x1 - x0
    l2 = vy * vy + vx * vx
    t = ((py - y0) * vy + (px - x0) * vx) / np.where(l2 > 0, l2, np.ones_like(l2))
    t = np.clip(t, 0, 1)
    dy, dx = py - y0 - t * vy, px - x0 - t * vx
    return np.sqrt(dy * dy + dx * dx)


def _window(y0, x0, y1, x1, radius: float, length: float, extra: int = 0):
    """Pixel rows, cols (int64) and distances of a window around each segment.

    Shapes: inputs ``[...]``, outputs ``[..., w*w]`` with ``w`` from
    :func:`_window_size` plus ``2 * extra`` (a ring of extra pixels, for dilation).
    """
    w = _window_size(length, radius) + 2 * extra
    r0 = np.floor(np.minimum(y0, y1) - radius).astype(np.int64) - extra
    c0 = np.floor(np.minimum(x0, x1) - radius).astype(np.int64) - extra
    off_r, off_c = np.divmod(np.arange(w * w), w)
    rows = r0[..., None] + off_r
    cols = c0[..., None] + off_c
    f = np.float32  # plenty for pixel geometry, and the check and the drawing use the same values
    d = _segment_distance(rows.astype(f), cols.astype(f), y0[..., None].astype(f),
                          x0[..., None].astype(f), y1[..., None].astype(f), x1[..., None].astype(f))
    return rows, cols, d, w


def _dilate(mask: np.ndarray, w: int) -> np.ndarray:
    """8-neighbourhood dilation of flat ``[m, w*w]`` window masks (the outer ring
    of each window must be empty, which :func:`_window` with ``extra=1`` ensures)."""
    m = mask.reshape(-1, w, w)
    p = np.zeros((m.shape[0], w + 2, w + 2), dtype=bool)
    p[:, 1:-1, 1:-1] = m
    out = np.zeros_like(m)
    for dr in range(3):
        for dc in range(3):
            out |= p[:, dr:dr + w, dc:dc + w]
    return out.reshape(mask.shape)


class _TurnSampler:
    """Turning angles with density proportional to ``cos^2(continuity * delta)`` on
    ``|delta| <= min(pi / (2 continuity), pi)`` (inverse CDF on a fine grid)."""

    def __init__(self, continuity: float):
        half = min(math.pi / (2 * continuity), math.pi)
        self.grid = np.linspace(-half, half, 2049)
        dens = np.cos(np.clip(continuity * np.abs(self.grid), 0, math.pi / 2)) ** 2
        cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2)])
        self.cdf = cdf / cdf[-1]
        # fallback: evenly spaced angles (cell centres) weighted by the density
        step = 2 * half / _FALLBACK
        self.fixed = -half + step * (np.arange(_FALLBACK) + 0.5)
        self.fixed_weight = np.cos(np.clip(continuity * np.abs(self.fixed), 0, math.pi / 2)) ** 2

    def __call__(self, rng: np.random.Generator, shape) -> np.ndarray:
        return np.interp(rng.random(shape), self.cdf, self.grid)


class _Round:
    """Draws one batch of ``m`` images; images whose target snakes fail are
    reported in ``ok`` and redrawn by the caller."""

    def __init__(self, geo: _Geometry, rng: np.random.Generator, turn: _TurnSampler, m: int):
        self.g, self.rng, self.turn, self.m = geo, rng, turn, m
        self.lo = geo.pad + geo.padding                      # allowed centre-line coordinates
        self.hi = geo.pad + geo.size - 1 - geo.padding
        shape = (m, geo.grid, geo.grid)
        self.committed = np.zeros(shape, dtype=bool)         # dilated lit pixels, finished objects
        self.image = np.zeros(shape, dtype=np.float32)       # coverage of finished snakes
        self.age = np.empty(shape, dtype=np.int16)           # current snake: oldest paddle nearby
        self.layer = np.empty(shape, dtype=np.float32)       # current snake: its coverage

    # ---- low-level pieces
    def _inside(self, *coords) -> np.ndarray:
        ok = np.ones(np.shape(coords[0]), dtype=bool)
        for c in coords:
            ok &= (c >= self.lo) & (c <= self.hi)
        return ok

    def _clip(self, c):
        return np.clip(c, self.lo, self.hi)

    def _hits(self, grid, ix, y0, x0, y1, x1, radius, length):
        """Whether the lit pixels of each segment touch ``grid`` (True pixels);
        inputs ``[len(ix), k]``, output ``[len(ix), k]``."""
        rows, cols, d, _ = _window(self._clip(y0), self._clip(x0), self._clip(y1),
                                   self._clip(x1), radius, length)
        lit = d < radius
        return (grid[ix[:, None, None], rows, cols] & lit).any(-1)

    def _stamp(self, ix, y0, x0, y1, x1, radius, length, age_value, draw):
        """Record one segment (or disk) per image ``ix`` in the current snake's
        layers: its dilated lit pixels into ``age`` (keeping the minimum), its
        coverage into ``layer`` when ``draw``."""
        rows, cols, d, w = _window(y0, x0, y1, x1, radius, length, extra=1)
        lit = d < radius
        zone = _dilate(lit, w)
        at = (ix[:, None], rows, cols)
        old = self.age[at]
        self.age[at] = np.where(zone, np.minimum(old, age_value), old)
        if draw:
            cov = np.clip(radius - d, 0.0, 1.0).astype(np.float32)
            self.layer[at] = np.maximum(self.layer[at], cov)

    def _disk_hits(self, grid, ix, cy, cx):
        r = self.g.marker_lit
        cy, cx = cy[:, None], cx[:, None]
        return self._hits(grid, ix, cy, cx, cy, cx, r, 0.0)[:, 0]

    def _stamp_disk(self, ix, cy, cx, age_value):
        r = self.g.marker_lit
        self._stamp(ix, cy, cx, cy, cx, r, 0.0, age_value, draw=False)

    def _commit(self, ix):
        self.committed[ix] |= self.age[ix] < _AGE_FREE
        self.image[ix] = np.maximum(self.image[ix], self.layer[ix])

    def _reset(self):
        self.age.fill(_AGE_FREE)
        self.layer.fill(0.0)

    def _clear(self, sub, blocked, idx, y0, x0, y1, x1):
        """Whether the lit pixels of paddles ``[len(sub), k]`` (inside the image)
        avoid ``blocked`` and the current snake's paddles older than the last three."""
        g = self.g
        rows, cols, d, _ = _window(y0, x0, y1, x1, g.lit, g.paddle_length)
        at = (sub[:, None, None], rows, cols)
        bad = blocked[at]
        if idx >= _SELF_CLEAR:
            bad = bad | (self.age[at] <= idx - _SELF_CLEAR)
        return ~(bad & (d < g.lit)).any(-1)

    def _first_valid(self, sub, blocked, idx, y0, x0, y1, x1):
        """Index of the first valid proposal per row of ``[len(sub), k]`` paddle
        proposals (-1 if none): inside the image, its lit pixels clear of
        ``blocked`` and of the current snake's paddles older than the last three.

        Proposals inside the image are checked a few at a time in their original
        order, so usually only the first few cost a window evaluation; the result
        is the same as checking all of them."""
        inside = self._inside(y0, x0, y1, x1)
        n_inside = inside.sum(axis=1)
        order = np.argsort(~inside, axis=1, kind="stable")  # inside ones first, order kept
        choice = np.full(len(sub), -1, dtype=np.int64)
        todo = np.arange(len(sub))
        for lo in range(0, inside.shape[1], _BATCH):
            todo = todo[n_inside[todo] > lo]
            if todo.size == 0:
                break
            cols = order[todo, lo:lo + _BATCH]
            usable = lo + np.arange(cols.shape[1]) < n_inside[todo, None]
            rr = todo[:, None]
            good = usable & self._clear(sub[todo], blocked, idx, y0[rr, cols], x0[rr, cols],
                                        y1[rr, cols], x1[rr, cols])
            has = good.any(axis=1)
            choice[todo[has]] = cols[has, good[has].argmax(axis=1)]
            todo = todo[~has]
        return choice

    # ---- one snake in each image of ix
    def grow(self, ix, blocked, n_paddles, start=None):
        """Grow a snake of ``n_paddles`` paddles in each image ``ix`` into the
        current layers, avoiding ``blocked`` pixels (indexed like the round's
        grids) and its own older paddles. ``start``: fixed ``(rows, cols)`` of the
        first paddle's start, else random free places. Returns ``alive`` (bool
        ``[len(ix)]``), start and end coordinates."""
        g, rng, k = self.g, self.rng, _PROPOSALS
        n = len(ix)
        alive = np.ones(n, dtype=bool)
        sy, sx = (np.zeros(n), np.zeros(n)) if start is None else (start[0].astype(np.float64),
                                                                   start[1].astype(np.float64))
        ey, ex, th = sy.copy(), sx.copy(), np.zeros(n)
        for idx in range(n_paddles):
            a = np.flatnonzero(alive)
            if a.size == 0:
                break
            sub = ix[a]
            if idx == 0:
                theta = rng.uniform(-math.pi, math.pi, (a.size, k))
                if start is None:
                    y0 = rng.uniform(self.lo, self.hi, (a.size, k))
                    x0 = rng.uniform(self.lo, self.hi, (a.size, k))
                else:
                    y0 = np.repeat(sy[a, None], k, axis=1)
                    x0 = np.repeat(sx[a, None], k, axis=1)
            else:
                theta = th[a, None] + self.turn(rng, (a.size, k))
                y0 = ey[a, None] + g.paddle_gap * np.sin(theta)
                x0 = ex[a, None] + g.paddle_gap * np.cos(theta)
            y1 = y0 + g.paddle_length * np.sin(theta)
            x1 = x0 + g.paddle_length * np.cos(theta)
            j = self._first_valid(sub, blocked, idx, y0, x0, y1, x1)
            rows = np.arange(a.size)
            jj = np.maximum(j, 0)
            cy0, cx0 = y0[rows, jj], x0[rows, jj]
            cy1, cx1, cth = y1[rows, jj], x1[rows, jj], theta[rows, jj]
            found = j >= 0
            miss = np.flatnonzero(~found)
            if miss.size and (idx > 0 or start is not None):
                # rare: every proposal failed; try evenly spaced directions, drawn by weight
                if idx == 0:
                    fixed = np.linspace(-math.pi, math.pi, _FALLBACK, endpoint=False)
                    weight = np.ones(_FALLBACK)
                    fy0, fx0 = sy[a[miss], None], sx[a[miss], None]
                    fth = np.broadcast_to(fixed, (miss.size, _FALLBACK))
                else:
                    weight = self.turn.fixed_weight
                    fth = th[a[miss], None] + self.turn.fixed
                    fy0 = ey[a[miss], None] + g.paddle_gap * np.sin(fth)
                    fx0 = ex[a[miss], None] + g.paddle_gap * np.cos(fth)
                fy0, fx0 = np.broadcast_to(fy0, fth.shape), np.broadcast_to(fx0, fth.shape)
                fy1 = fy0 + g.paddle_length * np.sin(fth)
                fx1 = fx0 + g.paddle_length * np.cos(fth)
                inside = self._inside(fy0, fx0, fy1, fx1)
                w = np.where(inside, weight, 0.0)
                w *= self._clear(sub[miss], blocked, idx, self._clip(fy0), self._clip(fx0),
                                 self._clip(fy1), self._clip(fx1))
                cum = np.cumsum(w, axis=1)
                u = rng.random(miss.size) * cum[:, -1]
                pick = np.minimum((cum <= u[:, None]).sum(axis=1), _FALLBACK - 1)
                hit = cum[:, -1] > 0
                rr, pk = np.arange(miss.size)[hit], pick[hit]
                back = miss[hit]
                cy0[back], cx0[back] = fy0[rr, pk], fx0[rr, pk]
                cy1[back], cx1[back], cth[back] = fy1[rr, pk], fx1[rr, pk], fth[rr, pk]
                found[back] = True
            alive[a[~found]] = False
            a = a[found]
            if a.size == 0:
                continue
            cy0, cx0, cy1, cx1, cth = cy0[found], cx0[found], cy1[found], cx1[found], cth[found]
            self._stamp(ix[a], cy0, cx0, cy1, cx1, g.lit, g.paddle_length, idx, draw=True)
            if idx == 0 and start is None:
                sy[a], sx[a] = cy0, cx0
            ey[a], ex[a], th[a] = cy1, cx1, cth
        return alive, (sy, sx), (ey, ex)

    def _target(self, sel, blocked, oy, ox, ty, tx, ok):
        """Grow a target snake from origins ``(oy, ox)[sel]`` in images ``sel``,
        with its origin and terminal marker zones; commit it where it succeeds,
        write its terminal ends into ``ty, tx`` and clear ``ok`` where it fails
        (all indexed by image)."""
        g = self.g
        self._reset()
        self._stamp_disk(sel, oy[sel], ox[sel], 0)
        alive, _, (ey, ex) = self.grow(sel, blocked, g.contour_length, start=(oy[sel], ox[sel]))
        alive[alive] &= ~self._disk_hits(blocked, sel[alive], ey[alive], ex[alive])
        done = sel[alive]
        ty[done], tx[done] = ey[alive], ex[alive]
        self._stamp_disk(done, ey[alive], ex[alive], g.contour_length)
        self._commit(done)
        ok[sel[~alive]] = False

    # ---- a whole batch
    def run(self):
        g, rng, m = self.g, self.rng, self.m
        ix = np.arange(m)
        half = g.size // 2
        # seeds: snake A's origin in the central 4x4 pixels, B's seed_distance away
        ay = rng.integers(half - 2, half + 2, m) + g.pad
        ax = rng.integers(half - 2, half + 2, m) + g.pad
        phi = rng.uniform(0, 2 * math.pi, m)
        by = np.round(ay + g.seed_distance * np.sin(phi))
        bx = np.round(ax + g.seed_distance * np.cos(phi))
        ay, ax = ay.astype(np.float64), ax.astype(np.float64)
        ok = self._inside(by, bx) & self._inside(ay, ax)
        by, bx = np.where(ok, by, ay), np.where(ok, bx, ax)

        # snake A avoids B's origin marker; its own origin marker is part of it
        pending_b = np.zeros_like(self.committed)
        self._reset()
        self._stamp_disk(ix, by, bx, 0)
        pending_b |= self.age < _AGE_FREE
        ok &= ~self._disk_hits(pending_b, ix, ay, ax)
        a_ty, a_tx = ay.copy(), ax.copy()
        self._target(ix[ok], pending_b, ay, ax, a_ty, a_tx, ok)
        del pending_b
        # snake B avoids everything of A
        ok[ok] &= ~self._disk_hits(self.committed, ix[ok], by[ok], bx[ok])
        b_ty, b_tx = by.copy(), bx.copy()
        self._target(ix[ok], self.committed, by, bx, b_ty, b_tx, ok)

        # distractors in the images that succeeded so far
        placed = np.zeros(m, dtype=np.int64)
        for _ in range(2 * g.num_distractors + 2):
            need = np.flatnonzero(ok & (placed < g.num_distractors))
            if need.size == 0 or g.distractor_length == 0:
                break
            self._reset()
            alive, _, _ = self.grow(need, self.committed, g.distractor_length)
            done = need[alive]
            self._commit(done)
            placed[done] += 1

        ends = np.empty((m, 2, 2, 2))                       # snake, end (origin, terminal), yx
        ends[:, 0, 0], ends[:, 0, 1] = np.stack([ay, ax], -1), np.stack([a_ty, a_tx], -1)
        ends[:, 1, 0], ends[:, 1, 1] = np.stack([by, bx], -1), np.stack([b_ty, b_tx], -1)
        return ok, self.image, ends, placed


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


# --------------------------------------------------------------------------- tokens


def pathfinder_tokens(images: np.ndarray | Tensor) -> Tensor:
    """LRA's input: the pixels of each image in raster order as ids 0-255.

    ``images``: ``[n, height, width]`` uint8 (or another integer type holding
    values 0-255), numpy or torch. Returns a LongTensor ``[n, height * width]``
    (``[n, 1024]`` for Pathfinder-32); the vocabulary is :data:`PIXEL_VOCAB_SIZE`.
    """
    if isinstance(images, Tensor):
        arr = images.detach().cpu()
        if arr.dtype.is_floating_point or arr.dtype.is_complex or arr.dtype == torch.bool:
            raise TypeError(f"images must hold integers (pixel values), got {arr.dtype}")
        arr = arr.numpy()
    elif isinstance(images, np.ndarray):
        arr = images
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"images must hold integers (pixel values), got {arr.dtype}")
    else:
        raise TypeError("images must be a numpy array or a torch tensor, "
                        f"got {type(images).__name__}")
    if arr.ndim != 3:
        raise ValueError(f"images must be [n, height, width], got shape {list(arr.shape)}")
    if arr.dtype != np.uint8 and arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"pixel values must be in [0, 255], got [{arr.min()}, {arr.max()}]")
    return torch.from_numpy(arr.reshape(arr.shape[0], -1).astype(np.int64))


# --------------------------------------------------------------------------- official layout


def _check_difficulty(difficulty) -> str:
    if not isinstance(difficulty, str):
        raise TypeError(f"difficulty must be a str, got {type(difficulty).__name__}")
    if not difficulty or difficulty in (".", "..") or "/" in difficulty or "\\" in difficulty:
        raise ValueError(f"difficulty must be a folder name such as {DIFFICULTIES[-1]!r}, "
                         f"got {difficulty!r}")
    return difficulty


def _metadata_key(path: Path):
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.stem)


def _metadata_rows(path: Path) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of a metadata file: text (the LRA release) or a
    2-D string array written by ``numpy.save`` (the original generator)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot read metadata file: {err}") from None
    if raw.startswith(b"\x93NUMPY"):
        try:
            table = np.load(io.BytesIO(raw), allow_pickle=False)
        except Exception as err:  # corrupt header, object array, ...
            raise ValueError(f"{path}: unreadable .npy metadata: {err}") from None
        if table.ndim != 2 or table.dtype.kind not in "US":
            raise ValueError(f"{path}: .npy metadata must be a 2-D string array, "
                             f"got {table.dtype} of shape {list(table.shape)}")
        return [(i + 1, [v.decode() if isinstance(v, bytes) else str(v) for v in row])
                for i, row in enumerate(table.tolist())]
    rows = []
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ValueError(f"{path}:{lineno}: not UTF-8 text (expected lines like "
                             "'imgs/0 sample_0.png 0 1')") from None
        if text:
            rows.append((lineno, text.split()))
    return rows


def _relative_image_path(path: Path, lineno: int, fields: list[str]) -> PurePosixPath:
    rel = PurePosixPath(fields[0].replace("\\", "/")) / fields[1]
    if rel.is_absolute() or ".." in rel.parts or fields[1] in ("", ".", ".."):
        raise ValueError(f"{path}:{lineno}: image path {str(rel)!r} must stay inside the "
                         "difficulty folder")
    return rel


def _grey(pixels: np.ndarray, image: Path, where: str, size: int) -> np.ndarray:
    h, w, ch = pixels.shape
    if (h, w) != (size, size):
        raise ValueError(f"{image} ({where}): image is {h}x{w} (height x width), expected "
                         f"{size}x{size}")
    if ch in (1, 2):                       # grey, grey + alpha
        return pixels[..., 0]
    if (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all():
        return pixels[..., 0]              # grey stored as RGB(A)
    raise ValueError(f"{image} ({where}): colour image; Pathfinder images are greyscale")


def load_pathfinder_dir(
    root: str | os.PathLike,
    *,
    difficulty: str = DEFAULT_DIFFICULTY,
    size: int = PATHFINDER_SIZE,
    limit: int | None = None,
    skip_empty: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a Pathfinder release folder (e.g. ``lra_release/pathfinder32``).

    Reads ``root/<difficulty>/metadata/*.npy`` (in the numeric order of their
    names, rows in file order) and the PNGs they list, relative to
    ``root/<difficulty>/``. Returns ``(images uint8 [n, size, size], labels
    int64 [n])``. ``limit``: stop after that many images. ``skip_empty``: skip
    0-byte PNGs (present in the LRA release, skipped by its pipeline) with a
    logged warning; ``False`` raises instead.

    Raises ``ValueError`` naming the folder or file (and ``metadata:line``) for a
    missing folder, no metadata files, a malformed row (fewer than 4 fields, a
    label other than 0/1, a path leaving the folder), a missing, unreadable,
    non-greyscale or wrongly sized image, or no images at all.
    """
    difficulty = _check_difficulty(difficulty)
    size = _check_int("size", size, 1)
    if limit is not None:
        limit = _check_int("limit", limit, 1)
    if not isinstance(skip_empty, bool):
        raise TypeError(f"skip_empty must be a bool, got {type(skip_empty).__name__}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: Pathfinder folder does not exist")
    base = root / difficulty
    if not base.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise ValueError(f"{base}: no such difficulty folder (found: {', '.join(found) or 'none'})")
    meta_dir = base / "metadata"
    if not meta_dir.is_dir():
        raise ValueError(f"{meta_dir}: metadata folder does not exist")
    meta_files = sorted((p for p in meta_dir.iterdir() if p.suffix == ".npy" and p.is_file()),
                        key=_metadata_key)
    if not meta_files:
        raise ValueError(f"{meta_dir}: no metadata files (*.npy)")

    start = time.perf_counter()
    images: list[np.ndarray] = []
    labels: list[int] = []
    empty: list[str] = []
    for meta in meta_files:
        for lineno, fields in _metadata_rows(meta):
            where = f"{meta}:{lineno}"
            if len(fields) < 4:
                raise ValueError(f"{where}: expected at least 4 space-separated fields "
                                 f"(image folder, file name, index, label), got {len(fields)}: "
                                 f"{' '.join(fields)[:80]!r}")
            if fields[3] not in ("0", "1"):
                raise ValueError(f"{where}: label (field 4) must be 0 or 1, got {fields[3]!r}")
            image = base / _relative_image_path(meta, lineno, fields)
            try:
                data = image.read_bytes()
            except FileNotFoundError:
                raise ValueError(f"{image} (listed at {where}): image file does not exist") \
                    from None
            except OSError as err:
                raise ValueError(f"{image} (listed at {where}): cannot read: {err}") from None
            if not data and skip_empty:
                empty.append(str(image))
                continue
            try:
                pixels = decode_png(data)
            except ValueError as err:
                raise ValueError(f"{image} (listed at {where}): unreadable PNG: {err}") from None
            images.append(_grey(pixels, image, f"listed at {where}", size))
            labels.append(int(fields[3]))
            if limit is not None and len(images) >= limit:
                break
        if limit is not None and len(images) >= limit:
            break
    if empty:
        logger.warning("skipped %d empty image file(s) in %s (as LRA's pipeline does), e.g. %s",
                       len(empty), base, empty[0])
    if not images:
        raise ValueError(f"{base}: the metadata lists no readable images")
    logger.info("read %d Pathfinder images from %s in %.2f s", len(images), base,
                time.perf_counter() - start)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _atomic_write(path: Path, data: bytes) -> None:
    with atomic_open(path) as fh:
        fh.write(data)


def save_pathfinder_dir(
    images: np.ndarray,
    labels: np.ndarray | Sequence[int],
    root: str | os.PathLike,
    *,
    difficulty: str = DEFAULT_DIFFICULTY,
    images_per_dir: int = 1000,
    overwrite: bool = False,
) -> Path:
    """Write images and labels in the layout of the LRA release (module docstring).

    ``images``: uint8 ``[n, height, width]``; ``labels``: ``n`` values 0/1.
    Image ``j`` goes to ``root/<difficulty>/imgs/<k>/sample_<i>.png`` with
    ``k, i = divmod(j, images_per_dir)``, listed in ``metadata/<k>.npy`` as
    ``imgs/<k> sample_<i>.png <i> <label>`` (the four fields LRA reads). Existing
    metadata files raise ``ValueError`` unless ``overwrite=True`` (which replaces
    them; stale PNGs are left but no longer listed). Returns the difficulty folder.
    """
    difficulty = _check_difficulty(difficulty)
    images_per_dir = _check_int("images_per_dir", images_per_dir, 1)
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    if images.ndim != 3 or images.shape[0] == 0 or 0 in images.shape[1:]:
        raise ValueError(f"images must be a non-empty [n, height, width] array, "
                         f"got shape {list(images.shape)}")
    labels = np.asarray(labels)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape [{images.shape[0]}] (one per image), "
                         f"got {list(labels.shape)}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise TypeError(f"labels must be integers 0/1, got {labels.dtype}")
    if labels.size and not np.isin(labels, (0, 1)).all():
        bad = sorted(set(labels.tolist()) - {0, 1})[:5]
        raise ValueError(f"labels must be 0 or 1, got values {bad}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {type(overwrite).__name__}")

    base = Path(root) / difficulty
    meta_dir = base / "metadata"
    old = sorted(meta_dir.glob("*.npy")) if meta_dir.is_dir() else []
    if old and not overwrite:
        raise ValueError(f"{meta_dir}: already holds {len(old)} metadata file(s); "
                         "pass overwrite=True to replace them")
    meta_dir.mkdir(parents=True, exist_ok=True)
    for path in old:
        path.unlink()
    n = images.shape[0]
    for k in range(-(-n // images_per_dir)):
        sub = f"imgs/{k}"
        (base / sub).mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(min(images_per_dir, n - k * images_per_dir)):
            j = k * images_per_dir + i
            name = f"sample_{i}.png"
            _atomic_write(base / sub / name, encode_png(images[j]))
            lines.append(f"{sub} {name} {i} {int(labels[j])}\n")
        _atomic_write(meta_dir / f"{k}.npy", "".join(lines).encode("ascii"))
    logger.info("wrote %d Pathfinder images to %s", n, base)
    return base


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
