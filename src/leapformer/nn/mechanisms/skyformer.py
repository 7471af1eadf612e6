"""Skyformer (Chen et al. 2021, "Skyformer: Remodel Self-Attention with Gaussian
Kernel and Nyström Method", NeurIPS 2021): Gaussian-kernel attention through a
Nyström approximation.

With ``q' = q d**-1/4`` and ``k' = k d**-1/4`` the softmax is replaced by the
Gaussian kernel ``kappa(q_i, k_j) = exp(-||q'_i - k'_j||^2 / 2)``
``= exp(-||q_i - k_j||^2 / (2 sqrt d))`` ("Kernelized Attention"), each row
normalised by its sum over the non-padded keys::

    o_i = sum_j kappa(q_i, k_j) v_j / sum_j kappa(q_i, k_j)

(``normalize=False`` drops the division, as the official code does). The
``N x N`` kernel is the off-diagonal block of the PSD kernel matrix of
``X = [Q'; K']``, approximated à la Nyström with ``m = num_landmarks`` rows ``Z``
of ``X``: ``kappa(Q', Z) (kappa(Z, Z) + ridge I)^+ kappa(Z, K')``. The
landmarks are chosen deterministically: ``ceil(m/2)`` queries and ``floor(m/2)``
keys evenly spaced among each item's non-padded positions (the official code
samples them uniformly at random), so padded positions never enter. The
landmark matrix is preconditioned by its row sums ``D`` as in the official code
(``D^-1/2 W D^-1/2``) and pseudo-inverted by ``pinv_iterations`` Newton-Schulz
steps (6 as in Skyformer; ``0`` = exact ``torch.linalg.pinv``); ``ridge``
(0.1 as in the official code) regularises it. With ``m >= 2N`` all rows of ``X``
are landmarks, and with ``ridge=0`` and an exact inverse the result equals the
exact kernelized attention. Padded keys get no weight; the normaliser is
clamped at ``eps``. Half-precision inputs are computed in float32. Bidirectional
self-attention only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from leapformer.nn.mechanisms._bidirectional import BidirectionalOnly
from leapformer.nn.mechanisms.base import check_option
from leapformer.nn.mechanisms.nystromformer import iterative_pinv
from leapformer.nn.mechanisms.registry import register_mechanism


def gaussian_kernel(a, b):
    """``exp(-||a_i - b_j||^2 / 2)`` for ``a [..., n, D]``, ``b [..., m, D]``: ``[..., n, m]``."""
    sq = (a * a).sum(-1)[..., :, None] + (b * b).sum(-1)[..., None, :]
    return torch.exp((a @ b.transpose(-1, -2) - 0.5 * sq).clamp_max(0.0))


def _spread(valid, count: int):
    """Indices ``[B, count]`` of ``count`` positions evenly spaced among the valid ones."""
    N = valid.shape[1]
    order = torch.argsort((~valid).to(torch.int8), dim=-1, stable=True)  # valid ones first
    length = valid.sum(-1).clamp_min(1)  # [B]
    odd = 2 * torch.arange(count, device=valid.device) + 1  # rank floor((i + 1/2) L / count)
    rank = (odd[None, :] * length[:, None] // (2 * count)).clamp_max(N - 1)
    return order.gather(1, rank)


@register_mechanism
class Skyformer(BidirectionalOnly):
    name = "skyformer"

    def __init__(self, num_heads, head_dim, *, dropout: float = 0.0, num_landmarks: int = 128,
                 pinv_iterations: int = 6, ridge: float = 0.1, normalize: bool = True,
                 eps: float = 1e-6):
        super().__init__(num_heads, head_dim, dropout=dropout)
        check_option("num_landmarks", num_landmarks, "int")
        check_option("pinv_iterations", pinv_iterations, "int")
        check_option("ridge", ridge, "number")
        check_option("normalize", normalize, "bool")
        check_option("eps", eps, "number")
        if num_landmarks < 1 or pinv_iterations < 0 or ridge < 0 or eps <= 0:
            raise ValueError("num_landmarks must be positive, pinv_iterations and ridge "
                             f"non-negative, eps positive; got {num_landmarks}, "
                             f"{pinv_iterations}, {ridge}, {eps}")
        self.m, self.iterations, self.ridge = num_landmarks, pinv_iterations, ridge
        self.normalize, self.eps = normalize, eps

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, num_landmarks={self.m}, "
                f"pinv_iterations={self.iterations}, ridge={self.ridge}")

    def forward(self, q, k, v, *, causal=False, key_padding_mask=None, need_weights=False,
                q_len=None, k_len=None):
        self.check_call(q, k, causal)
        B, H, N, D = q.shape
        out_dtype = v.dtype
        wdtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        scale = D ** -0.25
        q, k, v = q.to(wdtype) * scale, k.to(wdtype) * scale, v.to(wdtype)
        valid = (torch.ones(B, N, dtype=torch.bool, device=q.device) if key_padding_mask is None
                 else ~key_padding_mask)
        mq, mk = min((self.m + 1) // 2, N), min(self.m // 2, N)
        parts = [x.gather(2, _spread(valid, c)[:, None, :, None].expand(B, H, c, D))
                 for x, c in ((q, mq), (k, mk)) if c]
        z = torch.cat(parts, dim=2)  # [B,H,m,D] landmarks: rows of [q'; k']
        cq = gaussian_kernel(q, z)  # [B,H,N,m]
        ck = gaussian_kernel(k, z)
        if key_padding_mask is not None:
            ck = ck.masked_fill(key_padding_mask[:, None, :, None], 0.0)
        m = z.shape[2]
        eye = torch.eye(m, device=q.device, dtype=wdtype)
        w = gaussian_kernel(z, z) + self.ridge * eye
        s = w.sum(-1).rsqrt()  # symmetric preconditioning by the row sums
        wn = s[..., :, None] * w * s[..., None, :]
        inv = (torch.linalg.pinv(wn, hermitian=True) if self.iterations == 0
               else iterative_pinv(wn, self.iterations))
        left = (cq * s[..., None, :]) @ inv  # [B,H,N,m]
        right = ck * s[..., None, :]  # [B,H,N,m]
        vv = torch.cat((v, torch.ones_like(v[..., :1])), -1) if self.normalize else v
        out = left @ (right.transpose(-1, -2) @ vv)
        den = None
        if self.normalize:
            den = out[..., -1:].clamp_min(self.eps)
            out = out[..., :-1] / den
        if self.training and self.dropout > 0:
            out = F.dropout(out, self.dropout)
        weights = None
        if need_weights:
            weights = left @ right.transpose(-1, -2)
            if den is not None:
                weights = weights / den
            weights = weights.to(out_dtype)
        return out.to(out_dtype), weights
