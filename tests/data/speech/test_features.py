"""Speech features against independent references: Kaldi's fbank transcribed from its
definition with loops in numpy (float64), the TTS log-mel against
``librosa.feature.melspectrogram``; global CMVN against numpy on the concatenation."""

import math

import librosa
import numpy as np
import pytest
import torch

from leapformer.data.speech.cmvn import CMVNAccumulator, GlobalCMVN, compute_cmvn
from leapformer.data.speech.features import (
    kaldi_fbank,
    n_fbank_frames,
    slaney_mel_banks,
    tts_log_mel,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def kaldi_reference(x: np.ndarray, sr: int = 16000, bins: int = 80) -> np.ndarray:
    """Kaldi compute-fbank-feats (dither 0, snip_edges, povey, preemph 0.97, DC removal,
    power spectrum, 20 Hz .. Nyquist), frame by frame with plain loops."""
    x = np.asarray(x, np.float64) * 32768.0
    L, S = int(sr * 0.025), int(sr * 0.010)
    N = 1
    while N < L:
        N *= 2

    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(sr / 2)
    delta = (hi - lo) / (bins + 1)
    fb = np.zeros((bins, N // 2))
    for b in range(bins):
        left, centre, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        for k in range(N // 2):
            m = mel(k * sr / N)
            if left < m < right:
                fb[b, k] = (m - left) / (centre - left) if m <= centre else \
                    (right - m) / (right - centre)
    window = np.array([(0.5 - 0.5 * math.cos(2 * math.pi * i / (L - 1))) ** 0.85
                       for i in range(L)])
    T = 1 + (len(x) - L) // S if len(x) >= L else 0
    out = np.zeros((T, bins))
    for t in range(T):
        f = x[t * S:t * S + L].copy()
        f -= f.mean()
        for i in range(L - 1, 0, -1):
            f[i] -= 0.97 * f[i - 1]
        f[0] -= 0.97 * f[0]
        f *= window
        spec = np.fft.fft(np.concatenate([f, np.zeros(N - L)]))  # full complex FFT
        power = spec.real ** 2 + spec.imag ** 2
        out[t] = np.log(np.maximum(fb @ power[:N // 2], np.finfo(np.float32).eps))
    return out


def _speechlike(n: int, sr: int, seed: int) -> np.ndarray:
    """Noise plus a few harmonics with a silent stretch (exercises the log floor)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = 0.05 * rng.standard_normal(n)
    for h, a in ((120, 0.3), (240, 0.2), (1800, 0.05)):
        x += a * np.sin(2 * np.pi * h * t + rng.uniform(0, 6))
    x[n // 3: n // 3 + min(800, n // 4)] = 0.0
    return np.clip(x, -1, 1).astype(np.float32)


@pytest.mark.parametrize("n", [400, 401, 559, 560, 4321, 16000])
def test_kaldi_fbank_matches_the_loop_reference(n):
    x = _speechlike(n, 16000, seed=n)
    out = kaldi_fbank(x)
    ref = kaldi_reference(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape == (n_fbank_frames(n), 80)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-4)


def test_kaldi_fbank_other_rate_and_bins_and_torch_input():
    x = _speechlike(3000, 8000, seed=1)
    ref = kaldi_reference(x, sr=8000, bins=23)  # 200-sample window, 256-point FFT
    out = kaldi_fbank(torch.from_numpy(x), 8000, n_bins=23)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-4)


def test_kaldi_fbank_short_input_and_int16():
    assert kaldi_fbank(np.zeros(399, np.float32)).shape == (0, 80)
    x = _speechlike(2000, 16000, seed=2)
    pcm = np.round(x * 32767).astype(np.int16)
    np.testing.assert_allclose(kaldi_fbank(pcm).numpy(),
                               kaldi_reference(pcm.astype(np.float64) / 32768), atol=1e-4)


def test_kaldi_fbank_sine_peaks_at_its_frequency():
    """Sanity independent of the definition: a 1 kHz tone lands in the filter whose
    centre (Kaldi mel scale) is nearest 1 kHz."""
    sr = 16000
    x = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)
    feats = kaldi_fbank(x.astype(np.float32))
    mel = lambda f: 1127 * np.log(1 + f / 700)  # noqa: E731
    lo, hi = mel(20), mel(8000)
    centres = lo + (hi - lo) / 81 * np.arange(1, 81)
    assert int(feats.mean(0).argmax()) == int(np.abs(centres - mel(1000)).argmin())


def test_kaldi_fbank_rejects_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        kaldi_fbank(np.zeros((2, 400), np.float32))
    with pytest.raises(TypeError, match="floats"):
        kaldi_fbank(torch.zeros(400, dtype=torch.long))
    with pytest.raises(ValueError, match="sample_rate"):
        kaldi_fbank(np.zeros(400, np.float32), 0)


@pytest.mark.filterwarnings("ignore:n_fft=1024 is too large")
@pytest.mark.parametrize("n", [1, 255, 256, 1000, 22050])
def test_tts_log_mel_matches_librosa(n):
    x = _speechlike(max(n, 1), 22050, seed=n)
    ref = librosa.feature.melspectrogram(y=x.astype(np.float64), sr=22050, n_fft=1024,
                                         hop_length=256, n_mels=80, fmin=0.0, fmax=8000.0,
                                         power=1.0)
    ref = np.log(np.maximum(ref, 1e-5)).T
    out = tts_log_mel(x)
    assert out.shape == ref.shape == (1 + n // 256, 80)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-4)


def test_slaney_filters_match_librosa():
    for sr, n_fft, n_mels, fmax in ((22050, 1024, 80, 8000.0), (16000, 512, 40, 7600.0)):
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=fmax)
        np.testing.assert_allclose(slaney_mel_banks(n_mels, n_fft, float(sr), 0.0, fmax), ref,
                                   rtol=1e-5, atol=1e-9)


# --------------------------------------------------------------------------- CMVN


def test_cmvn_equals_numpy_on_the_concatenation(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3.0, 2.0, size=(n, 5)).astype(np.float32) for n in (1, 17, 0, 40)]
    stats = compute_cmvn([torch.from_numpy(chunks[0]), *chunks[1:]])
    cat = np.concatenate(chunks).astype(np.float64)
    np.testing.assert_allclose(stats.mean, cat.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.std, cat.std(0), rtol=1e-5)
    assert stats.count == 58
    normed = stats(cat.astype(np.float32))
    np.testing.assert_allclose(normed.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(normed.std(0), 1, atol=1e-4)
    t = stats(torch.from_numpy(cat.astype(np.float32)))
    np.testing.assert_allclose(t.numpy(), normed, atol=1e-6)
    loaded = GlobalCMVN.load(stats.save(tmp_path / "gcmvn.npz"))
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.std, stats.std)
    assert loaded.count == 58


def test_cmvn_constant_bin_is_floored_and_errors(tmp_path):
    acc = CMVNAccumulator()
    acc.add(np.ones((4, 2)))
    assert np.allclose(acc.result().std, 1e-4)  # sqrt(1e-8)
    with pytest.raises(ValueError, match="earlier ones 2"):
        acc.add(np.ones((3, 3)))
    with pytest.raises(ValueError, match="no frames"):
        CMVNAccumulator().result()
    with pytest.raises(ValueError, match="3 bins"):
        acc.result()(np.zeros((1, 3)))
    np.savez(tmp_path / "bad.npz", mean=np.zeros(2))
    with pytest.raises(ValueError, match="no std"):
        GlobalCMVN.load(tmp_path / "bad.npz")
