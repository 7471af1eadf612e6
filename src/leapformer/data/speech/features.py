"""Speech features on ``torch.fft``: Kaldi-compatible log-mel filterbanks (speech
recognition and translation) and Tacotron-style log-mel spectrograms (TTS).

**Filterbank** (:func:`kaldi_fbank`): Kaldi's ``compute-fbank-feats`` with the
settings fairseq's ``speech_to_text`` uses through
``torchaudio.compliance.kaldi.fbank`` (which needs a torchaudio built for the
installed torch, hence this implementation). Defaults: 80 bins, 25 ms window,
10 ms shift, no dither (torchaudio's default; Kaldi's command line dithers
randomly by default), on samples scaled to the 16-bit range (fairseq reads
waveforms unnormalised). Per frame (``snip_edges``: frame ``t`` is samples
``t * shift .. t * shift + length - 1``, only whole frames):

1. subtract the frame's mean (``remove_dc_offset``);
2. pre-emphasis ``x[i] -= 0.97 x[i-1]``, and ``x[0] -= 0.97 x[0]``;
3. Povey window ``(0.5 - 0.5 cos(2 pi i / (L - 1)))^0.85``;
4. zero-pad to the next power of two ``N`` (512 at 16 kHz), power spectrum
   ``|FFT|^2`` of bins ``0 .. N/2 - 1``;
5. triangular filters equally spaced on Kaldi's mel scale
   ``1127 ln(1 + f / 700)`` between 20 Hz and the Nyquist frequency, each
   linear *in mel* from its left to its centre to its right edge (FFT bin
   ``k`` at ``k * rate / N`` Hz);
6. ``log(max(energy, float32 eps))``.

**TTS log-mel** (:func:`tts_log_mel`): LJSpeech / Tacotron 2 conventions, as
``librosa.feature.melspectrogram(power=1)`` computes it: centred frames
(zero-padded by ``n_fft // 2`` each side), Hann window, 1024-point FFT, hop
256, magnitude spectrum, 80 Slaney-style mel filters (area-normalised
triangles on the Slaney mel scale) over 0-8 kHz at 22,050 Hz, then
``log(max(mel, 1e-5))``.

Both take a 1-D waveform (numpy or torch, float in [-1, 1)) and return a
float32 tensor ``[frames, bins]``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["FBANK_BINS", "TTS_MEL", "kaldi_fbank", "kaldi_mel_banks", "n_fbank_frames",
           "slaney_mel_banks", "tts_log_mel"]

FBANK_BINS = 80
TTS_MEL = {"sample_rate": 22050, "n_fft": 1024, "hop": 256, "n_mels": 80, "f_min": 0.0,
           "f_max": 8000.0}
_EPS = float(torch.finfo(torch.float32).eps)


def _waveform(x, name: str = "waveform") -> Tensor:
    if isinstance(x, np.ndarray):
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a 1-D numpy array or tensor, got {type(x).__name__}")
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D (mono samples), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must hold floats in [-1, 1) (or be int16 numpy), got {x.dtype}")
    return x


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def n_fbank_frames(n_samples: int, sample_rate: int = 16000, frame_length_ms: float = 25.0,
                   frame_shift_ms: float = 10.0) -> int:
    """Frames :func:`kaldi_fbank` gives for ``n_samples`` (``snip_edges``)."""
    length = int(sample_rate * frame_length_ms / 1000)
    shift = int(sample_rate * frame_shift_ms / 1000)
    return 0 if n_samples < length else 1 + (n_samples - length) // shift


def _kaldi_mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


@lru_cache(maxsize=8)
def kaldi_mel_banks(n_bins: int, n_fft: int, sample_rate: float, low_freq: float = 20.0,
                    high_freq: float = 0.0) -> np.ndarray:
    """Kaldi's triangular mel filters ``[n_bins, n_fft // 2]`` (float64; see the module
    docstring). ``high_freq <= 0`` counts from the Nyquist frequency, as in Kaldi."""
    nyquist = 0.5 * sample_rate
    high = high_freq if high_freq > 0 else nyquist + high_freq
    if not 0 <= low_freq < high <= nyquist:
        raise ValueError(f"need 0 <= low_freq < high_freq <= {nyquist} Hz, got {low_freq}, "
                         f"{high}")
    lo_mel, hi_mel = _kaldi_mel(low_freq), _kaldi_mel(high)
    delta = (hi_mel - lo_mel) / (n_bins + 1)
    edges = lo_mel + delta * np.arange(n_bins + 2)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    mel = _kaldi_mel(sample_rate / n_fft * np.arange(n_fft // 2))[None, :]
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    weights = np.where(mel <= centre, up, down)
    return np.where((mel > left) & (mel < right), weights, 0.0)


@lru_cache(maxsize=8)
def _povey(length: int) -> Tensor:
    i = torch.arange(length, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * i / (length - 1))).pow(0.85)


def kaldi_fbank(waveform, sample_rate: int = 16000, *, n_bins: int = FBANK_BINS,
                frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0,
                preemphasis: float = 0.97, low_freq: float = 20.0, high_freq: float = 0.0,
                scale: float = 32768.0) -> Tensor:
    """Kaldi log-mel filterbank ``[frames, n_bins]`` (float32) of a mono waveform in
    [-1, 1) (int16 numpy arrays are scaled to it); ``scale`` multiplies the samples
    first (32768: the 16-bit range, as fairseq and Kaldi read audio). A waveform
    shorter than one window gives ``[0, n_bins]``. Computed in float64."""
    x = _waveform(waveform).to(torch.float64) * scale
    for name, v in (("sample_rate", sample_rate), ("frame_length_ms", frame_length_ms),
                    ("frame_shift_ms", frame_shift_ms)):
        _positive(name, v)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    length = int(sample_rate * frame_length_ms / 1000)
    shift = int(sample_rate * frame_shift_ms / 1000)
    if length < 2 or shift < 1:
        raise ValueError(f"a {frame_length_ms} ms window / {frame_shift_ms} ms shift is under "
                         f"2 / 1 samples at {sample_rate} Hz")
    n_fft = 1 << (length - 1).bit_length()
    banks = torch.from_numpy(kaldi_mel_banks(n_bins, n_fft, float(sample_rate),
                                             float(low_freq), float(high_freq)))
    if x.numel() < length:
        return torch.zeros(0, n_bins, dtype=torch.float32)
    frames = x.unfold(0, length, shift)                       # [T, L]
    frames = frames - frames.mean(dim=1, keepdim=True)
    if preemphasis:
        first = frames[:, :1] * (1.0 - preemphasis)
        frames = torch.cat([first, frames[:, 1:] - preemphasis * frames[:, :-1]], dim=1)
    frames = frames * _povey(length)
    power = torch.fft.rfft(frames, n=n_fft).abs().pow(2)[:, :n_fft // 2]
    energies = power @ banks.T
    return energies.clamp_min(_EPS).log().to(torch.float32)


# --------------------------------------------------------------------------- TTS


def _slaney_hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    linear = f / f_sp
    log = min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log, linear)


def _slaney_mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)),
                    f_sp * m)


@lru_cache(maxsize=8)
def slaney_mel_banks(n_mels: int, n_fft: int, sample_rate: float, f_min: float,
                     f_max: float) -> np.ndarray:
    """Slaney mel filters ``[n_mels, n_fft // 2 + 1]`` (float64): triangles between
    mel-spaced edges on the Slaney scale (linear below 1 kHz, logarithmic above),
    linear in Hz, each scaled by ``2 / (right - left edge in Hz)`` (equal area)."""
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2} Hz, got {f_min}, "
                         f"{f_max}")
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _slaney_mel_to_hz(np.linspace(_slaney_hz_to_mel(f_min), _slaney_hz_to_mel(f_max),
                                          n_mels + 2))
    width = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


@lru_cache(maxsize=4)
def _hann(n: int) -> Tensor:
    return torch.hann_window(n, periodic=True, dtype=torch.float64)


def tts_log_mel(waveform, sample_rate: int = TTS_MEL["sample_rate"], *,
                n_fft: int = TTS_MEL["n_fft"], hop: int = TTS_MEL["hop"],
                n_mels: int = TTS_MEL["n_mels"], f_min: float = TTS_MEL["f_min"],
                f_max: float = TTS_MEL["f_max"], floor: float = 1e-5) -> Tensor:
    """Log-mel spectrogram ``[frames, n_mels]`` (float32; ``1 + len // hop`` frames)
    of a mono waveform in [-1, 1), with the LJSpeech/Tacotron 2 settings by default
    (see the module docstring)."""
    x = _waveform(waveform).to(torch.float64)
    _positive("sample_rate", sample_rate)
    for name, v in (("n_fft", n_fft), ("hop", hop), ("n_mels", n_mels)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    _positive("floor", floor)
    pad = n_fft // 2
    x = torch.nn.functional.pad(x[None, None], (pad, pad))[0, 0]  # librosa's 'constant'
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=n_fft, window=_hann(n_fft),
                      center=False, return_complex=True).abs()            # [F, T]
    banks = torch.from_numpy(slaney_mel_banks(n_mels, n_fft, float(sample_rate),
                                              float(f_min), float(f_max)))
    return (banks @ spec).clamp_min(floor).log().T.contiguous().to(torch.float32)
