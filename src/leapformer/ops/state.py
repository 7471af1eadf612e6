"""Recurrent state of linear attention (explicit data, docs/math.md §1).

The state after keys ``1..t`` holds, per weight group ``g`` (1 group without
re-weighting; 2 = the sin/cos halves with it), the running sums
``S_g = sum_j w_g,j phi(k_j)^T v_j`` and ``z_g = sum_j w_g,j phi(k_j)``. They are
stored fused as one tensor ``s [B, H, G, D, P]`` whose columns are
``[S, z, zero padding]`` (P = ``Dv + 1`` rounded up to a multiple of 8): the
layout the fast paths read and write with single GEMMs. The state is float32
(float64 for float64 inputs) whatever the input dtype. Its size is constant in
the sequence length: ``G * D * P`` numbers per head and sequence.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from leapformer.ops._checks import shape
from leapformer.ops._fused import augment_values, expand_features, padded_width


class LinearAttentionState(NamedTuple):
    """Fused running sums ``s [batch, heads, groups, feature_dim, P]`` for values of width ``value_dim``."""

    s: Tensor
    value_dim: int

    @property
    def kv(self) -> Tensor:
        """``S`` as ``[B, H, G, D, Dv]``."""
        return self.s[..., : self.value_dim]

    @property
    def z(self) -> Tensor:
        """``z`` as ``[B, H, G, D]``."""
        return self.s[..., self.value_dim]

    @property
    def groups(self) -> int:
        return self.s.shape[2]

    @staticmethod
    def zeros(batch: int, heads: int, groups: int, feature_dim: int, value_dim: int, *,
              device=None, dtype: torch.dtype = torch.float32) -> "LinearAttentionState":
        s = torch.zeros(batch, heads, groups, feature_dim, padded_width(value_dim),
                        device=device, dtype=dtype)
        return LinearAttentionState(s, value_dim)

    def extend_(self, k_features: Tensor, v: Tensor, weights: Tensor | None = None) -> None:
        """Add keys in place: ``k_features [B,H,N,F]`` (after the feature map, padded keys
        already zeroed), ``v [B,H,N,Dv]``, re-weighting ``weights [B,H,N,G]`` (G = 2:
        ``[sin, cos](pi/2 p)``; None without re-weighting). Inputs in the state's dtype.
        The cross-attention state that grows as source arrives (docs/math.md §2)."""
        B, H = k_features.shape[:2]
        flat = self.s.view(B, H, -1, self.s.shape[-1])
        flat.add_(expand_features(k_features, weights).transpose(-1, -2) @ augment_values(v))

    def read(self, q_features: Tensor, weights: Tensor | None = None, *,
             normalize: str = "clamp", eps: float = 0.1) -> Tensor:
        """Attend with queries ``q_features [B,H,M,F]`` (weights ``[B,H,M,G]`` or None)
        to every key added so far: ``[B,H,M,Dv]``. ``normalize``: ``"clamp"`` divides by
        the denominator clamped at ``eps``, ``"eps"`` by denominator + ``eps``,
        ``"none"`` returns the numerator (for a normalisation layer afterwards)."""
        B, H = q_features.shape[:2]
        out = expand_features(q_features, weights) @ self.s.view(B, H, -1, self.s.shape[-1])
        num, den = out[..., : self.value_dim], out[..., self.value_dim:self.value_dim + 1]
        if normalize == "clamp":
            return num / den.clamp_min(eps)
        if normalize == "eps":
            return num / (den + eps)
        if normalize == "none":
            return num
        raise ValueError(f"normalize must be 'clamp', 'eps' or 'none', got {normalize!r}")

    def bytes_per_sequence(self) -> int:
        """Memory of the state of one sequence (constant in its length)."""
        return self.s[0].numel() * self.s.element_size()


def check_state(state: object, *, batch: int, heads: int, groups: int, feature_dim: int,
                value_dim: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Validate ``initial_state`` and return its fused tensor ``[B, H, G, D, P]``."""
    if not isinstance(state, LinearAttentionState):
        raise TypeError(
            f"initial_state must be a LinearAttentionState, got {type(state).__name__}"
        )
    s = state.s
    want = (batch, heads, groups, feature_dim, padded_width(value_dim))
    if tuple(s.shape) != want or state.value_dim != value_dim:
        raise ValueError(
            "initial_state does not fit these inputs: want s of shape [batch, heads, groups, "
            f"feature_dim, P] = {list(want)} for value_dim {value_dim}, got {shape(s)} for "
            f"value_dim {state.value_dim} (a state from another layer, batch or mechanism?)"
        )
    if s.dtype != dtype:
        raise TypeError(f"initial_state must have dtype {dtype} (the state dtype), got {s.dtype}")
    if s.device != device:
        raise TypeError(f"initial_state is on {s.device} but the inputs are on {device}")
    return s
