"""The LeaPformer paper's LRA figures.

- :func:`plot_accuracy_throughput` (Figure 1): average LRA accuracy against
  training throughput, bubble area proportional to memory, one bubble per
  mechanism.
- :func:`reweighting_matrices` and :func:`plot_reweighting` (Figure 3): the
  re-weighting matrices ``cos(pi/2 (P_q,i - P_k,j))`` that a trained model
  applies on one input, next to cosFormer's fixed ``cos(pi/2 (i - j) / L)``.

matplotlib is imported lazily (Agg backend) so that importing this module does
not need a display.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from leapformer._io import atomic_open


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=150, bbox_inches="tight")
    _pyplot().close(fig)
    return path


# -- Figure 1 -------------------------------------------------------------------
def plot_accuracy_throughput(points: list[dict], path: str | Path, *, title: str,
                             xlabel: str = "training throughput (tokens/s)") -> Path:
    """``points``: ``{"mechanism", "accuracy" (%), "throughput", "memory_mb"}`` each.

    Bubble area is proportional to memory (the largest bubble has a fixed size);
    a point without memory gets the smallest size.
    """
    if not points:
        raise ValueError("plot_accuracy_throughput needs at least one point")
    for p in points:
        missing = {"mechanism", "accuracy", "throughput"} - set(p)
        if missing:
            raise ValueError(f"point {p} lacks {sorted(missing)}")
    plt = _pyplot()
    mems = [p.get("memory_mb") or 0.0 for p in points]
    top = max(mems) or 1.0
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p, m in zip(points, mems):
        size = 60 + 1500 * m / top
        highlight = p["mechanism"] == "leap"
        ax.scatter(p["throughput"], p["accuracy"], s=size, alpha=0.45,
                   color="tab:red" if highlight else "tab:blue", edgecolors="black")
        label = p["mechanism"] + (f"\n{m:.0f} MB" if m else "")
        ax.annotate(label, (p["throughput"], p["accuracy"]), fontsize=8, ha="center",
                    va="center", fontweight="bold" if highlight else "normal")
    ax.set_xscale("log")
    ax.margins(x=0.2, y=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("average test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


# -- Figure 3 -------------------------------------------------------------------
def cosformer_reweighting(length: int) -> Tensor:
    """``[L, L]`` cosFormer weights ``cos(pi/2 (i - j) / L)``, positions 1..L."""
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    pos = torch.arange(1, length + 1, dtype=torch.float64) / length
    return torch.cos(math.pi / 2 * (pos[:, None] - pos[None, :]))


@torch.no_grad()
def reweighting_matrices(model: nn.Module, *inputs: Tensor) -> list[Tensor]:
    """Re-weighting matrices ``[H, Lq, Lk]`` of every re-weighted self-attention
    layer of ``model`` on one example (batch of one), in layer order.

    The queries and keys each mechanism receives are captured with forward
    hooks and passed to the mechanism's own ``query_proportions`` /
    ``key_proportions``; padded positions are not removed (give an unpadded
    example).
    """
    from leapformer.nn.mechanisms import LinearMechanism

    mechs = [m for m in model.modules()
             if isinstance(m, LinearMechanism) and getattr(m, "reweighted", False)]
    if not mechs:
        raise ValueError("the model has no re-weighted (cosformer / leap) attention layer")
    if any(t.shape[0] != 1 for t in inputs):
        raise ValueError(f"give one example (batch 1), got shapes {[list(t.shape) for t in inputs]}")
    captured: list[Tensor] = []

    def hook(module, args, kwargs):
        q, k = args[0], args[1]
        q_len, k_len = kwargs.get("q_len"), kwargs.get("k_len")
        if q_len is None:
            q_len = torch.tensor([q.shape[2]], device=q.device)
        if k_len is None:
            k_len = torch.tensor([k.shape[2]], device=k.device)
        pq = module.query_proportions(q, 0, q_len)
        pk = module.key_proportions(k, 0, k_len)
        pq = pq.expand(q.shape[0], q.shape[1], q.shape[2])[0].double()
        pk = pk.expand(k.shape[0], k.shape[1], k.shape[2])[0].double()
        captured.append(torch.cos(math.pi / 2 * (pq[:, :, None] - pk[:, None, :])))

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in mechs]
    was_training = model.training
    try:
        model.eval()
        model(*inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return captured


def plot_reweighting(matrices: dict[str, Tensor], path: str | Path, *, title: str = "") -> Path:
    """One heatmap per named ``[L, L]`` matrix, side by side, each with its own
    colour scale (a learned re-weighting may vary over a narrow range)."""
    if not matrices:
        raise ValueError("plot_reweighting needs at least one matrix")
    plt = _pyplot()
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(3.9 * n, 3.4), squeeze=False)
    for i, (ax, (name, m)) in enumerate(zip(axes[0], matrices.items())):
        if m.dim() != 2:
            raise ValueError(f"matrix {name!r} must be 2-D, got shape {list(m.shape)}")
        image = ax.imshow(m.float().numpy(), cmap="viridis")
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("key position")
        if i == 0:
            ax.set_ylabel("query position")
    fig.tight_layout()
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
