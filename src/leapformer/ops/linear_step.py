"""One causal decoding step on an explicit fused state, without validation.

For modules that decode token by token (``leapformer.nn``): they check shapes
once when the cache is made, then call this on every token, where the
validation of the public entry points would cost more than the arithmetic
(on CPU a decoding step is bound by per-operation overhead, so this is
written in as few tensor operations as possible). The result equals
``mode="recurrent"`` of :func:`leapformer.ops.leap_attention`
(tested in ``tests/ops/test_step.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from leapformer.ops.proportions import HALF_PI

_CONSTANTS: dict[tuple, Tensor] = {}


def _constant(kind: str, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Cached small constants: ``"shift"`` = ``[0, pi/2]``; ``"ones"`` = ``[1, 0, .., 0]``."""
    key = (kind, width, device, dtype)
    t = _CONSTANTS.get(key)
    if t is None:
        t = torch.zeros(width, device=device, dtype=dtype)
        t[0 if kind == "ones" else 1] = 1.0 if kind == "ones" else HALF_PI
        # a tensor made while torch.export / torch.compile traces is a placeholder: it
        # must not outlive the trace (later eager calls would read it)
        if not (torch.compiler.is_compiling() or torch.jit.is_tracing()):
            _CONSTANTS[key] = t
    return t


def step_(f: Tensor, v: Tensor, s: Tensor, props: Tensor | None = None, *,
          normalize: str = "clamp", eps: float = 0.1) -> Tensor:
    """Add one key to the state ``s`` (in place) and read it with one query.

    ``f [2,B,H,1,F]`` stacks the query and key features (after the feature map),
    ``v [B,H,1,Dv]``, ``s [B,H,G,F,P]`` is the fused state of
    :class:`~leapformer.ops.LinearAttentionState`, ``props [2,B,H,1]`` stacks
    the query and key proportions (G = 2; None for G = 1). ``f``, ``props`` and
    ``s`` share a dtype. Returns ``o [B,H,1,Dv]`` (the numerator only for
    ``normalize="none"``).
    """
    B, H, G, Fd, P = s.shape
    Dv = v.shape[-1]
    if G == 2:
        # [sin, cos](pi/2 p) = sin(pi/2 p + [0, pi/2]) in one pass
        w = torch.sin(torch.add(_constant("shift", 2, s.device, s.dtype), props.unsqueeze(-1),
                                alpha=HALF_PI))
        f = (w.unsqueeze(-1) * f.unsqueeze(-2)).flatten(-2)  # [2,B,H,1,2F]
    tail = _constant("ones", P - Dv, s.device, s.dtype).expand(B, H, 1, P - Dv)
    v1 = torch.cat((v if v.dtype == s.dtype else v.to(s.dtype), tail), dim=-1)
    flat = s.view(B, H, G * Fd, P)
    flat.addcmul_(f[1].transpose(-1, -2), v1)
    out = f[0] @ flat  # [B,H,1,P]
    if normalize == "clamp":
        return out[..., :Dv] / out[..., Dv:Dv + 1].clamp_min(eps)
    if normalize == "eps":
        return out[..., :Dv] / (out[..., Dv:Dv + 1] + eps)
    return out[..., :Dv]
