"""Input validation shared by the public ops entry points.

Every check raises ``ValueError`` (shapes, values) or ``TypeError`` (dtypes,
devices, types) with the offending argument names and shapes in the message.
"""

from __future__ import annotations

import torch
from torch import Tensor

MODES = ("auto", "parallel", "chunk", "recurrent")
NORMALIZE = ("clamp", "eps", "none")
BACKENDS = ("auto", "torch", "triton", "fla")


def shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def check_qkv(q: Tensor, k: Tensor, v: Tensor, *, causal: bool) -> None:
    """Check ``q [B,H,M,D]``, ``k [B,H,N,D]``, ``v [B,H,N,Dv]``."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"{name} must have shape [batch, heads, length, head_dim], got {shape(t)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise TypeError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if q.shape[:2] != k.shape[:2] or k.shape[:2] != v.shape[:2]:
        raise ValueError(
            "q, k, v must agree in batch and heads, got "
            f"q {shape(q)}, k {shape(k)}, v {shape(v)}"
        )
    if k.shape[2] != v.shape[2]:
        raise ValueError(f"k and v must have the same length, got k {shape(k)}, v {shape(v)}")
    if q.shape[3] != k.shape[3]:
        raise ValueError(f"q and k must have the same head_dim, got q {shape(q)}, k {shape(k)}")
    if q.shape[0] < 1 or q.shape[1] < 1:
        raise ValueError(f"q, k, v must hold at least one batch item and one head, got "
                         f"q {shape(q)}")
    if q.shape[2] < 1:
        raise ValueError(f"q must hold at least one query, got q {shape(q)}")
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(
            "causal attention needs as many queries as keys (self-attention), got "
            f"q {shape(q)}, k {shape(k)}"
        )


def check_mask(key_padding_mask: Tensor | None, k: Tensor) -> None:
    """``key_padding_mask`` is bool ``[B, N]``, True = padding (ignored)."""
    if key_padding_mask is None:
        return
    if not isinstance(key_padding_mask, Tensor):
        raise TypeError(
            f"key_padding_mask must be a bool tensor, got {type(key_padding_mask).__name__}"
        )
    if key_padding_mask.dtype != torch.bool:
        raise TypeError(
            f"key_padding_mask must have dtype torch.bool (True = padding), "
            f"got {key_padding_mask.dtype}"
        )
    want = (k.shape[0], k.shape[2])
    if tuple(key_padding_mask.shape) != want:
        raise ValueError(
            f"key_padding_mask must have shape [batch, source_length] = [{want[0]}, {want[1]}] "
            f"for k {shape(k)}, got {shape(key_padding_mask)}"
        )
    if key_padding_mask.device != k.device:
        raise TypeError(
            f"key_padding_mask is on {key_padding_mask.device} but k is on {k.device}"
        )


def check_prop(name: str, prop: Tensor, ref: Tensor, ref_name: str) -> None:
    """Proportions ``[B, H, L]`` for ``ref [B, H, L, D]``; batch/head dims may be 1."""
    if not isinstance(prop, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(prop).__name__}")
    if not prop.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {prop.dtype}")
    if prop.device != ref.device:
        raise TypeError(f"{name} is on {prop.device} but {ref_name} is on {ref.device}")
    B, H, L = ref.shape[:3]
    ok = (
        prop.dim() == 3
        and prop.shape[0] in (1, B)
        and prop.shape[1] in (1, H)
        and prop.shape[2] == L
    )
    if not ok:
        raise ValueError(
            f"{name} must have shape [batch, heads, length] = [{B}, {H}, {L}] "
            f"(batch and heads may be 1 to share) for {ref_name} {shape(ref)}, got {shape(prop)}"
        )


def check_prop_range(q_prop: Tensor, k_prop: Tensor,
                     key_padding_mask: Tensor | None = None) -> None:
    """Proportions lie in ``[0, 1]`` (NaN and inf fail too; padded keys, and in
    self-attention padded query rows, are exempt): one min/max reduction and one device
    sync per call, skipped while ``torch.compile`` traces (no data-dependent branch in a
    graph).

    Callers that pass values outside ``[0, 1]`` on purpose (cosFormer positions past
    the normalising length: decoding past a predicted target length, an item's length
    on padded query rows) switch the check off with ``check_proportions=False``."""
    if torch.compiler.is_compiling():
        return
    if key_padding_mask is not None:
        pad = key_padding_mask[:, None, :]
        k_prop = k_prop.masked_fill(pad, 0.0)
        if q_prop.shape[-1] == pad.shape[-1]:  # self-attention: padded query rows are
            q_prop = q_prop.masked_fill(pad, 0.0)  # never read either
    lo_q, hi_q = torch.aminmax(q_prop.detach())
    lo_k, hi_k = torch.aminmax(k_prop.detach())
    values = torch.stack((lo_q, hi_q, lo_k, hi_k)).tolist()
    for name, lo, hi in (("q_prop", *values[:2]), ("k_prop", *values[2:])):
        if not (0.0 <= lo and hi <= 1.0):  # NaN fails too
            raise ValueError(f"{name} must hold proportions in [0, 1], got values in "
                             f"[{lo:.4g}, {hi:.4g}] (check_proportions=False accepts others)")


def check_proportions_args(q_prop: Tensor | None, k_prop: Tensor | None, q: Tensor, k: Tensor,
                           key_padding_mask: Tensor | None, check_proportions) -> None:
    """The shapes of ``q_prop``/``k_prop`` (when given) and, unless
    ``check_proportions=False``, their range (:func:`check_prop_range`)."""
    if q_prop is None:
        return
    check_prop("q_prop", q_prop, q, "q")
    check_prop("k_prop", k_prop, k, "k")
    if not isinstance(check_proportions, bool):
        raise TypeError(f"check_proportions must be a bool, got {check_proportions!r}")
    if check_proportions:
        check_prop_range(q_prop, k_prop, key_padding_mask)


def check_options(mode: str, normalize: str, chunk_size: int, backend: str = "auto") -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


def check_cu_seqlens(cu_seqlens: Tensor, q: Tensor, k: Tensor) -> int:
    """Packed sequences (flash-linear-attention's convention): ``cu_seqlens [S+1]``, integer,
    from 0 to the length, non-decreasing, for a batch of one whose queries and keys share
    the packing. Returns S. One device sync."""
    if not isinstance(cu_seqlens, Tensor):
        raise TypeError(f"cu_seqlens must be a torch.Tensor, got {type(cu_seqlens).__name__}")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"cu_seqlens must be int32 or int64, got dtype {cu_seqlens.dtype}")
    if cu_seqlens.device != q.device:
        raise TypeError(f"cu_seqlens is on {cu_seqlens.device} but q is on {q.device}")
    if q.shape[0] != 1 or q.shape[2] != k.shape[2]:
        raise ValueError(f"cu_seqlens needs a batch of one with as many queries as keys, got "
                         f"q {shape(q)}, k {shape(k)}")
    N = k.shape[2]
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens must be 1-D with at least 2 entries, got {shape(cu_seqlens)}")
    steps = cu_seqlens[1:] - cu_seqlens[:-1]
    first, last, lowest = torch.stack((cu_seqlens[0], cu_seqlens[-1], steps.min())).tolist()
    if first != 0 or last != N or lowest < 0:
        raise ValueError(f"cu_seqlens must rise from 0 to the length {N}, got "
                         f"{cu_seqlens.tolist() if cu_seqlens.numel() <= 8 else shape(cu_seqlens)}")
    return cu_seqlens.numel() - 1
