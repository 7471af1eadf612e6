"""Every fast form equals the parallel oracle: values and gradients."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from leapformer.ops import cosformer_attention, leap_attention, linear_attention

from .helpers import make_inputs

LENGTHS = [1, 7, 64, 65, 300]


def _run(kind, mode, q, k, v, qp, kp, **kw):
    if kind == "leap":
        return leap_attention(q, k, v, qp, kp, mode=mode, **kw)
    if kind == "cosformer":
        return cosformer_attention(q, k, v, mode=mode, **kw)
    return linear_attention(q, k, v, feature_map=kind, mode=mode, **kw)


def _grads(out, inputs, seed=0):
    g = torch.Generator().manual_seed(seed)
    cot = torch.randn(out.shape, generator=g, dtype=out.dtype)
    return torch.autograd.grad(out, inputs, cot, allow_unused=True)


def _check(kind, mode, causal, B, H, T, S, D, Dv, chunk, pad, seed):
    q, k, v, qp, kp, mask = make_inputs(B, H, T, S, D, Dv, seed=seed, grad=True,
                                        pad_lengths=pad)
    kw = dict(causal=causal, key_padding_mask=mask)
    ref = _run(kind, "parallel", q, k, v, qp, kp, **kw)
    if mode == "chunk":
        kw["chunk_size"] = chunk
    got = _run(kind, mode, q, k, v, qp, kp, **kw)
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-10)
    inputs = (q, k, v, qp, kp) if kind == "leap" else (q, k, v)
    for a, b in zip(_grads(got, inputs, seed), _grads(ref, inputs, seed)):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("kind", ["leap", "relu", "elu", "cosformer"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T", LENGTHS)
def test_chunk_equals_parallel(kind, causal, T):
    pad = [T, max(1, T - 3)]
    _check(kind, "chunk", causal, 2, 2, T, T, 8, 5, 16, pad, seed=T)


@pytest.mark.parametrize("kind", ["leap", "relu"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T", [1, 7, 65])
def test_recurrent_equals_parallel(kind, causal, T):
    _check(kind, "recurrent", causal, 2, 2, T, T, 6, 3, 0, [T, max(1, T // 2)], seed=T + 1)


@pytest.mark.parametrize("chunk", [1, 3, 16, 63, 64, 500])
def test_chunk_sizes_that_do_not_divide(chunk):
    _check("leap", "chunk", True, 1, 2, 300, 300, 8, 8, chunk, None, seed=chunk)


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
@pytest.mark.parametrize("M,N", [(1, 9), (9, 1), (5, 70), (70, 5)])
def test_cross_attention_lengths(mode, M, N):
    _check("leap", mode, False, 2, 1, M, N, 4, 3, 16, [N, max(1, N - 2)], seed=M * N)


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 2), H=st.integers(1, 3), T=st.integers(1, 90), D=st.integers(1, 9),
    Dv=st.integers(1, 9), chunk=st.integers(1, 40), causal=st.booleans(),
    kind=st.sampled_from(["leap", "relu", "elu", "cosformer"]), seed=st.integers(0, 10_000),
    pad_frac=st.floats(0.0, 0.9),
)
def test_random_shapes(B, H, T, D, Dv, chunk, causal, kind, seed, pad_frac):
    keep = max(1, int(round(T * (1 - pad_frac))))
    pad = [T] + [keep] * (B - 1)
    _check(kind, "chunk", causal, B, H, T, T, D, Dv, chunk, pad, seed)


@pytest.mark.parametrize("mode", ["auto", "parallel", "chunk", "recurrent"])
def test_padded_keys_do_not_leak(mode):
    """Garbage (even NaN) at padded positions changes nothing."""
    q, k, v, qp, kp, mask = make_inputs(2, 2, 10, 10, 4, pad_lengths=[10, 6])
    ref = leap_attention(q, k, v, qp, kp, key_padding_mask=mask, mode=mode)
    k2, v2, kp2 = k.clone(), v.clone(), kp.clone()
    k2[1, :, 6:] = float("nan")
    v2[1, :, 6:] = 1e6
    kp2[1, :, 6:] = float("nan")
    got = leap_attention(q, k2, v2, qp, kp2, key_padding_mask=mask, mode=mode)
    torch.testing.assert_close(got, ref)
    alone = leap_attention(q[1:, :], k[1:, :, :6], v[1:, :, :6], qp[1:], kp[1:, :, :6], mode=mode)
    torch.testing.assert_close(ref[1:], alone)


def test_auto_uses_an_exact_form():
    q, k, v, qp, kp, _ = make_inputs(1, 2, 33, 33, 4)
    for causal in (False, True):
        ref = leap_attention(q, k, v, qp, kp, causal=causal, mode="parallel")
        torch.testing.assert_close(leap_attention(q, k, v, qp, kp, causal=causal), ref)


@pytest.mark.parametrize("T,C", [(5, 8), (8, 8), (16, 8), (19, 8)])
def test_chunk_forward_without_final_state(T, C):
    """``want_state=False`` gives the same output (to the bit) and no state; with an initial
    state the first chunk reads it, and the final state, when wanted, includes it."""
    from leapformer.ops.linear_chunk import chunk_forward

    g = torch.Generator().manual_seed(T)
    fq, fk = (torch.rand(2, 3, T, 4, generator=g, dtype=torch.float64) for _ in range(2))
    v1 = torch.randn(2, 3, T, 5, generator=g, dtype=torch.float64)
    s0 = torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64)
    for init in (None, s0):
        full, final = chunk_forward(fq, fk, v1, causal=True, s0=init, chunk_size=C)
        lean, none = chunk_forward(fq, fk, v1, causal=True, s0=init, chunk_size=C,
                                   want_state=False)
        assert none is None and torch.equal(full, lean)
        a = torch.tril(fq @ fk.transpose(-1, -2))
        want = a @ v1 + (0 if init is None else fq @ init)
        torch.testing.assert_close(full, want, rtol=1e-12, atol=1e-12)
        want_final = fk.transpose(-1, -2) @ v1 + (0 if init is None else init)
        torch.testing.assert_close(final, want_final, rtol=1e-12, atol=1e-12)
