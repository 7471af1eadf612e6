"""The LeaPformer paper's LRA figures.

- :func:`plot_accuracy_throughput` (Figure 1): average LRA accuracy against
  training throughput, bubble area proportional to memory, one bubble per
  mechanism, labelled beside it (labels moved so that they do not overlap).
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
def _compact(x: float) -> str:
    """Tick label: 6000 -> ``"6k"``, 1500 -> ``"1.5k"``, 2e6 -> ``"2M"``, 50 -> ``"50"``."""
    for scale, suffix in ((1e6, "M"), (1e3, "k"), (1.0, "")):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def log_ticks(low: float, high: float, max_ticks: int = 7) -> list[float]:
    """Round tick values for a log axis over ``[low, high]``, spaced at least
    ``1 / max_ticks`` of the axis apart (so their labels cannot overlap): the powers
    of ten, else 1-2-5 (or 1-2-3-5) per decade, else every mantissa 1..9 (thinned),
    whichever first gives three ticks."""
    if not 0 < low < high:
        raise ValueError(f"log_ticks needs 0 < low < high, got {low!r}, {high!r}")
    span = math.log10(high) - math.log10(low)
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9)):
        cands = sorted(m * 10.0 ** d for d in decades for m in mantissas)
        cands = [c for c in cands if low <= c <= high]
        ticks: list[float] = []
        for c in cands:
            if not ticks or math.log10(c / ticks[-1]) >= span / max_ticks:
                ticks.append(c)
        if len(ticks) >= 3 or mantissas[-1] == 9:
            return ticks
    return ticks  # pragma: no cover (the loop always returns)


def _place_labels(ax, fig, items: list[tuple]) -> None:
    """Write each ``(x, y, text, radius_pt, bold)`` label beside its bubble, at the
    first of several positions (right, left, above, below, the diagonals; then
    farther out) where it overlaps no label already placed, no other bubble and
    nothing outside the axes (else where it overlaps least)."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed, bubbles = [], []
    for x, y, _, r, _ in items:
        cx, cy = ax.transData.transform((x, y))
        rp = r * fig.dpi / 72.0
        bubbles.append((cx - rp, cy - rp, cx + rp, cy + rp))

    def overlap(a, b):
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    sides = ((1, 0, "left", "center"), (-1, 0, "right", "center"), (0, 1, "center", "bottom"),
             (0, -1, "center", "top"), (0.7, 0.7, "left", "bottom"), (0.7, -0.7, "left", "top"),
             (-0.7, 0.7, "right", "bottom"), (-0.7, -0.7, "right", "top"))
    for i, (x, y, text, r, bold) in enumerate(items):
        best = None
        for (ux, uy, ha, va), far in ((side, far) for far in (3, 14) for side in sides):
            dx, dy = ux * (r + far), uy * (r + far)
            leader = {"arrowprops": {"arrowstyle": "-", "color": "0.5", "lw": 0.6,
                                     "shrinkA": 0, "shrinkB": r}} if far > 3 else {}
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                            fontsize=8, ha=ha, va=va, fontweight="bold" if bold else "normal",
                            **leader)
            t.update_positions(renderer)
            e = Text.get_window_extent(t, renderer)  # the text only, not its leader line
            box = (e.x0, e.y0, e.x1, e.y1)
            area = (box[2] - box[0]) * (box[3] - box[1])
            outside = area - overlap(box, (frame.x0, frame.y0, frame.x1, frame.y1))
            cost = sum(overlap(box, o) for o in placed) + sum(
                overlap(box, b) for j, b in enumerate(bubbles) if j != i) + outside
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, t, box)
            else:
                t.remove()
            if cost == 0:
                break
        placed.append(best[2])


def plot_accuracy_throughput(points: list[dict], path: str | Path, *, title: str,
                             xlabel: str = "training throughput (tokens/s)") -> Path:
    """Write :func:`accuracy_throughput_figure` to the PNG ``path``."""
    return _save(accuracy_throughput_figure(points, title=title, xlabel=xlabel), path)


def accuracy_throughput_figure(points: list[dict], *, title: str,
                               xlabel: str = "training throughput (tokens/s)"):
    """Figure 1 as a matplotlib figure. ``points``: ``{"mechanism", "accuracy" (%),
    "throughput", "memory_mb"}`` each.

    Bubble area is proportional to memory (the largest bubble has a fixed size);
    a point without memory gets the smallest size. Labels sit beside the bubbles,
    moved to avoid each other; the log x axis has round, non-overlapping ticks.
    """
    if not points:
        raise ValueError("plot_accuracy_throughput needs at least one point")
    for p in points:
        missing = {"mechanism", "accuracy", "throughput"} - set(p)
        if missing:
            raise ValueError(f"point {p} lacks {sorted(missing)}")
    plt = _pyplot()
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    mems = [p.get("memory_mb") or 0.0 for p in points]
    top = max(mems) or 1.0
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = []
    for p, m in zip(points, mems):
        size = 60 + 1500 * m / top
        highlight = p["mechanism"] == "leap"
        ax.scatter(p["throughput"], p["accuracy"], s=size, alpha=0.45,
                   color="tab:red" if highlight else "tab:blue", edgecolors="black")
        labels.append((p["throughput"], p["accuracy"],
                       p["mechanism"] + (f" ({m:.0f} MB)" if m else ""),
                       math.sqrt(size / math.pi), highlight))
    ax.set_xscale("log")
    xs = [p["throughput"] for p in points]
    lo, hi = min(xs), max(xs)
    pad = max(math.log10(hi / lo) * 0.35, 0.15)  # room for the labels beside the bubbles
    ax.set_xlim(lo / 10 ** pad, hi * 10 ** pad)
    ax.margins(y=0.2)
    ax.xaxis.set_major_locator(FixedLocator(log_ticks(*ax.get_xlim())))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("average test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.canvas.draw()  # final limits and transforms for the label placement
    _place_labels(ax, fig, labels)
    return fig


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
    """Write :func:`reweighting_figure` to the PNG ``path``."""
    return _save(reweighting_figure(matrices, title=title), path)


def reweighting_figure(matrices: dict[str, Tensor], *, title: str = ""):
    """One heatmap per named ``[L, L]`` matrix, side by side, each with its own
    colour scale (a learned re-weighting may vary over a narrow range); the title
    sits above the panels' own titles (constrained layout)."""
    if not matrices:
        raise ValueError("plot_reweighting needs at least one matrix")
    for name, m in matrices.items():
        if m.dim() != 2:
            raise ValueError(f"matrix {name!r} must be 2-D, got shape {list(m.shape)}")
    plt = _pyplot()
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(3.9 * n, 3.6), squeeze=False,
                             layout="constrained")  # leaves room for the suptitle
    for i, (ax, (name, m)) in enumerate(zip(axes[0], matrices.items())):
        image = ax.imshow(m.float().numpy(), cmap="viridis")
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("key position")
        if i == 0:
            ax.set_ylabel("query position")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
