"""The cache-blocked bidirectional inference path equals the parallel oracle."""

import pytest
import torch

import leapformer.ops.attention as attention_module
from leapformer.ops import (
    LinearAttentionState,
    cosformer_attention,
    leap_attention,
    linear_attention,
)
from leapformer.ops import linear_blocked
from leapformer.ops.feature_maps import relu
from leapformer.ops.linear_blocked import block_length, blocked_bidirectional

from .helpers import make_inputs


def _run(kind, mode, q, k, v, qp, kp, **kw):
    if kind == "leap":
        return leap_attention(q, k, v, qp, kp, mode=mode, **kw)
    if kind == "cosformer":
        return cosformer_attention(q, k, v, mode=mode, **kw)
    if kind == "identity":
        return linear_attention(q, k, v, feature_map=kind, mode=mode, normalize="none", **kw)
    return linear_attention(q, k, v, feature_map=kind, mode=mode, **kw)


@pytest.fixture
def small_blocks(monkeypatch):
    """Force blocks of 8 rows so that every test crosses block boundaries."""
    monkeypatch.setattr(linear_blocked, "CPU_BLOCK_ROWS", 8)
    monkeypatch.setattr(linear_blocked, "MIN_BLOCK", 8)


@pytest.fixture
def spy(monkeypatch):
    calls = []
    real = attention_module.blocked_bidirectional

    def wrapped(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(attention_module, "blocked_bidirectional", wrapped)
    return calls


@pytest.mark.parametrize("kind", ["leap", "cosformer", "relu", "elu", "identity"])
@pytest.mark.parametrize("M,N", [(1, 1), (7, 7), (65, 65), (300, 300), (5, 41), (41, 3)])
def test_blocked_equals_parallel(kind, M, N, small_blocks, spy):
    if kind == "cosformer" and M != N:
        M = N
    q, k, v, qp, kp, mask = make_inputs(2, 3, M, N, 8, 5, seed=M * 31 + N,
                                        pad_lengths=[N, max(1, N - 4)])
    ref = _run(kind, "parallel", q, k, v, qp, kp, key_padding_mask=mask)
    with torch.no_grad():
        got = _run(kind, "chunk", q, k, v, qp, kp, key_padding_mask=mask)
    assert len(spy) == 1, "no_grad bidirectional chunk call must take the blocked path"
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("normalize,eps", [("clamp", None), ("clamp", 0.5), ("eps", None),
                                           ("eps", 0.3), ("none", None)])
def test_normalisations(normalize, eps, small_blocks, spy):
    q, k, v, qp, kp, _ = make_inputs(1, 2, 33, 29, 4, seed=3)
    kw = dict(normalize=normalize, eps=eps)
    ref = leap_attention(q, k, v, qp, kp, mode="parallel", **kw)
    got = leap_attention(q, k, v, qp, kp, mode="auto", **kw)  # no input requires grad
    assert len(spy) == 1
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-11)


def test_shared_proportions_broadcast(small_blocks, spy):
    q, k, v, _, _, _ = make_inputs(2, 3, 20, 20, 4, seed=4)
    qp, kp = torch.rand(1, 3, 20, dtype=q.dtype), torch.rand(2, 1, 20, dtype=q.dtype)
    ref = leap_attention(q, k, v, qp, kp, mode="parallel")
    got = leap_attention(q, k, v, qp, kp)
    assert len(spy) == 1
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("kind", ["leap", "relu"])
def test_states_in_and_out_match_chunk_form(kind, small_blocks, spy):
    q, k, v, qp, kp, mask = make_inputs(2, 2, 19, 23, 6, 3, seed=5, pad_lengths=[23, 10])
    G = 2 if kind == "leap" else 1
    s0 = LinearAttentionState(torch.rand(2, 2, G, 6, 8, dtype=q.dtype), 3)
    kw = dict(key_padding_mask=mask, initial_state=s0, output_final_state=True)
    with torch.enable_grad():
        q.requires_grad_(True)  # forces the autograd-traced chunk path
        ref_o, ref_s = _run(kind, "chunk", q, k, v, qp, kp, **kw)
        q.requires_grad_(False)
    assert not spy
    got_o, got_s = _run(kind, "chunk", q, k, v, qp, kp, **kw)
    assert len(spy) == 1
    torch.testing.assert_close(got_o, ref_o.detach(), rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(got_s.s, ref_s.s.detach(), rtol=1e-10, atol=1e-11)
    assert got_s.value_dim == 3


def test_gradients_take_the_traced_path(spy):
    q, k, v, qp, kp, _ = make_inputs(1, 2, 9, 9, 4, seed=6, grad=True)
    out = leap_attention(q, k, v, qp, kp)
    assert not spy
    out.sum().backward()
    assert q.grad is not None and qp.grad is not None


def test_favor_and_causal_do_not_take_it(spy):
    from leapformer.ops import FavorPlus, draw_projection

    q, k, v, qp, kp, _ = make_inputs(1, 2, 9, 9, 4, seed=7, dtype=torch.float32)
    favor = FavorPlus(draw_projection(6, 4, generator=torch.Generator().manual_seed(0)))
    linear_attention(q, k, v, feature_map=favor)
    leap_attention(q, k, v, qp, kp, causal=True)
    assert not spy


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_in_float32_out_in_input_dtype(dtype, small_blocks):
    q, k, v, qp, kp, mask = make_inputs(2, 2, 30, 30, 8, seed=8, pad_lengths=[30, 20])
    ref = leap_attention(q, k, v, qp, kp, key_padding_mask=mask, mode="parallel")
    args = [t.to(dtype) for t in (q, k, v, qp, kp)]
    got = leap_attention(*args, key_padding_mask=mask)
    assert got.dtype == dtype
    ref_low = leap_attention(*[a.double() for a in args], key_padding_mask=mask, mode="parallel")
    torch.testing.assert_close(got.double(), ref_low, rtol=1e-2 if dtype == torch.bfloat16 else 1e-5,
                               atol=1e-2 if dtype == torch.bfloat16 else 1e-5)
    if dtype == torch.float32:
        torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-5)


def test_padded_nan_does_not_leak(small_blocks):
    q, k, v, qp, kp, mask = make_inputs(2, 2, 17, 17, 4, seed=9, pad_lengths=[17, 11])
    k[1, :, 11:] = float("nan")
    v[1, :, 11:] = float("inf")
    got = leap_attention(q, k, v, qp, kp, key_padding_mask=mask)
    assert torch.isfinite(got).all()
    ref = leap_attention(q, k, v, qp, kp, key_padding_mask=mask, mode="parallel")
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-11)


def test_direct_call_with_explicit_block_and_inputs_untouched():
    q, k, v, qp, kp, _ = make_inputs(1, 2, 50, 50, 4, seed=10)
    before = [t.clone() for t in (q, k, v, qp, kp)]
    ref = leap_attention(q, k, v, qp, kp, mode="parallel")
    for block in (1, 7, 50, 64):
        got, _ = blocked_bidirectional(q, k, v, qp, kp, feature_map=relu,
                                       key_padding_mask=None, s0=None, normalize="clamp",
                                       eps=0.1, cdtype=torch.float64, block=block)
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-11)
    for a, b in zip(before, (q, k, v, qp, kp)):
        assert torch.equal(a, b)


def test_block_length_bounds():
    cpu = torch.device("cpu")
    assert block_length(8, 16384, cpu, threads=1) == 512
    assert block_length(8, 16384, cpu, threads=2) == 1024  # a thread's share stays 512 rows
    assert block_length(1, 16384, cpu, threads=1) == linear_blocked.MAX_BLOCK
    assert block_length(1, 16384, cpu, threads=4) == 4 * linear_blocked.MAX_BLOCK
    assert block_length(10_000, 100, cpu, threads=2) == linear_blocked.MIN_BLOCK
    assert block_length(8, 300, torch.device("meta")) == 300
    assert block_length(8, 100, cpu, threads=64) == 100  # capped at the sequence length
    assert block_length(8, 40, cpu, threads=1) == 40
    threads = torch.get_num_threads()
    assert block_length(8, 16384, cpu) == block_length(8, 16384, cpu, threads=threads)
