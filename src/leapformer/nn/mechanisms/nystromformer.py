"""Nyströmformer (Xiong et al. 2021): softmax attention through landmarks.

``softmax(q k~^T) pinv(softmax(q~ k~^T)) softmax(q~ k^T) v`` with ``m``
landmarks ``q~``, ``k~`` = means of ``m`` consecutive segments of the queries
and keys (scaled by ``d**-1/4`` each), the pseudo-inverse by Newton-Schulz
iterations (``pinv_iterations``, 6 as in the paper; ``0`` = exact
``torch.linalg.pinv``), and an optional depthwise convolution of the values
added as a skip (``conv_kernel``, 33 in the LRA code; 0 = none). With as many
landmarks as tokens and an exact inverse it equals softmax attention. Padded
keys are zeroed and excluded from the last softmax (as in the official code,
the landmarks still average over padded positions). Bidirectional
self-attention only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from leapformer.nn.mechanisms._bidirectional import BidirectionalOnly
from leapformer.nn.mechanisms.base import check_option
from leapformer.nn.mechanisms.registry import register_mechanism


def iterative_pinv(a, iterations: int):
    """Newton-Schulz pseudo-inverse of row-stochastic ``a [..., m, m]`` (Nyströmformer init)."""
    at = a.transpose(-1, -2)
    scale = a.abs().sum(-1).amax(-1) * a.abs().sum(-2).amax(-1)
    z = at / scale[..., None, None]
    eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


@register_mechanism
class Nystromformer(BidirectionalOnly):
    name = "nystromformer"

    def __init__(self, num_heads, head_dim, *, dropout: float = 0.0, num_landmarks: int = 128,
                 pinv_iterations: int = 6, conv_kernel: int = 33):
        super().__init__(num_heads, head_dim, dropout=dropout)
        for name, value in (("num_landmarks", num_landmarks),
                            ("pinv_iterations", pinv_iterations), ("conv_kernel", conv_kernel)):
            check_option(name, value, "int")
        if num_landmarks < 1 or pinv_iterations < 0 or conv_kernel < 0:
            raise ValueError("num_landmarks must be positive, pinv_iterations and conv_kernel "
                             f"non-negative; got {num_landmarks}, {pinv_iterations}, {conv_kernel}")
        self.m, self.iterations = num_landmarks, pinv_iterations
        self.conv = None
        if conv_kernel:
            self.conv = nn.Conv2d(num_heads, num_heads, (conv_kernel, 1),
                                  padding=(conv_kernel // 2, 0), groups=num_heads, bias=False)

    def forward(self, q, k, v, *, causal=False, key_padding_mask=None, need_weights=False,
                q_len=None, k_len=None):
        self.check_call(q, k, causal)
        B, H, N, D = q.shape
        scale = D ** -0.25
        q, k = q * scale, k * scale
        if key_padding_mask is not None:
            keep = ~key_padding_mask[:, None, :, None]
            q, k, v = q * keep, k * keep, v * keep
        m = min(self.m, N)
        pad = (-N) % m  # zero rows so that m segments of equal size exist
        seg = (N + pad) // m
        ql = F.pad(q, (0, 0, 0, pad)).view(B, H, m, seg, D).sum(3) / seg
        kl = F.pad(k, (0, 0, 0, pad)).view(B, H, m, seg, D).sum(3) / seg
        k1 = torch.softmax(q @ kl.transpose(-1, -2), dim=-1)
        k2 = torch.softmax(ql @ kl.transpose(-1, -2), dim=-1)
        s3 = ql @ k.transpose(-1, -2)
        if key_padding_mask is not None:
            s3 = s3.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        k3 = torch.softmax(s3, dim=-1)
        inv = torch.linalg.pinv(k2) if self.iterations == 0 else iterative_pinv(k2, self.iterations)
        o = (k1 @ inv) @ (k3 @ v)
        if self.conv is not None:
            o = o + self.conv(v)
        if self.training and self.dropout > 0:
            o = F.dropout(o, self.dropout)
        weights = (k1 @ inv) @ k3 if need_weights else None
        return o, weights
