import math

import numpy as np
import pytest

from leapformer.report import intervals as iv
from leapformer.report.intervals import (
    Interval,
    bootstrap_interval,
    interval_for,
    rank,
    seed_interval,
    separated,
    statistic_bootstrap,
    t_quantile,
    verdict,
)


def mk(mean: float, half: float, method: str = "t", n: int = 3) -> Interval:
    return Interval(mean, mean - half, mean + half, n, method, half / 2 if method != "single" else None)


def single(mean: float) -> Interval:
    return Interval(mean, mean, mean, 1, "single", None)


# --- t quantiles -------------------------------------------------------------

@pytest.mark.parametrize(
    "p, df, expected",
    [
        (0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 3, 3.182), (0.975, 4, 2.776),
        (0.975, 5, 2.571), (0.975, 10, 2.228), (0.975, 30, 2.042), (0.975, 100, 1.984),
        (0.95, 5, 2.015), (0.995, 10, 3.169), (0.995, 30, 2.750), (0.9, 1, 3.078),
    ],
)
def test_t_quantile_known_values(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=6e-4)


def test_t_quantile_symmetry_and_normal_limit():
    assert t_quantile(0.025, 7) == pytest.approx(-t_quantile(0.975, 7), rel=1e-12)
    assert t_quantile(0.5, 9) == 0.0
    assert t_quantile(0.975, 10**6) == pytest.approx(1.959964, abs=1e-5)
    qs = [t_quantile(0.975, df) for df in range(1, 60)]
    assert all(a > b for a, b in zip(qs, qs[1:]))


@pytest.mark.parametrize("p, df, match", [(0.0, 3, "p must"), (1.0, 3, "p must"), (0.9, 0, "df must")])
def test_t_quantile_errors(p, df, match):
    with pytest.raises(ValueError, match=match):
        t_quantile(p, df)


# --- seed_interval -----------------------------------------------------------

def test_seed_interval_by_hand():
    values = [0.60, 0.62, 0.61, 0.63, 0.59]
    # mean 0.61; squared deviations sum to 0.001; s^2 = 0.001 / 4; SE = s / sqrt(5)
    se = math.sqrt(0.001 / 4) / math.sqrt(5)
    half = 2.776445 * se  # t_{0.975, 4}
    got = seed_interval(values)
    assert got.method == "t" and got.n == 5
    assert got.mean == pytest.approx(0.61)
    assert got.se == pytest.approx(se, rel=1e-9)
    assert got.low == pytest.approx(0.61 - half, rel=1e-6)
    assert got.high == pytest.approx(0.61 + half, rel=1e-6)
    assert got.format() == "61.0 ± 2.0"
    assert got.format(digits=2) == "61.00 ± 1.96"


def test_seed_interval_confidence_and_single():
    wide = seed_interval([1.0, 2.0, 4.0], confidence=0.99)
    narrow = seed_interval([1.0, 2.0, 4.0], confidence=0.8)
    assert wide.low < narrow.low < narrow.high < wide.high
    one = seed_interval([0.613])
    assert (one.method, one.low, one.high, one.se, one.n) == ("single", 0.613, 0.613, None, 1)
    assert one.format() == "61.3"
    assert one.format(digits=2, scale=1.0) == "0.61"


def test_interval_format():
    assert mk(0.613, 0.012).format() == "61.3 ± 1.2"
    assert Interval(27.1, 26.0, 28.0, 1, "bootstrap", 0.5).format(scale=1.0) == "27.1 ± 1.0"


# --- bootstrap ---------------------------------------------------------------

def correct(n: int, p: float = 0.7, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(np.int64)


def test_bootstrap_covers_mean_and_matches_binomial_width():
    x = correct(2000)
    got = bootstrap_interval(x)
    p = x.mean()
    assert got.method == "bootstrap" and got.n == 2000
    assert got.mean == pytest.approx(p)
    assert got.low < p < got.high
    assert got.half_width == pytest.approx(1.96 * math.sqrt(p * (1 - p) / 2000), rel=0.15)
    assert got.se == pytest.approx(math.sqrt(p * (1 - p) / 2000), rel=0.15)


def test_bootstrap_shrinks_with_more_examples():
    small = bootstrap_interval(correct(400), resamples=500)
    large = bootstrap_interval(correct(6400), resamples=500)
    # width scales like 1 / sqrt(n): expect about a factor of 4
    assert large.high - large.low < (small.high - small.low) / 2.5


def test_bootstrap_deterministic_with_seed():
    x = np.random.default_rng(3).normal(size=500)
    a = bootstrap_interval(x, resamples=300, seed=7)
    b = bootstrap_interval(x, resamples=300, seed=7)
    c = bootstrap_interval(x, resamples=300, seed=8)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)


def test_bootstrap_blocks_bound_memory(monkeypatch):
    sizes = []
    real_rng = np.random.default_rng

    class Spy:
        def __init__(self, seed):
            self.rng = real_rng(seed)

        def integers(self, low, high, size):
            sizes.append(size)
            return self.rng.integers(low, high, size=size)

    x = correct(1000)
    reference = bootstrap_interval(x, resamples=400)
    monkeypatch.setattr(iv, "_BLOCK_ELEMENTS", 5000)
    monkeypatch.setattr(iv.np.random, "default_rng", Spy)
    got = bootstrap_interval(x, resamples=400)
    assert len(sizes) == 80 and all(r * c <= 5000 for r, c in sizes)
    assert sum(r for r, _ in sizes) == 400
    assert got.low == pytest.approx(reference.low, abs=0.01)
    assert got.high == pytest.approx(reference.high, abs=0.01)


# --- policy ------------------------------------------------------------------

def test_interval_for_policy():
    assert interval_for([0.6, 0.62, 0.61]).method == "t"
    assert interval_for([0.6, 0.62], per_example=correct(100)).method == "t"
    boot = interval_for([0.7], per_example=correct(300), resamples=200)
    assert boot.method == "bootstrap" and boot.n == 300
    assert interval_for([0.7]).method == "single"


# --- separated / rank / verdict ---------------------------------------------

def test_separated():
    assert separated(mk(0.70, 0.01), mk(0.60, 0.01))
    assert separated(mk(0.60, 0.01), mk(0.70, 0.01))
    assert not separated(mk(0.70, 0.06), mk(0.60, 0.06))
    assert not separated(mk(0.70, 0.05), mk(0.60, 0.05))  # touching endpoints overlap
    assert not separated(single(0.9), mk(0.1, 0.01))
    assert not separated(single(0.9), single(0.1))
    assert separated(mk(0.70, 0.0), mk(0.60, 0.0))  # zero-width t intervals are real


def test_rank_and_verdict_disjoint_and_overlapping():
    named = {
        "linear": mk(0.50, 0.02),
        "softmax": mk(0.70, 0.01),
        "cosformer": mk(0.49, 0.02),
        "leap": mk(0.60, 0.01),
    }
    assert rank(named) == [["softmax"], ["leap"], ["linear", "cosformer"]]
    assert verdict(named) == "softmax > leap > {linear, cosformer} (not separated)"
    assert verdict(named, unit="acc") == "acc: softmax > leap > {linear, cosformer} (not separated)"
    assert rank(named, higher_is_better=False) == [["cosformer", "linear"], ["leap"], ["softmax"]]
    assert verdict(named, higher_is_better=False) == "{cosformer, linear} (not separated) < leap < softmax"


def test_rank_all_overlap_and_chains():
    named = {"a": mk(0.50, 0.10), "b": mk(0.45, 0.10), "c": mk(0.55, 0.10)}
    assert rank(named) == [["c", "a", "b"]]
    assert verdict(named) == "not separated: all intervals overlap"
    # a~b and b~c overlap, a and c do not: no boundary can separate every pair
    chain = {"a": mk(0.70, 0.06), "b": mk(0.60, 0.06), "c": mk(0.50, 0.06)}
    assert rank(chain) == [["a", "b", "c"]]
    # one tier, yet a and c are separated: the verdict names that pair, not "all overlap"
    assert verdict(chain) == "no tiers (wide intervals overlap across); separated pairs: a > c"
    assert verdict(chain, higher_is_better=False).endswith("separated pairs: c < a")
    # a wide low entry overlapping the top one keeps everything together
    wide = {"top": mk(15, 5), "mid": mk(5, 4), "wide": mk(4, 14)}
    assert rank(wide) == [["top", "mid", "wide"]]
    # a wide top entry overlapping a lower one blocks a cut its neighbour alone would allow
    blocked = {"a": mk(20, 10), "b": mk(15, 1), "c": mk(10, 2)}
    assert rank(blocked) == [["a", "b", "c"]]


def test_rank_ties_are_grouped_by_name():
    named = {"z": mk(0.5, 0.01), "a": mk(0.5, 0.01), "best": mk(0.9, 0.01)}
    assert rank(named) == [["best"], ["a", "z"]]
    assert verdict(named) == "best > {a, z} (not separated)"
    exact = {"q": mk(0.5, 0.0), "p": mk(0.5, 0.0)}
    assert rank(exact) == [["p", "q"]]


def test_rank_with_single_run_entry():
    named = {"softmax": mk(0.70, 0.01), "leap": mk(0.60, 0.01), "linear": single(0.40)}
    assert rank(named) == [["softmax", "leap", "linear"]]
    assert verdict(named) == "not separated: no interval for linear (single run)"
    assert verdict({"only": single(0.3)}) == "only one entry: only"


# --- errors ------------------------------------------------------------------

@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: seed_interval([]), "values must not be empty"),
        (lambda: seed_interval([0.5, float("nan")]), "values contains NaN"),
        (lambda: seed_interval([0.5, float("inf")]), "values contains inf"),
        (lambda: seed_interval([[0.5, 0.6]]), r"values must be 1-D, got shape \(1, 2\)"),
        (lambda: seed_interval([0.5, 0.6], confidence=1.0), r"confidence must be in \(0, 1\), got 1.0"),
        (lambda: seed_interval([0.5, 0.6], confidence=0), "confidence must be in"),
        (lambda: bootstrap_interval([1, 0, 1], confidence=-0.5), "confidence must be in"),
        (lambda: bootstrap_interval([1, 0, 1], resamples=0), "resamples must be an integer >= 1, got 0"),
        (lambda: bootstrap_interval([1, 0, 1], resamples=2.5), "resamples must be"),
        (lambda: bootstrap_interval(np.zeros((3, 2))), r"per_example must be 1-D, got shape \(3, 2\)"),
        (lambda: bootstrap_interval([]), "per_example must not be empty"),
        (lambda: bootstrap_interval([1.0, float("nan")]), "per_example contains NaN"),
        (lambda: interval_for([]), "values_per_seed must not be empty"),
        (lambda: interval_for([0.7], per_example=[[1, 0]]), "per_example must be 1-D"),
        (lambda: rank({}), "named must not be empty"),
        (lambda: verdict({}), "named must not be empty"),
    ],
)
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_ranked_verdict_names_single_runs_apart():
    from leapformer.report.intervals import ranked_verdict

    named = {"softmax": Interval(0.9, 0.88, 0.92, 3, "t", 0.01),
             "linear": Interval(0.5, 0.45, 0.55, 3, "t", 0.02),
             "elu": Interval(0.6, 0.6, 0.6, 1, "single")}
    line = ranked_verdict(named)
    assert line == "softmax > linear; single run, no interval: elu"
    # without the single run it is the plain verdict
    assert ranked_verdict({k: v for k, v in named.items() if k != "elu"}) == "softmax > linear"


def test_a_tier_names_the_pairs_separated_inside_it():
    """softmax above everything; below it a chain (leap ~ linear ~ performer) with leap and
    performer apart: the tier is not "not separated"."""
    named = {"softmax": mk(98.6, 2.6), "leap": mk(63.5, 19.2), "linear": mk(52.9, 19.6),
             "cosformer": mk(36.2, 23.8), "elu": mk(7.0, 24.7), "performer": mk(0.8, 1.0)}
    assert rank(named) == [["softmax"], ["leap", "linear", "cosformer", "elu", "performer"]]
    text = verdict(named)
    assert text.startswith("softmax > {leap, linear, cosformer, elu, performer} (no tier "
                           "inside; separated pairs: ")
    assert "leap > performer" in text and "linear > performer" in text
    assert "leap > linear" not in text and "elu > performer" not in text


def test_block_bootstrap_perplexity_and_paired_ratio():
    import math

    from leapformer.report.intervals import block_bootstrap

    rng = np.random.default_rng(0)
    tokens = np.full(200, 128.0)
    nll = tokens * (4.0 + rng.normal(0, 0.3, 200))  # per-block nats per token around 4
    iv = block_bootstrap(nll, tokens)
    assert iv.method == "bootstrap" and iv.n == 200
    assert iv.mean == pytest.approx(math.exp(nll.sum() / tokens.sum()))
    assert iv.low < iv.mean < iv.high
    # the block means have sd 0.3 over 200 blocks: log-ppl se = 0.3 / sqrt(200)
    assert math.log(iv.high / iv.low) == pytest.approx(2 * 1.96 * 0.3 / math.sqrt(200), rel=0.15)
    # a second model 1% better on every block: unpaired intervals overlap, the paired
    # ratio is 1.01 with a narrow interval that excludes 1
    better = nll - tokens * math.log(1.01)
    other = block_bootstrap(better, tokens)
    assert other.high > iv.low
    ratio = block_bootstrap(nll, tokens, other=(better, tokens))
    assert ratio.mean == pytest.approx(1.01) and ratio.low > 1.0
    assert ratio.high - ratio.low < 1e-9
    with pytest.raises(ValueError, match="same 200 blocks"):
        block_bootstrap(nll, tokens, other=(better[:10], tokens[:10]))
    with pytest.raises(ValueError, match="one entry per block"):
        block_bootstrap(nll, tokens[:5])
    with pytest.raises(ValueError, match="token counts differ"):
        block_bootstrap(nll, tokens, other=(better, tokens + 1))
    with pytest.raises(ValueError, match="resamples"):
        block_bootstrap(nll, tokens, resamples=0)


def test_ratio_bootstrap_corpus_rate_and_paired_difference():
    from leapformer.report.intervals import ratio_bootstrap

    rng = np.random.default_rng(1)
    words = rng.integers(5, 30, 400).astype(float)
    errors = rng.binomial(words.astype(int), 0.2).astype(float)
    r = ratio_bootstrap(errors, words)
    assert r.method == "bootstrap" and r.n == 400
    assert r.mean == pytest.approx(errors.sum() / words.sum())  # corpus rate, not a mean
    assert r.low < r.mean < r.high
    # binomial-ish width: p = 0.2 over ~7000 words, wider with utterance clustering
    se = math.sqrt(0.2 * 0.8 / words.sum())
    assert 2 * 1.96 * se * 0.8 < r.high - r.low < 2 * 1.96 * se * 2.0
    # one error fewer in every utterance: the paired difference excludes 0
    fewer = np.maximum(errors - 1, 0)
    d = ratio_bootstrap(errors, words, other_num=fewer)
    assert d.mean == pytest.approx((errors.sum() - fewer.sum()) / words.sum())
    assert d.low > 0
    assert ratio_bootstrap(errors, words, seed=3).low == ratio_bootstrap(errors, words,
                                                                        seed=3).low
    with pytest.raises(ValueError, match="one entry per example"):
        ratio_bootstrap(errors, words[:3])
    with pytest.raises(ValueError, match="positive"):
        ratio_bootstrap([1.0], [0.0])
    with pytest.raises(ValueError, match="same 400 examples"):
        ratio_bootstrap(errors, words, other_num=fewer[:2])


def test_statistic_bootstrap_equals_the_vectorised_mean_bootstrap():
    x = np.random.default_rng(5).normal(size=37)
    ours = statistic_bootstrap(37, lambda idx: float(x[idx].mean()), resamples=400, seed=3)
    ref = bootstrap_interval(x, resamples=400, seed=3)  # same draws, vectorised
    assert ours.mean == pytest.approx(ref.mean) and ours.n == 37
    assert ours.low == pytest.approx(ref.low) and ours.high == pytest.approx(ref.high)
    with pytest.raises(ValueError, match="n must be a positive int"):
        statistic_bootstrap(0, lambda idx: 0.0)
    with pytest.raises(ValueError, match="resamples"):
        statistic_bootstrap(3, lambda idx: 0.0, resamples=0)
