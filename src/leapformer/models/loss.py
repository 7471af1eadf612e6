"""Label-smoothed cross-entropy, the training loss of :class:`~leapformer.models.Seq2Seq`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["label_smoothed_nll"]


def _shape(t) -> list:
    return list(getattr(t, "shape", []))


def label_smoothed_nll(logits: Tensor, target: Tensor, *, epsilon: float = 0.1,
                       ignore_index: int | None = 0, reduction: str = "mean",
                       ) -> tuple[Tensor, Tensor]:
    """Label-smoothed cross-entropy of ``logits [B, T, V]`` against ``target [B, T]``.

    ``loss = (1 - eps) * nll + eps * mean_v(-log p_v)`` per token (the
    uniform-smoothing form of ``F.cross_entropy(label_smoothing=eps)``);
    tokens equal to ``ignore_index`` count nowhere. Returns ``(loss, nll)``
    reduced by ``reduction``: ``"mean"`` over counted tokens, ``"sum"``, or
    ``"none"`` (``[B, T]``, zeros where ignored).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    if logits.dim() != 3 or logits.shape[:2] != target.shape:
        raise ValueError(f"logits must be [batch, length, vocab] matching target "
                         f"{_shape(target)}, got {_shape(logits)}")
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()  # half-precision logits: the softmax in float32
    lp = F.log_softmax(logits, dim=-1)
    keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else \
        target != ignore_index
    safe = target.masked_fill(~keep, 0)
    nll = -lp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    smooth = -lp.mean(-1)
    loss = ((1.0 - epsilon) * nll + epsilon * smooth).masked_fill(~keep, 0.0)
    nll = nll.masked_fill(~keep, 0.0)
    if reduction == "none":
        return loss, nll
    if reduction == "sum":
        return loss.sum(), nll.sum()
    n = keep.sum().clamp_min(1)
    return loss.sum() / n, nll.sum() / n
