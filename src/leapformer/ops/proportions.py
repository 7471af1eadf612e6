"""Proportions and the sin/cos re-weighting (docs/math.md §1.1-1.3).

Re-weighted linear attention scores ``phi(q_i).phi(k_j) * cos(pi/2 (p_i - p_j))``.
Since ``cos(a - b) = sin a sin b + cos a cos b`` the weight splits into two
groups, so every linear-attention form carries over. :func:`reweighting`
turns proportions ``[B, H, L]`` into the group weights
``[B, H, L, 2] = [sin(pi/2 p), cos(pi/2 p)]``.

cosFormer is the special case ``p_i = i / L``; LeaP predicts ``p`` with a
small network (``leapformer.nn``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

HALF_PI = math.pi / 2


def reweighting(prop: Tensor) -> Tensor:
    """Group weights ``[..., L, 2] = [sin(pi/2 p), cos(pi/2 p)]`` for ``prop [..., L]``."""
    angle = prop * HALF_PI
    return torch.stack((torch.sin(angle), torch.cos(angle)), dim=-1)


def group_weights(q_prop: Tensor | None, k_prop: Tensor | None,
                  key_padding_mask: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
    """:func:`reweighting` of both sides, the key weights zeroed at padded keys
    (``key_padding_mask [B, N]``, True = pad); ``(None, None)`` without re-weighting."""
    if q_prop is None:
        return None, None
    wk = reweighting(k_prop)
    if key_padding_mask is not None:
        wk = wk.masked_fill(key_padding_mask[:, None, :, None], 0.0)
    return reweighting(q_prop), wk


def cosformer_proportions(
    length: int,
    max_length: int | Tensor | None = None,
    *,
    offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """cosFormer self-attention proportions ``i / L`` for positions ``i = offset+1 .. offset+length``.

    Positions are 1-based as in the official cosFormer code. ``max_length``
    is ``L``: an int (shared) or a tensor ``[B]`` of per-sequence lengths; by
    default ``L = offset + length``. ``offset`` places a chunk of a longer
    sequence (decoding). Returns ``[1, 1, length]`` for an int ``L`` and
    ``[B, 1, length]`` for per-sequence lengths, ready for ``leap_attention``.
    """
    if length < 0 or offset < 0:
        raise ValueError(f"length and offset must be non-negative, got {length}, {offset}")
    pos = torch.arange(offset + 1, offset + length + 1, device=device, dtype=dtype)
    if max_length is None:
        max_length = max(offset + length, 1)
    if isinstance(max_length, Tensor):
        if max_length.dim() != 1:
            raise ValueError(f"max_length tensor must be [batch], got {list(max_length.shape)}")
        if bool((max_length <= 0).any()):
            raise ValueError("max_length must be positive")
        return pos.view(1, 1, -1) / max_length.to(device=pos.device, dtype=dtype).view(-1, 1, 1)
    if max_length <= 0:
        raise ValueError(f"max_length must be positive, got {max_length}")
    return (pos / max_length).view(1, 1, -1)


def cross_proportions(
    target_length: int,
    source_length: int,
    *,
    target_total: int | float | None = None,
    source_total: int | float | None = None,
    target_offset: int = 0,
    source_offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """cosFormer cross-attention proportions (docs/math.md §1.2, MLA eq. 8).

    Query ``i`` gets ``i / M`` and key ``j`` gets ``j / N``, 1-based, so that
    the weight is ``cos(pi/2 (i/M - j/N))``. ``target_total`` (M) and
    ``source_total`` (N) default to the given lengths; at inference M is a
    predicted target length. Returns ``(q_prop [1,1,target_length],
    k_prop [1,1,source_length])``.
    """
    M = target_total if target_total is not None else target_offset + target_length
    N = source_total if source_total is not None else source_offset + source_length
    if M <= 0 or N <= 0:
        raise ValueError(f"target and source totals must be positive, got {M}, {N}")
    qi = torch.arange(target_offset + 1, target_offset + target_length + 1, device=device, dtype=dtype)
    kj = torch.arange(source_offset + 1, source_offset + source_length + 1, device=device, dtype=dtype)
    return (qi / M).view(1, 1, -1), (kj / N).view(1, 1, -1)
