"""Informer ProbSparse attention against softmax attention and the mean of the values."""

import math

import pytest
import torch

from leapformer.nn.mechanisms.informer import Informer
from leapformer.ops import softmax_attention


def _qkv(B=2, H=2, N=12, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, N, D, generator=g, dtype=torch.float64) for _ in range(3)]


def _mask(N, lengths):
    return torch.arange(N)[None, :] >= torch.tensor(lengths)[:, None]


def test_num_active():
    mech = Informer(1, 8, factor=5)
    assert [mech.num_active(n) for n in (1, 2, 3, 10, 11, 100, 4096)] == [1, 2, 3, 10, 11, 25, 45]
    assert Informer(1, 8, factor=1).num_active(4096) == math.ceil(math.log(4096))


@pytest.mark.parametrize("N", [3, 11])
def test_all_active_equals_softmax_with_padding(N):
    q, k, v = _qkv(N=N)
    mask = _mask(N, [N, N - 2])
    mech = Informer(2, 8).double()
    assert mech.num_active(N) >= N
    o, w = mech(q, k, v, key_padding_mask=mask, need_weights=True)
    ref = softmax_attention(q, k, v, key_padding_mask=mask)
    torch.testing.assert_close(o, ref)
    torch.testing.assert_close(w @ v, ref)


def test_sampled_keys_are_valid_and_deterministic():
    N = 40
    mask = _mask(N, [N, 17])
    mech = Informer(2, 8, factor=2, seed=4)
    idx = mech.sampled_keys(N, mask)
    assert idx.shape == (2, N, mech.num_active(N)) == (2, N, 8)
    assert idx.dtype == torch.long and (idx >= 0).all() and (idx[0] < N).all()
    assert (idx[1] < 17).all()
    assert torch.equal(idx, Informer(2, 8, factor=2, seed=4).sampled_keys(N, mask))
    assert not torch.equal(idx, Informer(2, 8, factor=2, seed=5).sampled_keys(N, mask))
    assert torch.equal(idx[0], mech.sampled_keys(N)[0])  # unpadded item: no mask, same draws


def test_selection_is_top_sparsity_measurement_and_outputs():
    N, D = 50, 8
    q, k, v = _qkv(N=N, D=D, seed=2)
    mask = _mask(N, [N, 37])
    mech = Informer(2, D, factor=2, seed=1).double()
    u = mech.num_active(N)
    assert u == 8  # < 37 valid queries
    active = mech.active_queries(q, k, mask)
    assert active.shape == (2, 2, u)
    assert (active[1] < 37).all()  # padded queries are not selected while valid ones remain
    # M computed here from the same sample
    idx = mech.sampled_keys(N, mask)  # [B,N,U]
    b = torch.arange(2)[:, None, None]
    ks = k.permute(0, 2, 1, 3)[b, idx]  # [B,N,U,H,D]
    dots = torch.einsum("bhnd,bnuhd->bhnu", q, ks) / D ** 0.5
    measure = (dots.amax(-1) - dots.mean(-1)).masked_fill(mask[:, None, :], float("-inf"))
    expected = measure.topk(u, -1).indices
    assert torch.equal(active.sort(-1).values, expected.sort(-1).values)

    o, w = mech(q, k, v, key_padding_mask=mask, need_weights=True)
    full = softmax_attention(q, k, v, key_padding_mask=mask)
    keep = (~mask)[:, None, :, None].double()
    mean = (v * keep).sum(2) / keep.sum(2)  # [B,H,D]
    sel = torch.zeros(2, 2, N, dtype=torch.bool).scatter(2, active, True)
    ref = torch.where(sel[..., None], full, mean[:, :, None, :])
    torch.testing.assert_close(o, ref)
    torch.testing.assert_close(w @ v, ref)
    assert (w[1, :, :, 37:] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, N, dtype=torch.float64))
    # deterministic, and padded positions change nothing at valid ones
    torch.testing.assert_close(mech(q, k, v, key_padding_mask=mask)[0], o)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[1, :, 37:] = 1e3
    o2, _ = mech(q2, k2, v2, key_padding_mask=mask)
    torch.testing.assert_close(o2[:, :, :37], o[:, :, :37])
    torch.testing.assert_close(o2[0], o[0])


def test_single_token_and_float32():
    mech = Informer(2, 8)
    q, k, v = (t.float() for t in _qkv(N=1))
    o, _ = mech(q, k, v)
    torch.testing.assert_close(o, v)
    q, k, v = (t.float() for t in _qkv(N=60))
    o, _ = mech(q, k, v, key_padding_mask=_mask(60, [60, 1]))
    assert o.dtype == torch.float32 and o.shape == v.shape and torch.isfinite(o).all()
    torch.testing.assert_close(o[1, :, :1], v[1, :, :1])


def test_gradients_flow_and_encoder_only():
    q, k, v = (t.float().requires_grad_() for t in _qkv(N=64))
    mech = Informer(2, 8, factor=2, dropout=0.1)
    o, _ = mech(q, k, v, key_padding_mask=_mask(64, [64, 40]))
    o.square().sum().backward()
    for t in (q, k, v):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not causal"):
        mech(q, k, v, causal=True)
    with pytest.raises(ValueError, match="not cross-attention"):
        mech(q, k[:, :, :5], v[:, :, :5])
