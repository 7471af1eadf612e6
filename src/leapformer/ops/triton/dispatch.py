"""Backend choice for the public entry points of :mod:`leapformer.ops.attention`.

``backend`` is one of:

- ``"torch"``: the pure PyTorch forms (every mode, every feature map, CPU and GPU).
- ``"triton"``: the fused kernels of :mod:`leapformer.ops.triton.functions`, for
  ``mode`` ``"chunk"``, ``"recurrent"`` or ``"auto"`` (not ``"parallel"`` or
  ``return_weights``) and a named row-wise feature map (relu, elu, identity). On CUDA
  tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (the interpreter, for tests).
- ``"fla"``: causal only, CUDA only: flash-linear-attention's ``chunk_linear_attn`` on
  the expanded features (:mod:`leapformer.ops.triton.fla`).
- ``"auto"``: ``"triton"`` when the inputs are on CUDA, Triton is installed and the
  call is one the kernels cover; ``"torch"`` otherwise.

This module imports neither Triton nor FLA; they are imported when first used.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
from torch import Tensor

from leapformer.ops._fused import padded_width
from leapformer.ops.feature_maps import elu_plus_one, identity, relu

_NAMES = {relu: "relu", elu_plus_one: "elu", identity: "identity"}


def feature_map_name(phi) -> str | None:
    """The kernels' name of a resolved feature map, or None for one they lack (FAVOR+)."""
    return _NAMES.get(phi)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def resolve_backend(backend: str, *, q: Tensor, phi, form: str) -> str:
    """``"torch"``, ``"triton"`` or ``"fla"`` for this call (``form`` = the resolved mode);
    a one-line ``ValueError`` when an explicit backend cannot serve it."""
    if backend == "torch":
        return "torch"
    covered = form in ("chunk", "recurrent") and feature_map_name(phi) is not None
    if backend == "auto":
        return "triton" if q.is_cuda and covered and triton_available() else "torch"
    if form not in ("chunk", "recurrent"):
        raise ValueError(f"backend={backend!r} runs mode 'chunk', 'recurrent' or 'auto' "
                         f"without return_weights, got mode {form!r}")
    if feature_map_name(phi) is None:
        raise ValueError(f"backend={backend!r} supports feature_map 'relu', 'elu' or "
                         f"'identity', got {phi!r}")
    if backend == "triton":
        if not (q.is_cuda or (q.device.type == "cpu" and _interpreting())):
            raise ValueError(f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 "
                             f"for CPU tensors), got tensors on {q.device}")
        if not triton_available():
            raise ImportError("backend='triton' needs Triton: pip install 'leapformer[triton]'")
        return "triton"
    if not q.is_cuda:
        raise ValueError(f"backend='fla' needs CUDA tensors, got tensors on {q.device}")
    if importlib.util.find_spec("fla") is None:
        raise ImportError("backend='fla' needs flash-linear-attention: "
                          "pip install 'leapformer[fla]'")
    return "fla"


def fused_state(s: Tensor, z: Tensor, s0: Tensor | None = None) -> Tensor:
    """``S [B,H,G,D,Dv]`` and ``z [B,H,G,D]`` -> the fused ``[B,H,G,D,P]`` of
    :class:`leapformer.ops.LinearAttentionState`; the padding columns are those of the
    initial fused state ``s0`` (zero in any state the library makes), as the torch forms
    keep them."""
    Dv = s.shape[-1]
    pad = padded_width(Dv) - Dv - 1
    parts = [s, z.unsqueeze(-1)]
    if pad:
        parts.append(s.new_zeros(*s.shape[:-1], pad) if s0 is None else s0[..., Dv + 1:])
    return torch.cat(parts, dim=-1)


def run_backend(backend: str, q: Tensor, k: Tensor, v: Tensor, q_prop: Tensor | None,
                k_prop: Tensor | None, *, phi, causal: bool, key_padding_mask: Tensor | None,
                chunk_size: int, s0: Tensor | None, cdtype: torch.dtype,
                cu_seqlens: Tensor | None = None):
    """Run a resolved non-torch backend: ``(num [B,H,M,Dv], den [B,H,M], final [B,H,G,D,P])``
    (``s0`` fused ``[S,H,G,D,P]`` or None; ``cu_seqlens`` packed sequences or None)."""
    if backend == "triton":
        from leapformer.ops.triton.functions import triton_forward

        num, den, s, z = triton_forward(
            q, k, v, q_prop, k_prop, feature_map=feature_map_name(phi), causal=causal,
            key_padding_mask=key_padding_mask, chunk_size=chunk_size, s0=s0,
            cu_seqlens=cu_seqlens)
        return num, den, fused_state(s, z, s0)
    from leapformer.ops.triton.fla import fla_attention

    if not causal:
        raise ValueError("backend='fla' supports causal=True only (FLA has no bidirectional "
                         "linear attention); use backend='triton' or 'torch'")
    return fla_attention(q, k, v, q_prop, k_prop, phi=phi, key_padding_mask=key_padding_mask,
                         s0=s0, cdtype=cdtype, cu_seqlens=cu_seqlens)
