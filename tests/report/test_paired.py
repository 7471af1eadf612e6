import math

import pytest

from leapformer.report.paired import describe, paired_difference, paired_lines, sign_test


def test_sign_test_exact_binomial():
    assert sign_test(9, 0) == pytest.approx(2 / 2 ** 9)
    assert sign_test(8, 1) == pytest.approx(2 * (1 + 9) / 2 ** 9)
    assert sign_test(0, 0) == 1.0
    assert sign_test(3, 3) == 1.0  # min(1, 2 * 42/64)
    assert sign_test(1, 4) == sign_test(4, 1)
    with pytest.raises(ValueError, match="wins"):
        sign_test(-1, 2)


def test_paired_difference_removes_the_common_seed_effect():
    # the seed moves both mechanisms by the same amount; b is always 0.02 lower
    seed_effect = {0: 0.0, 1: 0.30, 2: -0.25, 3: 0.10}
    a = {s: 0.5 + e for s, e in seed_effect.items()}
    b = {s: 0.48 + e + 0.001 * s for s, e in seed_effect.items()}
    pair = paired_difference(a, b, names=("leap", "cos"))
    diffs = [0.02 - 0.001 * s for s in range(4)]
    assert pair.seeds == (0, 1, 2, 3) and pair.wins == 4 and pair.losses == 0
    assert pair.diff.mean == pytest.approx(sum(diffs) / 4)
    sd = math.sqrt(sum((d - pair.diff.mean) ** 2 for d in diffs) / 3)
    assert pair.diff.half_width == pytest.approx(3.182446 * sd / 2, rel=1e-5)  # t(0.975, 3)
    assert pair.separated  # while the unpaired intervals overlap widely


def test_paired_difference_only_shared_seeds_and_edge_cases():
    pair = paired_difference({0: 1.0, 1: 2.0, 5: 9.0}, {1: 1.0, 0: 1.5, 7: 0.0})
    assert pair.seeds == (0, 1) and (pair.wins, pair.losses) == (1, 1)
    assert not pair.separated
    assert paired_difference({0: 1.0}, {1: 1.0}) is None
    one = paired_difference({0: 0.9}, {0: 0.1}, names=("x", "y"))
    assert one.diff.method == "single" and not one.separated
    assert "one shared seed" in describe(one)
    tie = paired_difference({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5})
    assert tie.ties == 2 and tie.p_sign == 1.0 and not tie.separated
    # the same difference on every seed: a zero-width interval, not evidence
    same = paired_difference({0: 0.6, 1: 0.7, 2: 0.8}, {0: 0.5, 1: 0.6, 2: 0.7})
    assert same.diff.se == pytest.approx(0.0, abs=1e-12) or not same.separated
    flat = paired_difference({0: 0.5, 1: 0.75}, {0: 0.25, 1: 0.5}, names=("a", "b"))
    assert flat.diff.se == 0.0 and not flat.separated
    assert describe(flat).endswith("not separated (the same difference on every seed: no "
                                   "spread to judge by)")


def test_describe_and_lines():
    a = {s: 0.6 + 0.01 * s for s in range(5)}
    b = {s: 0.3 + 0.012 * s for s in range(5)}
    line = describe(paired_difference(a, b, names=("leap", "linear")))
    assert line.startswith("leap - linear: +29.6 ± ")  # mean of 0.3 - 0.002 s
    assert "over 5 paired seeds (leap higher in 5 of 5, sign test p = 0.062)" in line
    assert line.endswith("separated, leap better")
    # lower is better (perplexity): a higher value of the focus is worse
    worse = describe(paired_difference(a, b, names=("leap", "linear")), higher_is_better=False)
    assert worse.endswith("separated, linear better")
    lines = paired_lines({"leap": a, "linear": b, "cos": {9: 0.1}}, "leap")
    assert len(lines) == 1 and lines[0].startswith("- leap - linear")  # cos shares no seed
    assert paired_lines({"linear": b}, "leap") == []
