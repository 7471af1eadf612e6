"""Shared pieces of the fast forms: re-weighting folded into the features and
the denominator folded into the values.

Because ``cos(a - b) = sin a sin b + cos a cos b``, re-weighted linear attention
is plain linear attention on the features ``[phi(x) w_1, .., phi(x) w_G]``
(``w = [sin, cos](pi/2 p)``, G = 2; G = 1 without re-weighting). Appending a
column of ones to the values makes one GEMM produce numerator and denominator
together. The value width is padded with zero columns to a multiple of 8
(``P``): GEMMs with an output width of 65 run at half the speed of 72 on CPU.
"""

from __future__ import annotations

from torch import Tensor

VALUE_ALIGN = 8


def padded_width(value_dim: int) -> int:
    """Columns of the augmented values ``[v, 1, 0...]``."""
    return -(-(value_dim + 1) // VALUE_ALIGN) * VALUE_ALIGN


def expand_features(f: Tensor, w: Tensor | None) -> Tensor:
    """``f [B,H,L,D]`` and group weights ``w [b,h,L,G]`` -> ``[B,H,L,G*D]`` (``f`` itself if ``w`` is None)."""
    if w is None:
        return f
    return (f.unsqueeze(-2) * w.unsqueeze(-1)).flatten(-2)


def augment_values(v: Tensor) -> Tensor:
    """``v [B,H,N,Dv]`` -> ``[B,H,N,P] = [v, 1, 0, ...]``."""
    B, H, N, Dv = v.shape
    v1 = v.new_zeros(B, H, N, padded_width(Dv))
    v1[..., :Dv] = v
    v1[..., Dv] = 1.0
    return v1


def split_output(out: Tensor, value_dim: int) -> tuple[Tensor, Tensor]:
    """``out [B,H,M,P]`` -> ``(num [B,H,M,Dv], den [B,H,M])`` (views)."""
    return out[..., :value_dim], out[..., value_dim]
