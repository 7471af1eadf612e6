"""The mel figure of a synthesis: reference and synthesised log-mels one above the
other, on a shared colour scale (matplotlib, Agg backend; PNG written atomically)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from leapformer._io import atomic_open

__all__ = ["plot_mels"]


def plot_mels(mels: Sequence, titles: Sequence[str], path: str | Path, *,
              hop_seconds: float = 256 / 22050) -> Path:
    """PNG at ``path``: one panel per ``[frames, bins]`` log-mel in ``mels`` (numpy or
    torch), titled by ``titles``, time in seconds, a shared colour scale."""
    if not mels or len(mels) != len(titles):
        raise ValueError(f"need one title per mel (> 0), got {len(mels)} mels and "
                         f"{len(titles)} titles")
    arrays = []
    for i, m in enumerate(mels):
        a = m.detach().cpu().float().numpy() if hasattr(m, "detach") else np.asarray(m)
        if a.ndim != 2 or a.shape[0] < 1:
            raise ValueError(f"mels[{i}] must be [frames, bins], got {list(a.shape)}")
        arrays.append(a)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = min(float(a.min()) for a in arrays)
    hi = max(float(a.max()) for a in arrays)
    longest = max(a.shape[0] for a in arrays) * hop_seconds
    fig, axes = plt.subplots(len(arrays), 1, figsize=(8, 2.4 * len(arrays)), squeeze=False,
                             layout="constrained")
    for ax, a, title in zip(axes[:, 0], arrays, titles, strict=True):
        im = ax.imshow(a.T, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma",
                       extent=(0, a.shape[0] * hop_seconds, 0, a.shape[1]))
        ax.set_xlim(0, longest)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("mel bin")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="log magnitude")
    path = Path(path)
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path
