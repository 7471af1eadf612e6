"""Mel-cepstral distortion: hand-checkable distances, DTW against a brute-force
dynamic programme, and orderings on a synthetic vowel sequence (identical -> 0,
more noise -> more MCD, a time-stretched copy stays small thanks to DTW)."""

import importlib
import importlib.util
import math
import sys

import numpy as np
import pytest
import torch

from leapformer.eval import mcd

mcd_module = importlib.import_module("leapformer.eval.mcd")  # the attribute leapformer.eval.mcd is the function
cepstral_distortion = mcd_module.cepstral_distortion
mel_cepstrum = mcd_module.mel_cepstrum

SR = 16000
VOWELS = [(700, 1200), (300, 2300), (500, 900)]  # (F1, F2) in Hz, roughly /a/, /i/, /o/


def utterance(durations, sr=SR, f0=120.0):
    """Harmonics of a slowly gliding f0 shaped by two formants per segment (one vowel
    per duration, in VOWELS order), phase-continuous across segments."""
    n = [round(d * sr) for d in durations]
    t = np.arange(sum(n)) / sr
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 1.3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    x = np.zeros(sum(n))
    start = 0
    for count, (f1, f2) in zip(n, VOWELS):
        seg = slice(start, start + count)
        for k in range(1, int(sr / 2 / (f0 * 1.05))):
            f = k * f0
            amp = math.exp(-(((f - f1) / 150) ** 2)) + 0.7 * math.exp(-(((f - f2) / 200) ** 2)) + 0.02
            x[seg] += amp * np.sin(k * phase[seg])
        start += count
    return 0.1 * x / np.sqrt(np.mean(x**2))


@pytest.fixture(scope="module")
def voice():
    return utterance([0.15, 0.15, 0.15])


def brute_force_dtw_mcd(a, b):
    """MCD along the minimum-cost path with steps (1,1), (1,0), (0,1), by plain DP."""
    a, b = a[:, 1:], b[:, 1:]
    n, m = len(a), len(b)
    cost = [[math.dist(a[i], b[j]) for j in range(m)] for i in range(n)]
    acc = [[math.inf] * m for _ in range(n)]
    for i in range(n):
        for j in range(m):
            best = 0.0 if i == j == 0 else min(
                acc[i - 1][j - 1] if i and j else math.inf,
                acc[i - 1][j] if i else math.inf,
                acc[i][j - 1] if j else math.inf,
            )
            acc[i][j] = cost[i][j] + best
    i, j, path = n - 1, m - 1, [(n - 1, m - 1)]
    while (i, j) != (0, 0):
        steps = [(i - 1, j - 1), (i - 1, j), (i, j - 1)]
        i, j = min((s for s in steps if s[0] >= 0 and s[1] >= 0), key=lambda s: acc[s[0]][s[1]])
        path.append((i, j))
    return 10 / math.log(10) * math.sqrt(2) * sum(cost[p][q] for p, q in path) / len(path)


def test_hand_checkable_distance():
    # every frame of b differs from a by 0.1 in c_3 (and by 5 in c_0, which is left out):
    # any alignment pairs frames at cepstral distance 0.1 -> MCD = 10/ln10 * sqrt(2 * 0.1^2)
    a = np.tile(np.array([1.0, 0.5, -0.2, 0.3, 0.0]), (3, 1))
    b = np.tile(np.array([6.0, 0.5, -0.2, 0.4, 0.0]), (5, 1))
    expected = 10 / math.log(10) * math.sqrt(2 * 0.1**2)
    assert cepstral_distortion(a, b) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.6142, abs=1e-4)
    assert cepstral_distortion(a, a) == 0.0


@pytest.mark.parametrize("n, m", [(1, 1), (1, 6), (7, 1), (5, 8), (9, 4), (12, 12)])
def test_dtw_matches_brute_force(n, m):
    rng = np.random.default_rng(n * 100 + m)
    a, b = rng.normal(size=(n, 6)), rng.normal(size=(m, 6))
    assert cepstral_distortion(a, b) == pytest.approx(brute_force_dtw_mcd(a, b), rel=1e-10)


def test_identical_and_scaled_audio_give_zero(voice):
    assert mcd(voice, voice, SR) == 0.0
    assert mcd(torch.tensor(voice), voice.tolist(), SR) == 0.0  # tensors and lists are waveforms too
    assert mcd(voice, 0.3 * voice, SR) < 1e-9  # a gain moves only c_0
    assert mcd(voice[:1], voice[:1], SR) == 0.0  # one sample: one frame
    assert 0 < mcd(voice[:1], voice, SR) < math.inf
    silence = np.zeros(800)
    assert mcd(silence, silence, SR) == 0.0


def test_more_noise_gives_more_distortion(voice):
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(voice)) * np.sqrt(np.mean(voice**2))
    by_snr = [mcd(voice, voice + noise * 10 ** (-snr / 20), SR) for snr in (40, 20, 0)]
    assert 0 < by_snr[0] < by_snr[1] < by_snr[2]


def test_time_stretched_copy_stays_small_thanks_to_dtw(voice):
    stretched = utterance([0.24, 0.09, 0.18])  # the same vowels, held for other durations
    dtw = mcd(voice, stretched, SR)
    a, b = mel_cepstrum(voice, SR), mel_cepstrum(stretched, SR)
    # without DTW: frame i of the reference against frame i * (M-1)/(N-1) of the copy
    j = np.round(np.arange(len(a)) * (len(b) - 1) / (len(a) - 1)).astype(int)
    linear = 10 / math.log(10) * math.sqrt(2) * np.linalg.norm(a[:, 1:] - b[j, 1:], axis=1).mean()
    rng = np.random.default_rng(1)
    noisy = mcd(voice, voice + 0.1 * np.sqrt(np.mean(voice**2)) * rng.standard_normal(len(voice)), SR)
    assert dtw < linear / 2 and dtw < noisy  # noisy: 20 dB SNR


def test_defaults_follow_the_sample_rate():
    x = utterance([0.1], sr=22050)
    c = mel_cepstrum(x, 22050)
    assert c.shape[1] == 35  # order 34 above 16 kHz
    assert mel_cepstrum(x[:1600], SR).shape[1] == 25  # order 24 up to 16 kHz
    assert mel_cepstrum(x, 22050, order=10, alpha=0.3).shape[1] == 11
    # pysptk imports pkg_resources; a stand-in may serve that import, but never stays behind
    assert "pkg_resources" not in sys.modules or importlib.util.find_spec("pkg_resources") is not None


@pytest.mark.parametrize(
    "args, error, words",
    [
        ((np.zeros((2, 9)), np.zeros(100), SR), ValueError, "reference must be 1-D (one channel), got shape (2, 9)"),
        ((np.zeros(100), np.zeros(0), SR), ValueError, "synthesis is empty"),
        ((np.array([0.0, np.nan]), np.zeros(100), SR), ValueError, "reference has non-finite samples"),
        (("abc", np.zeros(100), SR), TypeError, "reference must be a 1-D array of real numbers, got dtype <U3"),
        ((np.zeros(100), np.zeros(100, complex), SR), TypeError, "synthesis must be a 1-D array of real numbers"),
        ((np.zeros(100), np.zeros(100), 16000.0), TypeError, "sample_rate must be an integer (Hz), got 16000.0"),
        ((np.zeros(100), np.zeros(100), True), TypeError, "sample_rate must be an integer (Hz), got True"),
        ((np.zeros(100), np.zeros(100), 4000), ValueError, "sample_rate must be at least 8000 Hz, got 4000"),
    ],
)
def test_argument_errors_are_one_line(args, error, words):
    with pytest.raises(error) as info:
        mcd(*args)
    assert str(info.value).startswith(words)
    assert "\n" not in str(info.value)


def test_cepstra_argument_errors():
    with pytest.raises(ValueError, match=r"reference_mcep has 5 coefficients per frame but synthesis_mcep has 4"):
        cepstral_distortion(np.zeros((3, 5)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"synthesis_mcep must have shape \[frames >= 1, order \+ 1 >= 2\]"):
        cepstral_distortion(np.zeros((3, 5)), np.zeros((0, 5)))
    with pytest.raises(ValueError, match=r"order must be an integer in \[1, 60\], got 0"):
        mel_cepstrum(np.zeros(100), SR, order=0)
    with pytest.raises(ValueError, match=r"alpha must be a number in \(-1, 1\), got 1.5"):
        mel_cepstrum(np.zeros(100), SR, alpha=1.5)
