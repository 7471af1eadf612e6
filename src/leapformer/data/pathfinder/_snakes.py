"""Drawing engine of :func:`~leapformer.data.pathfinder.generate_pathfinder`: pixel
windows around segments, the turning-angle sampler and :class:`_Round`, which draws
the target and distractor snakes of a batch of images (the construction is
described in :mod:`leapformer.data.pathfinder.generator`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_AGE_FREE = np.int16(np.iinfo(np.int16).max)  # "no paddle of the current snake near here"
_SELF_CLEAR = 4            # a paddle may touch the zones of the 3 paddles before it, no older ones
_PROPOSALS = 16            # i.i.d. proposals per paddle (and per seed)
_BATCH = 2                 # proposals checked at a time (the first is usually valid)
_FALLBACK = 48             # evenly spaced directions tried when all proposals fail


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
