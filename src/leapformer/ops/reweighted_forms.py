"""Forward and backward arithmetic of re-weighted linear attention, without autograd
(used by ``reweighted_grad.py``).

Notation (one head): features ``f_i = phi(x_i)`` of width ``F``, group weights
``w_i = [sin, cos](pi/2 p_i)``, augmented values ``v1_j = [v_j, 1, 0..]`` of width
``P``, and the doubled features ``f~_i = [w_i1 f_i, w_i2 f_i]`` (width ``2F``) of
docs/math.md §1.3, so that ``out_i = sum_j (f~q_i . f~k_j) v1_j`` holds numerator
and denominator together. Doubled features are built on the fly, in the forward
and again in the backward, and never saved.

Across keys (bidirectional, or across causal chunks) the state is
``s = sum_j f~k_j^T v1_j`` ``[2F, P]`` and a read is ``out_i = f~q_i s``.
Backward of a read, with ``g_i`` the gradient of ``out_i``: ``d f~q_i = g_i s^T``
and ``d s = sum_i f~q_i^T g_i``; of a write: ``d f~k_j = v1_j (d s)^T`` and
``d v1_j = f~k_j (d s)``. A doubled-feature gradient ``d f~_i = [h_i1, h_i2]``
splits into ``d f_i = w_i1 h_i1 + w_i2 h_i2`` and ``d w_ig = f_i . h_ig``.

Inside a causal chunk of ``C`` rows the doubled features are not used: the scores
are ``a = tril((fq fk^T) * K)`` with ``K = wq wk^T = cos(pi/2 (p_i - p_j))`` (a
product of inner width 2), half the work of ``f~q f~k^T``. Backward:
``da = tril(g v1^T)``, ``d v1 = a^T g``, ``d(fq fk^T) = da * K``, and
``E = da * (fq fk^T)`` gives the gradients of both weights in one pass:
``d wq = E wk``, ``d wk = E^T wq``. The chunks are processed a block of
chunks at a time (all chunks of a block at once), carrying the state from block
to block; a last chunk shorter than ``C`` is a block of its own.
"""

from __future__ import annotations

import torch
from torch import Tensor

from leapformer.ops._fused import padded_width
from leapformer.ops._scan import chunk_states
from leapformer.ops.feature_maps import elu_plus_one, relu
from leapformer.ops.linear_blocked import block_length
from leapformer.ops.proportions import HALF_PI, reweighting


def _acc_matmul(acc: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``acc += a @ b`` in place, batch dimensions flattened (all contiguous)."""
    acc.view(-1, *acc.shape[-2:]).baddbmm_(a.reshape(-1, *a.shape[-2:]),
                                           b.reshape(-1, *b.shape[-2:]))
    return acc


def split_grad(h: Tensor, f: Tensor, w: Tensor, need_w: bool,
               acc: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """``h [..., L, 2F]`` (gradient of ``[w_1 f, w_2 f]``) -> ``(d f [..., L, F],
    d w [..., L, 2] | None)``; ``d f`` is added to ``acc`` in place when given."""
    h2 = h.unflatten(-1, (2, f.shape[-1]))
    if acc is None:
        acc = torch.mul(h2[..., 0, :], w[..., 0:1])
    else:
        acc.addcmul_(h2[..., 0, :], w[..., 0:1])
    acc.addcmul_(h2[..., 1, :], w[..., 1:2])
    gw = (h2 @ f.unsqueeze(-1)).squeeze(-1) if need_w else None
    return acc, gw


# -- the two sides: features, weights and values, recomputed per block ---------

def query_side(phi, q: Tensor, q_prop: Tensor, cdtype: torch.dtype):
    """``(q in cdtype, phi(q), [sin, cos](pi/2 q_prop))``."""
    xq = q.to(cdtype)
    return xq, phi(xq, True), reweighting(q_prop.to(cdtype))


def key_side(phi, k: Tensor, v: Tensor, k_prop: Tensor, pad: Tensor | None,
             cdtype: torch.dtype, with_den: bool):
    """``(k in cdtype, phi(k), v1, wk, wk unmasked)``: augmented values ``[v, 1, 0..]``
    (``v`` for ``with_den=False``); padded keys zeroed in ``phi(k)``, ``v1`` and ``wk``."""
    xk = k.to(cdtype)
    fk = phi(xk, False)
    if with_den:
        B, H, N, Dv = v.shape
        v1 = torch.empty(B, H, N, padded_width(Dv), dtype=cdtype, device=v.device)
        v1[..., :Dv] = v
        v1[..., Dv] = 1.0
        v1[..., Dv + 1:] = 0.0
    else:
        v1 = v.to(cdtype)
    wk_raw = wk = reweighting(k_prop.to(cdtype))
    if pad is not None:
        pad4 = pad[:, None, :, None]
        fk = fk.masked_fill(pad4, 0.0)
        v1 = v1.masked_fill_(pad4, 0.0) if with_den else v1.masked_fill(pad4, 0.0)
        wk = wk.masked_fill(pad4, 0.0)
    return xk, fk, v1, wk, wk_raw


def feature_grad(phi, x: Tensor, fx: Tensor, g: Tensor, out: Tensor | None = None) -> Tensor:
    """``g * phi'(x)`` for the named row-wise maps, by the kernels autograd uses
    (``relu'(0) = 0``); ``fx = phi(x)``. Written into ``out`` (a view of the gradient
    buffer, converted to its dtype) when given."""
    if out is not None and out.dtype != g.dtype:
        return out.copy_(feature_grad(phi, x, fx, g))
    if phi is relu:
        if out is None:
            return torch.ops.aten.threshold_backward(g, fx, 0.0)
        return torch.ops.aten.threshold_backward.grad_input(g, fx, 0.0, grad_input=out)
    if phi is elu_plus_one:
        if out is None:
            return torch.ops.aten.elu_backward(g, 1.0, 1, 1, False, x)
        return torch.ops.aten.elu_backward.grad_input(g, 1.0, 1, 1, False, x, grad_input=out)
    return g if out is None else out.copy_(g)


def doubled(f: Tensor, w: Tensor) -> Tensor:
    """``f [..., L, F]``, ``w [.., L, 2]`` -> ``[w_1 f, w_2 f]`` ``[..., L, 2F]`` (as
    ``_fused.expand_features``, written by two multiplications into one buffer)."""
    out = f.new_empty(*f.shape[:-1], 2, f.shape[-1])
    torch.mul(f, w[..., 0:1], out=out[..., 0, :])
    torch.mul(f, w[..., 1:2], out=out[..., 1, :])
    return out.flatten(-2)


def prop_grad(gw: Tensor, w: Tensor) -> Tensor:
    """Gradient ``[..., L]`` of the proportions from that of ``w = [sin, cos](pi/2 p)``."""
    return (gw[..., 0] * w[..., 1] - gw[..., 1] * w[..., 0]) * HALF_PI


def take_rows(x: Tensor | None, i: int, j: int) -> Tensor | None:
    """Positions ``i:j`` of ``[b, h, L, ...]`` (or of a padding mask ``[B, L]``)."""
    if x is None:
        return None
    return x[:, i:j] if x.dim() == 2 else x[:, :, i:j]


def query_block(phi, q, q_prop, i: int, j: int, cdtype):
    """:func:`query_side` of positions ``i:j``."""
    return query_side(phi, take_rows(q, i, j), take_rows(q_prop, i, j), cdtype)


def key_block(phi, k, v, k_prop, pad, i: int, j: int, cdtype, with_den: bool):
    """:func:`key_side` of positions ``i:j``."""
    return key_side(phi, take_rows(k, i, j), take_rows(v, i, j), take_rows(k_prop, i, j),
                    take_rows(pad, i, j), cdtype, with_den)


# -- bidirectional: one state over all keys, blocks of rows ---------------------

def bidirectional_forward(phi, q, k, v, q_prop, k_prop, pad, cdtype, with_den
                          ) -> tuple[Tensor, Tensor]:
    """``-> (out [B,H,M,P], s [B,H,2F,P])``: the state over key blocks, then the
    reads of query blocks."""
    B, H, M, _ = q.shape
    N = k.shape[2]
    Lb = block_length(B * H, max(M, N), q.device)
    s = None
    for i in range(0, N, Lb):
        j = min(i + Lb, N)
        _, fk, v1, wk, _ = key_block(phi, k, v, k_prop, pad, i, j, cdtype, with_den)
        fk2 = doubled(fk, wk).transpose(-1, -2)
        s = fk2 @ v1 if s is None else _acc_matmul(s, fk2, v1)
    out = None
    for i in range(0, M, Lb):
        j = min(i + Lb, M)
        _, fq, wq = query_block(phi, q, q_prop, i, j, cdtype)
        o = doubled(fq, wq) @ s
        if out is None:
            out = o.new_empty(B, H, M, o.shape[-1])
        out[:, :, i:j] = o
    return out, s


def _store_key_grads(grads, i, j, phi, xk, fk, wk_raw, pb, gfk, gv1, gwk, Dv):
    """Write one key block's gradients into ``grads = [gq, gk, gv, gqp, gkp]``
    (full-length buffers or None), zero at padded keys."""
    _, gk, gv, _, gkp = grads
    pad4 = None if pb is None else pb[:, None, :, None]
    if gk is not None:
        dst = gk[:, :, i:j]
        feature_grad(phi, xk, fk, gfk, out=dst)
        if pad4 is not None:
            dst.masked_fill_(pad4, 0.0)
    if gv is not None:
        dst = gv[:, :, i:j]
        dst.copy_(gv1[..., :Dv])
        if pad4 is not None:
            dst.masked_fill_(pad4, 0.0)
    if gkp is not None:
        gpb = prop_grad(gwk, wk_raw)
        gkp[:, :, i:j] = gpb if pb is None else gpb.masked_fill_(pb[:, None, :], 0.0)


def _store_query_grads(grads, i, j, phi, xq, fq, wq, gfq, gwq):
    gq, _, _, gqp, _ = grads
    if gq is not None:
        feature_grad(phi, xq, fq, gfq, out=gq[:, :, i:j])
    if gqp is not None:
        gqp[:, :, i:j] = prop_grad(gwq, wq)


def _grad_buffers(q, k, v, q_prop, needs, cdtype) -> list:
    """``[gq, gk, gv, gqp, gkp]``: empty full-length buffers where ``needs`` says so;
    proportion gradients ``[B,H,L]`` in cdtype (summed over broadcast dims later)."""
    B, H, M, _ = q.shape
    N = k.shape[2]
    shapes = (q.shape, k.shape, v.shape, (B, H, M), (B, H, N))
    dtypes = (q.dtype, k.dtype, v.dtype, cdtype, cdtype)
    return [torch.empty(sh, dtype=dt, device=q.device) if need else None
            for need, sh, dt in zip(needs, shapes, dtypes)]


def bidirectional_backward(phi, q, k, v, q_prop, k_prop, pad, cdtype, with_den, s,
                           grad_rows, needs):
    """Gradients ``[q, k, v (in their dtypes), q_prop, k_prop ([B,H,L] in cdtype, not
    yet summed over broadcast dimensions)]``, None where ``needs`` (five flags) is
    False; ``grad_rows(i, j)`` gives the gradient of ``out`` rows ``i:j`` ``[B,H,L,P]``.
    Query blocks first (they build ``d s``), then key blocks."""
    need_q, need_k, need_v, need_qp, need_kp = needs
    B, H, M, _ = q.shape
    N, Dv = k.shape[2], v.shape[-1]
    Lb = block_length(B * H, max(M, N), q.device)
    grads = _grad_buffers(q, k, v, q_prop, needs, cdtype)
    gs = None
    st = s.transpose(-1, -2)
    for i in range(0, M, Lb):
        j = min(i + Lb, M)
        xq, fq, wq = query_block(phi, q, q_prop, i, j, cdtype)
        gb = grad_rows(i, j)
        if need_q or need_qp:
            gfq, gwq = split_grad(gb @ st, fq, wq, need_qp)
            _store_query_grads(grads, i, j, phi, xq, fq, wq, gfq, gwq)
        fq2 = doubled(fq, wq).transpose(-1, -2)
        gs = fq2 @ gb if gs is None else _acc_matmul(gs, fq2, gb)
    if not (need_k or need_v or need_kp):
        return grads
    gst = gs.transpose(-1, -2)
    for i in range(0, N, Lb):
        j = min(i + Lb, N)
        pb = take_rows(pad, i, j)
        xk, fk, v1, wk, wk_raw = key_block(phi, k, v, k_prop, pad, i, j, cdtype, with_den)
        gv1 = doubled(fk, wk) @ gs if need_v else None
        gfk, gwk = split_grad(v1 @ gst, fk, wk, need_kp) if need_k or need_kp else (None, None)
        _store_key_grads(grads, i, j, phi, xk, fk, wk_raw, pb, gfk, gv1, gwk, Dv)
    return grads


# -- causal: chunks, in blocks of chunks ---------------------------------------

# Rows of all (batch x head) slices per block on CPU: a block's temporaries (a few
# MB) then stay in cache and are recycled by the allocator instead of being fresh
# pages of a 100 MB working set. GPUs take the whole sequence as one block.
CPU_BLOCK_ROWS = 4096


def _segments(T: int, chunk_size: int, slices: int, device: torch.device
              ) -> list[tuple[int, int, int]]:
    """``(start, stop, C)``: blocks of full chunks of ``C = min(chunk_size, T)``, then
    the ragged rest as one chunk."""
    C = min(chunk_size, T)
    full = (T // C) * C
    if device.type == "cpu":
        rows = max(C, CPU_BLOCK_ROWS // max(slices, 1) // C * C)
    else:
        rows = full
    segs = [(i, min(i + rows, full), C) for i in range(0, full, rows)]
    if full < T:
        segs.append((full, T, T - full))
    return segs


def _chunked(x: Tensor, start: int, stop: int, C: int) -> Tensor:
    """``x [b,h,T,X]`` rows ``start:stop`` -> ``[b,h,n,C,X]``."""
    return x[:, :, start:stop].unflatten(2, ((stop - start) // C, C))


def _inter_chunks(start: int, stop: int, T: int, C: int) -> tuple[int, int]:
    """``(first, w)`` for the block ``start:stop`` of a causal call without initial or
    final state: the first chunk whose state is not empty (1 in the first block: nothing
    precedes the first chunk) and the number of chunks whose key sums a later chunk reads
    (all but the last chunk of the sequence). Skipping the rest leaves every result
    unchanged: a read of an empty state adds zeros, an unread sum is never used."""
    n = (stop - start) // C
    return (1 if start == 0 else 0), (n - 1 if stop == T else n)


def causal_forward(phi, q, k, v, q_prop, k_prop, pad, cdtype, with_den, chunk_size
                   ) -> tuple[Tensor, list[Tensor | None]]:
    """``-> (out [B,H,T,P], per block the states before each of its chunks [B,H,n,2F,P],
    or None for a block that reads no state)``."""
    B, H, T, _ = q.shape
    out = None
    prevs = []
    s = None
    for start, stop, C in _segments(T, chunk_size, B * H, q.device):
        _, fq, wq = query_block(phi, q, q_prop, start, stop, cdtype)
        _, fk, v1, wk, _ = key_block(phi, k, v, k_prop, pad, start, stop, cdtype, with_den)
        L = stop - start
        qc, kc, vc = (_chunked(x, 0, L, C) for x in (fq, fk, v1))
        wqc, wkc = _chunked(wq, 0, L, C), _chunked(wk, 0, L, C)
        a = (qc @ kc.transpose(-1, -2)).mul_(wqc @ wkc.transpose(-1, -2)).tril_()
        o = a @ vc
        del a
        n = L // C
        first, w = _inter_chunks(start, stop, T, C)
        prev = None
        if w > 0:
            kv = doubled(kc[:, :, :w], wkc[:, :, :w]).transpose(-1, -2) @ vc[:, :, :w]
            prev, s = chunk_states(kv, s)
            if w < n:  # the state before the last chunk: all the sums
                prev = torch.cat((prev, s.unsqueeze(2)), dim=2)
        elif s is not None:
            prev = s.unsqueeze(2)
        if prev is not None and first < n:
            if first == 0:
                _acc_matmul(o, doubled(qc, wqc), prev)
            else:
                o[:, :, first:] += doubled(qc[:, :, first:], wqc[:, :, first:]) @ prev[:, :, first:]
        if out is None:
            out = o.new_empty(B, H, T, o.shape[-1])
        out[:, :, start:stop] = o.flatten(2, 3)
        prevs.append(prev)
    return out, prevs


def _reverse_scan_(gprev: Tensor, g_final: Tensor | None) -> tuple[Tensor, Tensor]:
    """Backward of the exclusive prefix sum over chunks, in place of ``gprev``:
    ``(d kv [B,H,n,..], d s0)`` with ``d kv_c = d final + sum_{c' > c} d prev_c'``
    and ``d s0 = d final + sum_c d prev_c``."""
    n = gprev.shape[2]
    carry = gprev[:, :, n - 1].clone()
    if g_final is None:
        gprev[:, :, n - 1] = 0.0
    else:
        gprev[:, :, n - 1] = g_final
        carry += g_final
    for c in range(n - 2, -1, -1):
        cur = gprev[:, :, c].clone()
        gprev[:, :, c] = carry
        carry += cur
    return gprev, carry


def causal_backward(phi, q, k, v, q_prop, k_prop, pad, cdtype, with_den, prevs, grad_rows,
                    chunk_size, needs):
    """Gradients of :func:`causal_forward`, as :func:`bidirectional_backward` returns
    them. Blocks are visited last to first, carrying the gradient of the state."""
    need_qp, need_kp = needs[3], needs[4]
    B, H, T, _ = q.shape
    grads = _grad_buffers(q, k, v, q_prop, needs, cdtype)
    g_s = None
    segs = _segments(T, chunk_size, B * H, q.device)
    for (start, stop, C), prev in reversed(list(zip(segs, prevs))):
        xq, fq, wq = query_block(phi, q, q_prop, start, stop, cdtype)
        pb = take_rows(pad, start, stop)
        xk, fk, v1, wk, wk_raw = key_block(phi, k, v, k_prop, pad, start, stop, cdtype, with_den)
        L = stop - start
        qc, kc, vc = (_chunked(x, 0, L, C) for x in (fq, fk, v1))
        gc = _chunked(grad_rows(start, stop), 0, L, C)
        wqc, wkc = _chunked(wq, 0, L, C), _chunked(wk, 0, L, C)
        # inside the chunks
        qk = qc @ kc.transpose(-1, -2)
        K = wqc @ wkc.transpose(-1, -2)
        gv1 = (qk * K).tril_().transpose(-1, -2) @ gc
        ga = (gc @ vc.transpose(-1, -2)).tril_()
        gqk = ga * K
        del K
        gfq = gqk @ kc
        gfk = gqk.transpose(-1, -2) @ qc
        del gqk
        e = ga.mul_(qk)
        del qk
        gwq = e @ wkc if need_qp else None
        gwk = e.transpose(-1, -2) @ wqc if need_kp else None
        del e, ga
        # across chunks: the reads of the previous states, then the writes that built them
        # (only those :func:`causal_forward` made)
        n = L // C
        first, w = _inter_chunks(start, stop, T, C)
        gwq_s = gwk_s = None
        if prev is not None and first < n:
            _, gwq_s = split_grad(gc[:, :, first:] @ prev[:, :, first:].transpose(-1, -2),
                                  qc[:, :, first:], wqc[:, :, first:], need_qp,
                                  acc=gfq[:, :, first:])
            gprev = doubled(qc[:, :, first:], wqc[:, :, first:]).transpose(-1, -2) \
                @ gc[:, :, first:]
            if first:
                gprev = torch.cat((torch.zeros_like(gprev[:, :, :first]), gprev), dim=2)
            gkv, g_s = _reverse_scan_(gprev, g_s)
        elif w > 0:  # nothing read here; the state still reaches later blocks
            gkv = g_s.unsqueeze(2).expand(*g_s.shape[:2], w, *g_s.shape[2:])
        if w > 0:
            gkv = gkv[:, :, :w]
            gv1[:, :, :w] += doubled(kc[:, :, :w], wkc[:, :, :w]) @ gkv
            _, gwk_s = split_grad(vc[:, :, :w] @ gkv.transpose(-1, -2), kc[:, :, :w],
                                  wkc[:, :, :w], need_kp, acc=gfk[:, :, :w])
            del gkv
        if gwq is not None and gwq_s is not None:
            gwq[:, :, first:] += gwq_s
        if gwk is not None and gwk_s is not None:
            gwk[:, :, :w] += gwk_s
        flat = [None if x is None else x.flatten(2, 3) for x in (gfq, gfk, gv1, gwq, gwk)]
        _store_query_grads(grads, start, stop, phi, xq, fq, wq, flat[0], flat[3])
        _store_key_grads(grads, start, stop, phi, xk, fk, wk_raw, pb, flat[1], flat[2],
                         flat[4], v.shape[-1])
    return grads
