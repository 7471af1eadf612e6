"""Paired comparisons over seeds: the difference of two mechanisms run with the same seeds.

Runs that share a seed share their data (the same training batches and test set)
and, where the code allows, their initialisation, so the seed-to-seed spread that
the unpaired intervals of :mod:`leapformer.report.intervals` carry is partly common
to both mechanisms. The paired difference removes that common part:

* ``d_s = a_s - b_s`` for every seed ``s`` that both mechanisms have;
* mean ± t·SE over those differences (Student t with n - 1 degrees of freedom,
  :func:`~leapformer.report.intervals.seed_interval`);
* how often ``a`` was higher, lower or equal, and the two-sided exact sign test
  (binomial, ties dropped) as a check that does not assume normal differences.

A pair is "separated" when the t interval of the differences excludes 0 (and has
a width: identical differences on every seed are not judged). With
two seeds the t quantile is 12.7, so a pair needs a very consistent difference
to be separated; a report should say "not separated" rather than read the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from leapformer.report.intervals import Interval, seed_interval

__all__ = ["Paired", "paired_difference", "sign_test", "describe", "paired_lines"]


@dataclass(frozen=True)
class Paired:
    """The paired difference ``a - b`` over the seeds both have."""

    a: str
    b: str
    diff: Interval  # t interval of a - b over the shared seeds ("single" for one seed)
    seeds: tuple
    wins: int  # seeds where a > b
    losses: int  # seeds where a < b
    ties: int

    @property
    def p_sign(self) -> float:
        return sign_test(self.wins, self.losses)

    @property
    def separated(self) -> bool:
        """True when the interval of the differences excludes 0 and has a width: equal
        differences on every seed (no spread, e.g. saturated accuracies) give a
        zero-width t interval that proves nothing, so they are not called separated."""
        return (self.diff.has_interval and bool(self.diff.se) and
                (self.diff.low > 0 or self.diff.high < 0))


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: P(a split at least this uneven | no difference)."""
    for name, value in (("wins", wins), ("losses", losses)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2.0 * tail)


def paired_difference(a: Mapping, b: Mapping, *, names: tuple[str, str] = ("a", "b"),
                      confidence: float = 0.95) -> Paired | None:
    """``a - b`` over the keys (seeds) of both mappings; None when they share no key."""
    shared = sorted(set(a) & set(b), key=repr)
    if not shared:
        return None
    diffs = [float(a[s]) - float(b[s]) for s in shared]
    return Paired(names[0], names[1], seed_interval(diffs, confidence), tuple(shared),
                  wins=sum(d > 0 for d in diffs), losses=sum(d < 0 for d in diffs),
                  ties=sum(d == 0 for d in diffs))


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def describe(pair: Paired, *, scale: float = 100.0, digits: int = 1, unit: str = "points",
             higher_is_better: bool = True) -> str:
    """One line, e.g. ``"leap - cosformer: +27.2 ± 23.0 points over 9 seeds (leap higher in
    9 of 9, sign test p = 0.004): separated, leap better"``."""
    d = pair.diff
    value = f"{d.mean * scale:+.{digits}f}"
    if d.has_interval:
        value += f" ± {d.half_width * scale:.{digits}f}"
    n = len(pair.seeds)
    counts = (f"{pair.a} higher in {pair.wins} of {n}"
              + (f", equal in {pair.ties}" if pair.ties else "")
              + f", sign test p = {_p(pair.p_sign)}")
    if not d.has_interval:
        verdict = "not separated (one shared seed, no interval)"
    elif not d.se:
        verdict = "not separated (the same difference on every seed: no spread to judge by)"
    elif pair.separated:
        better = pair.a if (d.mean > 0) == higher_is_better else pair.b
        verdict = f"separated, {better} better"
    else:
        verdict = "not separated (the interval contains 0)"
    seeds = "seed" if n == 1 else "seeds"
    return f"{pair.a} - {pair.b}: {value} {unit} over {n} paired {seeds} ({counts}): {verdict}"


def paired_lines(values: Mapping[str, Mapping], focus: str, *, scale: float = 100.0,
                 digits: int = 1, unit: str = "points", higher_is_better: bool = True,
                 confidence: float = 0.95) -> list[str]:
    """``"- focus - other: ..."`` for every other entry of ``values`` (name -> {seed:
    value}) that shares a seed with ``focus``; [] when ``focus`` is absent."""
    if focus not in values:
        return []
    lines = []
    for other in values:
        if other == focus:
            continue
        pair = paired_difference(values[focus], values[other], names=(focus, other),
                                 confidence=confidence)
        if pair is not None:
            lines.append("- " + describe(pair, scale=scale, digits=digits, unit=unit,
                                         higher_is_better=higher_is_better))
    return lines
