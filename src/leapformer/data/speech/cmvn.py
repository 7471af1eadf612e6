"""Global cepstral mean and variance normalisation (CMVN) statistics.

:class:`GlobalCMVN` holds one mean and one standard deviation per feature bin,
accumulated over every frame of a training set (:func:`compute_cmvn`, exact:
float64 running sums of ``x`` and ``x^2``), applied as ``(x - mean) / std``.
The standard deviation is ``sqrt(max(var, 1e-8))``, fairseq's ``gcmvn``
definition; :meth:`GlobalCMVN.save` writes the same ``.npz`` layout as
fairseq's ``gcmvn.npz`` (``mean``, ``std``, float32) plus the frame count.
:func:`manifest_cmvn` computes the statistics of a manifest's utterances
(Kaldi filterbanks by default), as fairseq's MuST-C preparation does on the
training split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from leapformer._io import atomic_open

__all__ = ["CMVNAccumulator", "GlobalCMVN", "compute_cmvn", "manifest_cmvn"]

VAR_FLOOR = 1e-8


@dataclass(frozen=True)
class GlobalCMVN:
    """Per-bin ``mean`` and ``std`` (float32 arrays ``[bins]``) over ``count`` frames."""

    mean: np.ndarray
    std: np.ndarray
    count: int

    def __post_init__(self) -> None:
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        if mean.ndim != 1 or mean.shape != std.shape or mean.size == 0:
            raise ValueError(f"mean and std must be equal 1-D shapes, got {mean.shape} and "
                             f"{std.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError("mean must be finite and std finite and > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def bins(self) -> int:
        return int(self.mean.size)

    def __call__(self, features: Tensor | np.ndarray) -> Tensor | np.ndarray:
        """Normalise ``[..., bins]`` features (same type out as in)."""
        if features.shape[-1] != self.bins:
            raise ValueError(f"features have {features.shape[-1]} bins, the statistics "
                             f"{self.bins}")
        if isinstance(features, Tensor):
            mean = torch.as_tensor(self.mean, device=features.device, dtype=features.dtype)
            std = torch.as_tensor(self.std, device=features.device, dtype=features.dtype)
            return (features - mean) / std
        return ((features - self.mean) / self.std).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write ``mean``, ``std`` and ``count`` to an ``.npz`` file (atomically)."""
        with atomic_open(path) as fh:
            np.savez(fh, mean=self.mean, std=self.std, count=np.int64(self.count))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> GlobalCMVN:
        """Read a file of :meth:`save` (or fairseq's ``gcmvn.npz``: count then 0)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"CMVN statistics {path} not found")
        with np.load(path) as z:
            missing = {"mean", "std"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: no {' / '.join(sorted(missing))} array (has "
                                 f"{', '.join(z.files)})")
            count = int(z["count"]) if "count" in z.files else 0
            return cls(z["mean"], z["std"], count)


class CMVNAccumulator:
    """Running float64 sums over frames: ``add(features [frames, bins])`` then
    :meth:`result`."""

    def __init__(self) -> None:
        self.count = 0
        self.sum: np.ndarray | None = None
        self.sum_sq: np.ndarray | None = None

    def add(self, features: Tensor | np.ndarray) -> None:
        x = features.detach().cpu().numpy() if isinstance(features, Tensor) else \
            np.asarray(features)
        if x.ndim != 2:
            raise ValueError(f"features must be [frames, bins], got shape {x.shape}")
        if self.sum is not None and x.shape[1] != self.sum.size:
            raise ValueError(f"features have {x.shape[1]} bins, earlier ones {self.sum.size}")
        if x.shape[0] == 0:
            return
        x = x.astype(np.float64)
        if self.sum is None:
            self.sum, self.sum_sq = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        self.sum += x.sum(axis=0)
        self.sum_sq += np.square(x).sum(axis=0)
        self.count += x.shape[0]

    def result(self) -> GlobalCMVN:
        if not self.count:
            raise ValueError("no frames were added: no statistics to compute")
        mean = self.sum / self.count
        var = self.sum_sq / self.count - mean ** 2
        return GlobalCMVN(mean, np.sqrt(np.maximum(var, VAR_FLOOR)), self.count)


def compute_cmvn(features: Iterable[Tensor | np.ndarray]) -> GlobalCMVN:
    """Global statistics over every frame of ``features`` (each ``[frames, bins]``)."""
    acc = CMVNAccumulator()
    for f in features:
        acc.add(f)
    return acc.result()


def manifest_cmvn(items: Sequence, *, features: Callable | None = None,
                  max_items: int | None = None, seed: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> GlobalCMVN:
    """Statistics over the utterances of a manifest (``SpeechItem`` rows).

    ``features(samples, sample_rate) -> [frames, bins]``; default
    :func:`~leapformer.data.speech.features.kaldi_fbank`. ``max_items``: use a
    random subset of that many utterances drawn from ``seed`` (fairseq uses
    1000 for its ``gcmvn``), else all. ``progress(done, total)`` after each.
    """
    from leapformer.data.speech.features import kaldi_fbank
    from leapformer.data.speech.manifest import load_audio

    if not len(items):
        raise ValueError("items is empty: no utterances to compute statistics over")
    features = features or kaldi_fbank
    chosen = list(items)
    if max_items is not None:
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise ValueError(f"max_items must be None or a positive int, got {max_items!r}")
        if max_items < len(chosen):
            keep = np.random.default_rng(seed).choice(len(chosen), max_items, replace=False)
            chosen = [chosen[i] for i in sorted(keep.tolist())]
    acc = CMVNAccumulator()
    for i, item in enumerate(chosen, 1):
        samples, rate = load_audio(item)
        acc.add(features(samples, rate))
        if progress is not None:
            progress(i, len(chosen))
    return acc.result()
