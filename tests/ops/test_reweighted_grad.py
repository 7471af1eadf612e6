"""The hand-written backward of re-weighted attention (ops/reweighted_grad.py) against
the autograd-traced forms of ``leap_attention`` (chunk and parallel) as oracles:
values and gradients of q, k, v and both proportions, and float64 gradcheck."""

import pytest
import torch

from leapformer.ops import leap_attention
from leapformer.ops.reweighted_grad import reweighted_attention_fn

from .helpers import make_inputs

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("q", "k", "v", "q_prop", "k_prop")


def _oracle(mode, q, k, v, qp, kp, **kw):
    return leap_attention(q, k, v, qp, kp, mode=mode, check_proportions=False, **kw)


def _values_and_grads(f, inputs, go):
    out = f(*inputs)
    grads = torch.autograd.grad(out, inputs, go)
    return out, grads


def _compare(inputs, go, mask=None, atol=1e-9, rtol=1e-7, **kw):
    """Our function against the chunk and the parallel form: values and all five grads."""
    mine, g_mine = _values_and_grads(
        lambda *x: reweighted_attention_fn(*x, key_padding_mask=mask, **kw), inputs, go)
    for mode in ("chunk", "parallel"):
        want, g_want = _values_and_grads(
            lambda *x: _oracle(mode, *x, key_padding_mask=mask, **kw), inputs, go)
        torch.testing.assert_close(mine, want, atol=atol, rtol=rtol,
                                   msg=lambda m: f"output vs {mode}: {m}")
        for name, a, b in zip(NAMES, g_mine, g_want):
            torch.testing.assert_close(a, b, atol=atol, rtol=rtol,
                                       msg=lambda m: f"grad of {name} vs {mode}: {m}")
    return mine, g_mine


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("normalize", ["clamp", "eps", "none"])
@pytest.mark.parametrize("feature_map", ["relu", "elu", "identity"])
def test_matches_autograd_forms(causal, normalize, feature_map):
    # 11 keys with chunk 4: two full chunks and a ragged one; item 1 padded after 7 keys;
    # proportions shared over heads (q) and over the batch (k), so their gradients are sums
    q, k, v, qp, kp, mask = make_inputs(2, 3, 11, 11, 4, 5, seed=1, pad_lengths=[11, 7])
    qp = qp[:, :1].clone().requires_grad_()
    kp = kp[:1].clone().requires_grad_()
    inputs = (q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), qp, kp)
    if feature_map == "identity" and normalize != "none":
        # identity features can give near-zero denominators; keep q, k positive
        q.data.abs_()
        k.data.abs_()
    go = torch.randn(2, 3, 11, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    _, grads = _compare(inputs, go, mask, causal=causal, normalize=normalize,
                        feature_map=feature_map, chunk_size=4)
    # padded keys get exactly zero gradients
    for g in grads[1:3]:
        assert torch.all(g[1, :, 7:] == 0)


@pytest.mark.parametrize("causal, M, N, chunk", [
    (False, 1, 1, 64), (True, 1, 1, 64), (False, 1, 6, 4), (False, 7, 7, 3), (True, 7, 7, 3),
    (True, 9, 9, 64), (True, 13, 13, 5), (False, 13, 13, 5)])
def test_lengths(causal, M, N, chunk):
    q, k, v, qp, kp, _ = make_inputs(1, 2, M, N, 3, 2, seed=M + N, grad=True)
    go = torch.randn(1, 2, M, 2, dtype=torch.float64)
    _compare((q, k, v, qp, kp), go, causal=causal, chunk_size=chunk, normalize="eps")


def test_cross_attention_with_padding():
    q, k, v, qp, kp, mask = make_inputs(3, 2, 5, 9, 4, 3, seed=7, grad=True, pad_lengths=[9, 1, 4])
    go = torch.randn(3, 2, 5, 3, dtype=torch.float64)
    _compare((q, k, v, qp, kp), go, mask)


@pytest.mark.parametrize("causal", [False, True])
def test_padding_does_not_leak(causal):
    q, k, v, qp, kp, mask = make_inputs(2, 2, 6, 6, 3, 2, seed=3, pad_lengths=[6, 4])
    for t in (k, v):
        t[1, :, 4:] = float("nan")
    kp[1, :, 4:] = float("nan")
    leaves = [t.requires_grad_() for t in (q, k, v, qp, kp)]
    out = reweighted_attention_fn(*leaves, key_padding_mask=mask, causal=causal, chunk_size=4)
    assert not out.isnan().any()
    grads = torch.autograd.grad(out.sum(), leaves)
    for name, g in zip(NAMES, grads):
        assert not g.isnan().any(), name
    assert torch.all(grads[1][1, :, 4:] == 0) and torch.all(grads[2][1, :, 4:] == 0)
    assert torch.all(grads[4][1, :, 4:] == 0)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("feature_map", ["relu", "elu"])
def test_gradcheck(causal, feature_map):
    q, k, v, qp, kp, mask = make_inputs(2, 2, 7, 7, 3, 2, grad=True, seed=11, pad_lengths=[7, 5])
    q.data.abs_()  # stay away from the ReLU kink and the clamp, where gradients jump
    k.data.abs_()

    def f(q, k, v, qp, kp):
        return reweighted_attention_fn(q, k, v, qp, kp, causal=causal, key_padding_mask=mask,
                                       feature_map=feature_map, chunk_size=3, normalize="clamp")

    assert torch.autograd.gradcheck(f, (q, k, v, qp, kp))


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_identity_none(causal):
    q, k, v, qp, kp, _ = make_inputs(1, 2, 6, 6, 3, 2, grad=True, seed=12)

    def f(q, k, v, qp, kp):
        return reweighted_attention_fn(q, k, v, qp, kp, causal=causal, feature_map="identity",
                                       normalize="none", chunk_size=4)

    assert torch.autograd.gradcheck(f, (q, k, v, qp, kp))


def test_float32_and_partial_grads():
    """float32 inputs (float32 compute): close to the chunk form; proportions without
    gradients (cosFormer's case) and a query-only gradient still work."""
    q, k, v, qp, kp, mask = make_inputs(2, 4, 70, 70, 8, dtype=torch.float32, seed=4,
                                        pad_lengths=[70, 33])
    q.requires_grad_()
    v.requires_grad_()
    for causal in (False, True):
        mine = reweighted_attention_fn(q, k, v, qp, kp, causal=causal, key_padding_mask=mask)
        want = _oracle("chunk", q, k, v, qp, kp, causal=causal, key_padding_mask=mask)
        assert mine.dtype == torch.float32
        torch.testing.assert_close(mine, want, atol=1e-5, rtol=1e-4)
        ga = torch.autograd.grad(mine.square().sum(), (q, v))
        gb = torch.autograd.grad(want.square().sum(), (q, v))
        for a, b in zip(ga, gb):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_bfloat16_inputs_give_bfloat16_outputs_and_grads():
    q, k, v, qp, kp, _ = make_inputs(1, 2, 9, 9, 4, dtype=torch.float32, seed=8)
    leaves = [t.to(torch.bfloat16).requires_grad_() for t in (q, k, v, qp, kp)]
    out = reweighted_attention_fn(*leaves, causal=True, chunk_size=4)
    assert out.dtype == torch.bfloat16
    want = _oracle("chunk", q, k, v, qp, kp, causal=True, chunk_size=4)
    torch.testing.assert_close(out.float(), want, atol=5e-2, rtol=5e-2)
    grads = torch.autograd.grad(out.float().sum(), leaves)
    assert [g.dtype for g in grads] == [torch.bfloat16] * 5


def test_bad_arguments():
    q, k, v, qp, kp, _ = make_inputs(1, 1, 4, 4, 2)
    with pytest.raises(ValueError, match="normalize"):
        reweighted_attention_fn(q, k, v, qp, kp, normalize="max")
    with pytest.raises(ValueError, match="feature_map"):
        reweighted_attention_fn(q, k, v, qp, kp, feature_map="favor")
    with pytest.raises(TypeError, match="feature_map"):
        reweighted_attention_fn(q, k, v, qp, kp, feature_map=torch.sigmoid)
    with pytest.raises(ValueError, match="k_prop"):
        reweighted_attention_fn(q, k, v, qp, kp[..., :3])
    with pytest.raises(ValueError, match="chunk_size"):
        reweighted_attention_fn(q, k, v, qp, kp, chunk_size=0)
    with pytest.raises(TypeError, match="causal"):
        reweighted_attention_fn(q, k, v, qp, kp, causal=1)


@pytest.mark.parametrize("causal", [False, True])
def test_many_blocks(monkeypatch, causal):
    """Small blocks (3 rows bidirectional; causal 2 chunks of 2 per block) so that
    states and state gradients are carried across blocks, ragged last ones included."""
    from leapformer.ops import reweighted_forms

    monkeypatch.setattr(reweighted_forms, "block_length", lambda slices, length, device: 3)
    monkeypatch.setattr(reweighted_forms, "CPU_BLOCK_ROWS", 4 * 2 * 2)  # B*H = 4 slices
    q, k, v, qp, kp, mask = make_inputs(2, 2, 11, 11, 3, 2, seed=21, grad=True,
                                        pad_lengths=[11, 6])
    go = torch.randn(2, 2, 11, 2, dtype=torch.float64)
    _compare((q, k, v, qp, kp), go, mask, causal=causal, chunk_size=2)
    assert len(reweighted_forms._segments(11, 2, 4, q.device)) == 4  # 3 blocks + ragged


@pytest.mark.parametrize("causal", [False, True])
def test_non_contiguous_inputs(causal):
    """q, k, v as a model makes them ([B, L, H, D] transposed) and proportions
    broadcast from [B, 1, L]."""
    g = torch.Generator().manual_seed(31)
    q, k, v = (torch.randn(2, 9, 3, 4, dtype=torch.float64, generator=g).transpose(1, 2)
               .requires_grad_() for _ in range(3))
    qp, kp = (torch.rand(2, 1, 9, dtype=torch.float64, generator=g).requires_grad_()
              for _ in range(2))
    go = torch.randn(2, 9, 3, 4, dtype=torch.float64, generator=g).transpose(1, 2)
    assert not (q.is_contiguous() or go.is_contiguous())
    _compare((q, k, v, qp, kp), go, causal=causal, chunk_size=4)


@pytest.mark.parametrize("T", [2, 4, 8, 9])
def test_blocks_of_one_chunk(monkeypatch, T):
    """Every block one chunk (what MQAR's batches give on CPU): the first block reads no
    state, the last forms no key sums; a first block that is not the last, a last full
    block with no ragged rest (T = 4, 8), a ragged one (T = 9) and a single chunk (T = 2)."""
    from leapformer.ops import reweighted_forms

    monkeypatch.setattr(reweighted_forms, "CPU_BLOCK_ROWS", 4)  # 4 slices: one chunk a block
    q, k, v, qp, kp, mask = make_inputs(2, 2, T, T, 3, 2, seed=30 + T, grad=True,
                                        pad_lengths=[T, max(1, T - 3)])
    go = torch.randn(2, 2, T, 2, dtype=torch.float64)
    _compare((q, k, v, qp, kp), go, mask, causal=True, chunk_size=2)
    assert all(stop - start <= 2 for start, stop, _ in reweighted_forms._segments(T, 2, 4, q.device))
