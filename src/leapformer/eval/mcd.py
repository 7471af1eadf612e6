"""Mel-cepstral distortion (MCD) between two waveforms, with DTW alignment.

``mcd(reference, synthesis, sample_rate)`` in dB:

1. both waveforms are cut into frames of ``2^ceil(log2(25 ms))`` samples
   (512 at 16 kHz, 1024 at 22.05/24 kHz) every ``frame_period_ms`` (5 ms),
   the signal zero-padded by half a frame at each end, Blackman-windowed;
2. each frame's mel-cepstrum ``c_0 .. c_D`` comes from SPTK's ``mcep``
   (``pysptk.sptk.mcep``; the periodogram is floored 80 dB below the frame's
   peak, so that scaling a frame moves only ``c_0``; an all-zero frame gets
   the flat cepstrum ``c_1 .. c_D = 0``) with the
   all-pass constant ``alpha`` that best approximates the mel scale at the
   sample rate (``pysptk.util.mcepalpha``: 0.41 at 16 kHz, 0.455 at
   22.05 kHz) and order ``D`` = 24 up to 16 kHz, 34 up to 24 kHz, 39 above
   (the usual choices of TTS evaluation recipes);
3. the two sequences of ``c_1 .. c_D`` (the energy term ``c_0`` is left out)
   are aligned by dynamic time warping with the Euclidean frame distance
   (``librosa.sequence.dtw``: steps (1,1), (0,1), (1,0), no weights);
4. ``MCD = mean over the aligned pairs (i, j) of
   10 / ln(10) * sqrt(2 * sum_d (c_d[i] - c'_d[j])^2)``.

Identical waveforms give exactly 0, and so does a copy scaled by a constant
gain (only ``c_0`` changes), up to rounding. The DTW cost matrix holds ``N x M`` floats (N, M frames;
200 per second of audio), e.g. 128 MB for two 20 s utterances.

Needs the ``[speech]`` extra (``librosa``, ``pysptk``), imported when called.
"""

from __future__ import annotations

import importlib.resources
import math
import numbers
import sys
import types
from typing import Any

import numpy as np

__all__ = ["cepstral_distortion", "mcd", "mel_cepstrum"]

MCD_CONSTANT = 10.0 / math.log(10.0) * math.sqrt(2.0)
"""``10 / ln(10) * sqrt(2)``: the factor turning a cepstral Euclidean distance into dB."""

_FLOOR_DB = -80.0
_MIN_SAMPLE_RATE = 8000


def _pysptk() -> Any:
    """``pysptk``, imported. pysptk 1.0.1 imports ``pkg_resources`` (gone from
    setuptools >= 82) only to locate its example audio; when that import is
    missing, a stand-in providing ``resource_filename`` is put in place for
    the duration of the import, then removed from ``sys.modules``."""
    try:
        import pysptk

        return pysptk
    except ModuleNotFoundError as err:
        if err.name != "pkg_resources":
            raise ModuleNotFoundError("mcd needs pysptk (pip install 'leapformer[speech]')") from err
    stub = types.ModuleType("pkg_resources")
    stub.resource_filename = lambda package, name: str(importlib.resources.files(package) / name)
    sys.modules["pkg_resources"] = stub
    try:
        import pysptk
    finally:
        if sys.modules.get("pkg_resources") is stub:
            del sys.modules["pkg_resources"]
    return pysptk


def _librosa() -> Any:
    try:
        import librosa
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("mcd needs librosa (pip install 'leapformer[speech]')") from err
    return librosa


def _waveform(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-D array of floats, got {type(x).__name__}") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a 1-D array of real numbers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one channel), got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite samples")
    return arr


def _sample_rate(sample_rate: Any) -> int:
    if not isinstance(sample_rate, numbers.Integral) or isinstance(sample_rate, bool):
        raise TypeError(f"sample_rate must be an integer (Hz), got {sample_rate!r}")
    if sample_rate < _MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be at least {_MIN_SAMPLE_RATE} Hz, got {sample_rate}")
    return int(sample_rate)


def _default_order(sample_rate: int) -> int:
    if sample_rate <= 16000:
        return 24
    if sample_rate <= 24000:
        return 34
    return 39


def mel_cepstrum(waveform: Any, sample_rate: int, *, order: int | None = None,
                 alpha: float | None = None, frame_period_ms: float = 5.0) -> np.ndarray:
    """Mel-cepstra ``[frames, order + 1]`` (``c_0 .. c_order``) of a 1-D waveform
    (steps 1-2 of the module docstring). ``order`` / ``alpha``: None picks the
    defaults for ``sample_rate``."""
    x = _waveform(waveform, "waveform")
    sample_rate = _sample_rate(sample_rate)
    if order is None:
        order = _default_order(sample_rate)
    elif not isinstance(order, numbers.Integral) or isinstance(order, bool) or not 1 <= order <= 60:
        raise ValueError(f"order must be an integer in [1, 60], got {order!r}")
    pysptk = _pysptk()
    if alpha is None:
        alpha = float(pysptk.util.mcepalpha(sample_rate))
    elif not isinstance(alpha, numbers.Real) or isinstance(alpha, bool) or not -1 < alpha < 1:
        raise ValueError(f"alpha must be a number in (-1, 1), got {alpha!r}")
    if not isinstance(frame_period_ms, numbers.Real) or isinstance(frame_period_ms, bool) \
            or not 0 < frame_period_ms <= 100:
        raise ValueError(f"frame_period_ms must be a number in (0, 100], got {frame_period_ms!r}")
    frame_length = 1 << math.ceil(math.log2(0.025 * sample_rate))
    hop = max(1, round(frame_period_ms * sample_rate / 1000))
    padded = np.pad(x, frame_length // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop]
    windowed = np.ascontiguousarray(frames * np.blackman(frame_length))
    # digital silence has no spectral shape: its mel-cepstrum is flat (c_1.. = 0) and
    # c_0 is the log of the floor relative to a unit peak (SPTK refuses an all-zero periodogram)
    out = np.zeros((windowed.shape[0], int(order) + 1))
    out[:, 0] = 0.5 * math.log(10.0) * _FLOOR_DB / 10.0
    sound = np.any(windowed != 0, axis=1)
    if sound.any():
        out[sound] = pysptk.sptk.mcep(windowed[sound], order=int(order), alpha=alpha, etype=2,
                                      eps=_FLOOR_DB)
    return out


def cepstral_distortion(reference_mcep: Any, synthesis_mcep: Any) -> float:
    """MCD in dB of two mel-cepstrum sequences ``[frames, order + 1]`` (steps 3-4 of
    the module docstring: ``c_0`` left out, DTW alignment, mean over the path)."""
    a = np.asarray(reference_mcep, dtype=np.float64)
    b = np.asarray(synthesis_mcep, dtype=np.float64)
    for name, m in (("reference_mcep", a), ("synthesis_mcep", b)):
        if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 2:
            raise ValueError(f"{name} must have shape [frames >= 1, order + 1 >= 2], got {tuple(m.shape)}")
        if not np.isfinite(m).all():
            raise ValueError(f"{name} has non-finite values")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"reference_mcep has {a.shape[1]} coefficients per frame but synthesis_mcep "
                         f"has {b.shape[1]}")
    a, b = a[:, 1:], b[:, 1:]
    _, path = _librosa().sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
    distances = np.linalg.norm(a[path[:, 0]] - b[path[:, 1]], axis=1)
    return float(MCD_CONSTANT * distances.mean())


def mcd(reference: Any, synthesis: Any, sample_rate: int) -> float:
    """Mel-cepstral distortion (dB) of ``synthesis`` against ``reference``, two 1-D
    waveforms at ``sample_rate`` Hz, aligned by DTW (see the module docstring).

    Raises:
        TypeError / ValueError: a waveform that is not a non-empty 1-D array of
            finite real numbers, or a ``sample_rate`` that is not an integer
            >= 8000 (one line naming the argument).
    """
    reference = _waveform(reference, "reference")
    synthesis = _waveform(synthesis, "synthesis")
    sample_rate = _sample_rate(sample_rate)
    return cepstral_distortion(mel_cepstrum(reference, sample_rate), mel_cepstrum(synthesis, sample_rate))
