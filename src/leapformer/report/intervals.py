"""Confidence intervals for reporting results over seeds or test examples.

The rule used by reports:

* Several seeds (n >= 2): mean ± t·SE, where SE = s / sqrt(n) with the sample
  standard deviation s (ddof=1) and t the two-sided Student-t quantile with
  n - 1 degrees of freedom (``method="t"``).
* A single run with per-example scores (e.g. 0/1 correctness): a 95% percentile
  bootstrap over test examples (``method="bootstrap"``).  This reflects test-set
  sampling noise only, not seed-to-seed variation.
* Otherwise (one value, nothing else): no interval (``method="single"``).

Two results are "separated" when both have a real interval and the intervals do
not overlap.  This is a conservative test: non-overlapping 95% intervals imply
a significant difference, but overlapping ones do not prove there is none.

Pure Python + numpy: the Student-t quantile is computed here (bisection on the
t distribution's tail, written with the regularized incomplete beta function).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

__all__ = ["Interval", "t_quantile", "seed_interval", "bootstrap_interval", "ratio_bootstrap",
           "statistic_bootstrap", "block_bootstrap", "interval_for", "separated", "rank",
           "verdict"]

# Bootstrap resamples are drawn in blocks of at most this many indices, so
# memory stays bounded (~64 MB of int64 indices) whatever the test-set size.
_BLOCK_ELEMENTS = 1 << 23


@dataclass(frozen=True)
class Interval:
    """A mean with a confidence interval [low, high] over ``n`` seeds/examples."""

    mean: float
    low: float
    high: float
    n: int
    method: str  # "t" | "bootstrap" | "single"
    se: float | None = None

    @property
    def has_interval(self) -> bool:
        """True unless this is a single value without any interval."""
        return self.method != "single"

    @property
    def half_width(self) -> float:
        """Half the interval width (bootstrap intervals may be asymmetric)."""
        return (self.high - self.low) / 2.0

    def format(self, digits: int = 1, scale: float = 100.0) -> str:
        """``"61.3 ± 1.2"`` (mean ± half-width, times ``scale``); ``"61.3"`` without interval."""
        mean = f"{self.mean * scale:.{digits}f}"
        if not self.has_interval:
            return mean
        return f"{mean} ± {self.half_width * scale:.{digits}f}"


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _as_1d(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains inf")
    return arr


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        for aa in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0."""
    return 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))


@lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom: x with P(T <= x) = p."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if not (df > 0 and math.isfinite(df)):
        raise ValueError(f"df must be a positive finite number, got {df!r}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2.0 * p - 1.0) / math.sqrt(2.0 * p * (1.0 - p))
    q = 1.0 - p  # target upper tail; the tail decreases in t
    lo, hi = 0.0, 1.0
    while _t_upper_tail(hi, df) > q:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_upper_tail(mid, df) > q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def seed_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean ± t·SE over seeds (SE from the ddof=1 std); one value gives ``method="single"``."""
    _check_confidence(confidence)
    x = _as_1d(values, "values")
    n = int(x.size)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, mean, mean, 1, "single", None)
    se = float(x.std(ddof=1)) / math.sqrt(n)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * se
    return Interval(mean, mean - half, mean + half, n, "t", se)


def _check_resamples(resamples) -> int:
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be an integer >= 1, got {resamples!r}")
    return int(resamples)


def _resampled(n: int, resamples: int, seed: int, stat) -> np.ndarray:
    """``stat(idx)`` for ``resamples`` draws of ``n`` indices with replacement, ``idx``
    ``[draws, n]`` in blocks of at most ``_BLOCK_ELEMENTS`` indices; seeded."""
    rng = np.random.default_rng(seed)
    out = np.empty(resamples, dtype=np.float64)
    block = max(1, min(resamples, _BLOCK_ELEMENTS // n))
    for start in range(0, resamples, block):
        stop = min(start + block, resamples)
        out[start:stop] = stat(rng.integers(0, n, size=(stop - start, n)))
    return out


def _percentiles(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def bootstrap_interval(per_example: Sequence[float] | np.ndarray, confidence: float = 0.95,
                       resamples: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap of the mean over test examples; deterministic given ``seed``."""
    _check_confidence(confidence)
    resamples = _check_resamples(resamples)
    x = _as_1d(per_example, "per_example")
    means = _resampled(int(x.size), resamples, seed, lambda idx: x[idx].mean(axis=1))
    low, high = _percentiles(means, confidence)
    se = float(means.std(ddof=1)) if resamples > 1 else None
    return Interval(float(x.mean()), low, high, int(x.size), "bootstrap", se)


def ratio_bootstrap(num: Sequence[float], den: Sequence[float],
                    other_num: Sequence[float] | None = None, confidence: float = 0.95,
                    resamples: int = 2000, seed: int = 0) -> Interval:
    """A corpus ratio ``sum num / sum den`` over test examples (e.g. word errors over
    reference words: corpus WER), with a percentile bootstrap that resamples the
    examples. With ``other_num`` (a second system's numerators on the same examples and
    the same ``den``): the difference of the two ratios under the same resamples (a
    paired comparison: the interval excludes 0 when the test set separates them).
    ``method="bootstrap"``; ``n`` = examples."""
    _check_confidence(confidence)
    resamples = _check_resamples(resamples)
    a, d = _as_1d(num, "num"), _as_1d(den, "den")
    if a.size != d.size or (d < 0).any() or d.sum() <= 0:
        raise ValueError(f"num and den need one entry per example, den >= 0 with a positive "
                         f"sum; got {a.size} and {d.size} entries")
    b = None
    if other_num is not None:
        b = _as_1d(other_num, "other_num")
        if b.size != a.size:
            raise ValueError(f"other_num must cover the same {a.size} examples, got {b.size}")

    def stat(idx):
        dd = np.maximum(d[idx].sum(-1), 1e-300)  # a resample of empty references only
        out = a[idx].sum(-1) / dd
        return out if b is None else out - b[idx].sum(-1) / dd

    stats = _resampled(int(a.size), resamples, seed, stat)
    low, high = _percentiles(stats, confidence)
    point = float(stat(np.arange(a.size)[None])[0])
    return Interval(point, low, high, int(a.size), "bootstrap",
                    float(stats.std(ddof=1)) if resamples > 1 else None)


def statistic_bootstrap(n: int, stat, confidence: float = 0.95, resamples: int = 2000,
                        seed: int = 0) -> Interval:
    """Any statistic of ``n`` test examples, ``stat(idx)`` of a 1-D array of example
    indices (e.g. a corpus score of the rows ``idx`` of per-example statistics, or a
    paired difference of two such scores), with a percentile bootstrap that resamples
    the examples; the point is ``stat(arange(n))``. For statistics that do not
    vectorise over resamples (one Python call per draw)."""
    _check_confidence(confidence)
    resamples = _check_resamples(resamples)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int (examples), got {n!r}")
    stats = _resampled(int(n), resamples, seed,
                       lambda idx: np.array([stat(row) for row in idx], dtype=np.float64))
    low, high = _percentiles(stats, confidence)
    return Interval(float(stat(np.arange(n))), low, high, int(n), "bootstrap",
                    float(stats.std(ddof=1)) if resamples > 1 else None)


def block_bootstrap(nll: Sequence[float], tokens: Sequence[float],
                    other: tuple[Sequence[float], Sequence[float]] | None = None,
                    confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """Perplexity ``exp(sum nll / sum tokens)`` over blocks of a scored stream (e.g. the
    ``block_nll`` / ``block_tokens`` of an LM evaluation), with a percentile bootstrap
    that resamples whole blocks (neighbouring tokens are not independent, blocks
    nearly are). With ``other`` = ``(nll, tokens)`` of a second model scored on the
    same blocks: the perplexity ratio ``ppl / ppl_other`` under the same resampled
    blocks for both (a paired comparison: the interval excludes 1 when the test set
    separates them). ``method="bootstrap"``; ``n`` = blocks."""
    _check_confidence(confidence)
    resamples = _check_resamples(resamples)
    a_nll, a_tok = _as_1d(nll, "nll"), _as_1d(tokens, "tokens")
    if a_nll.size != a_tok.size or (a_tok <= 0).any():
        raise ValueError(f"nll and tokens must have one entry per block and tokens > 0, got "
                         f"{a_nll.size} and {a_tok.size} entries")
    b_nll = None
    if other is not None:
        b_nll, b_tok = _as_1d(other[0], "other nll"), _as_1d(other[1], "other tokens")
        if b_nll.size != a_nll.size or b_tok.size != a_tok.size or (b_tok <= 0).any():
            raise ValueError(f"other must cover the same {a_nll.size} blocks, got "
                             f"{b_nll.size} and {b_tok.size} entries")
        if not np.array_equal(a_tok, b_tok):
            raise ValueError("other must cover the same blocks: its token counts differ "
                             "(a different split, window, stride or tokenizer)")

    def log_ppl(idx):  # idx [draws, blocks]; the tokens are the same for both models
        tokens_ = a_tok[idx].sum(-1)
        out = a_nll[idx].sum(-1) / tokens_
        return out if b_nll is None else out - b_nll[idx].sum(-1) / tokens_

    stats = _resampled(int(a_nll.size), resamples, seed, log_ppl)
    low, high = _percentiles(stats, confidence)
    point = log_ppl(np.arange(a_nll.size)[None])[0]
    return Interval(float(np.exp(point)), float(np.exp(low)), float(np.exp(high)),
                    int(a_nll.size), "bootstrap",
                    float(np.exp(stats).std(ddof=1)) if resamples > 1 else None)


def interval_for(values_per_seed: Sequence[float] | np.ndarray,
                 per_example: Sequence[float] | np.ndarray | None = None,
                 confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Interval:
    """Report policy: >= 2 seeds -> t; 1 seed + per-example scores -> bootstrap; else single.

    With >= 2 seeds ``per_example`` is ignored.  For the bootstrap the mean is
    that of ``per_example`` (so it should be on the same scale as the values).
    """
    x = _as_1d(values_per_seed, "values_per_seed")
    if x.size == 1 and per_example is not None:
        return bootstrap_interval(per_example, confidence, resamples, seed)
    return seed_interval(x, confidence)


def separated(a: Interval, b: Interval) -> bool:
    """True only if both have a real interval and the intervals do not overlap."""
    if not (a.has_interval and b.has_interval):
        return False
    return a.high < b.low or b.high < a.low


def rank(named: Mapping[str, Interval], higher_is_better: bool = True) -> list[list[str]]:
    """Order names best-first by mean and group them into tiers.

    Rule: a tier boundary is drawn between two neighbours in the mean ordering
    only if *every* entry above it is separated from *every* entry below it.
    Hence each pair in different tiers is separated, and entries without an
    interval (single runs) are never split from anything.  Equal means are
    ordered by name.
    """
    if not named:
        raise ValueError("named must not be empty")
    sign = -1.0 if higher_is_better else 1.0
    order = sorted(named, key=lambda k: (sign * named[k].mean, k))
    tiers: list[list[str]] = [[order[0]]]
    for i in range(1, len(order)):
        cut = all(separated(named[order[j]], named[order[k]])
                  for j in range(i) for k in range(i, len(order)))
        if cut:
            tiers.append([order[i]])
        else:
            tiers[-1].append(order[i])
    return tiers


def _separated_pairs(named: Mapping[str, Interval], order: list[str],
                     higher_is_better: bool) -> str:
    """``"softmax > elu, softmax > performer"``: the pairs of ``order`` (best first) whose
    intervals do not overlap, for a verdict whose entries form one tier."""
    op = " > " if higher_is_better else " < "
    return ", ".join(f"{a}{op}{b}" for i, a in enumerate(order) for b in order[i + 1:]
                     if separated(named[a], named[b]))


def verdict(named: Mapping[str, Interval], higher_is_better: bool = True, unit: str = "") -> str:
    """One plain-English line, e.g. ``"softmax > leap > {linear, cosformer} (not separated)"``.

    Tiers are listed best first, joined by ">" (or "<" when lower is better);
    braces mark entries that are not separated.  ``unit`` (e.g. "BLEU") is
    used as a prefix.
    """
    tiers = rank(named, higher_is_better)
    prefix = f"{unit}: " if unit else ""
    if len(named) == 1:
        return f"{prefix}only one entry: {tiers[0][0]}"
    if len(tiers) == 1:
        singles = [k for k in tiers[0] if not named[k].has_interval]
        if singles:
            return f"{prefix}not separated: no interval for {', '.join(singles)} (single run)"
        pairs = _separated_pairs(named, tiers[0], higher_is_better)
        if pairs:
            return f"{prefix}no tiers (wide intervals overlap across); separated pairs: {pairs}"
        return f"{prefix}not separated: all intervals overlap"
    parts = []
    for t in tiers:
        if len(t) == 1:
            parts.append(t[0])
            continue
        inside = _separated_pairs(named, t, higher_is_better)
        parts.append("{" + ", ".join(t) + "} " + (
            f"(no tier inside; separated pairs: {inside})" if inside else "(not separated)"))
    return prefix + (" > " if higher_is_better else " < ").join(parts)


def ranked_verdict(named: dict[str, Interval], higher_is_better: bool = True,
                   unit: str = "") -> str:
    """:func:`~leapformer.report.intervals.verdict` over the entries that have an interval,
    then the single runs named apart (a single run is never separated from anything, so
    it would otherwise hide every separation among the others)."""
    ranked = {k: v for k, v in named.items() if v.has_interval}
    singles = [k for k in named if k not in ranked]
    if len(ranked) < 2 or not singles:
        return verdict(named, higher_is_better=higher_is_better, unit=unit)
    return (verdict(ranked, higher_is_better=higher_is_better, unit=unit)
            + f"; single run, no interval: {', '.join(singles)}")
