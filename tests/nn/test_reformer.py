"""Reformer: LSH attention with shared queries and keys."""

import pytest
import torch

from leapformer.nn.mechanisms.reformer import Reformer


def _qkv(B=2, H=2, N=12, D=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, N, D, generator=g, dtype=dtype) for _ in range(3)]


def _shared_qk_softmax(q, v, allowed):
    """Softmax of ``q_i . q_j / ||q_j||`` over ``allowed``; self excluded unless alone."""
    n = q.shape[2]
    scores = q @ torch.nn.functional.normalize(q, dim=-1).transpose(-1, -2)
    eye = torch.eye(n, dtype=torch.bool)
    others = allowed & ~eye
    alone = ~others.any(-1, keepdim=True)
    w = torch.softmax(scores.masked_fill(~(others | (alone & eye)), float("-inf")), -1)
    return w @ v, w


def test_bucket_assignment_is_deterministic_given_the_seed():
    q, _, _ = _qkv(N=64, dtype=torch.float32)
    a, b = Reformer(2, 8, seed=3), Reformer(2, 8, seed=3)
    ba = a.buckets(q)
    assert ba.shape == (2, 2, 2, 64) and ba.dtype == torch.long
    assert ba.min() >= 0 and ba.max() < a.buckets_for(64) == 4  # 2 * ceil(64 / 32)
    assert torch.equal(ba, b.buckets(q)) and torch.equal(ba, a.buckets(q))
    assert not torch.equal(ba, Reformer(2, 8, seed=4).buckets(q))
    assert Reformer(2, 8, num_buckets=6, num_hashes=3).buckets(q).shape == (2, 2, 3, 64)
    assert Reformer(2, 8, bucket_size=4).buckets_for(13) == 8
    o1 = a(q, q, q)[0]
    torch.testing.assert_close(o1, b(q, q, q)[0])


def test_one_chunk_one_hash_is_shared_qk_softmax():
    q, k, v = _qkv(N=10)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[1, 6:] = True
    mask[1, :5] = True  # item 1: a single valid token (position 5), which attends to itself
    mech = Reformer(2, 8, num_hashes=1, bucket_size=16)
    o, w = mech(q, k, v, key_padding_mask=mask, need_weights=True)
    ref_o, ref_w = _shared_qk_softmax(q, v, (~mask)[:, None, None, :].expand(2, 2, 10, 10))
    torch.testing.assert_close(o[0], ref_o[0])
    torch.testing.assert_close(w[0], ref_w[0])
    torch.testing.assert_close(o[1, :, 5], v[1, :, 5])
    assert (w[0].diagonal(dim1=-2, dim2=-1) == 0).all()


def test_matches_a_dense_reference_of_the_chunks():
    q, k, v = _qkv(N=16)
    mech = Reformer(2, 8, num_hashes=1, bucket_size=4, seed=1)
    o, w = mech(q, k, v, need_weights=True)
    buckets = mech.buckets(q)[:, :, 0]  # [B,H,N]
    order = (buckets * 16 + torch.arange(16)).argsort(-1)
    chunk = torch.empty_like(order).scatter_(-1, order, torch.arange(16).expand(2, 2, 16) // 4)
    ci, cj = chunk[..., :, None], chunk[..., None, :]
    allowed = (ci == cj) | (cj == (ci - 1) % 4)
    ref_o, ref_w = _shared_qk_softmax(q, v, allowed)
    torch.testing.assert_close(w, ref_w)
    torch.testing.assert_close(o, ref_o)


def test_padding_gets_no_weight_and_does_not_matter():
    q, k, v = _qkv(N=21)
    mask = torch.zeros(2, 21, dtype=torch.bool)
    mask[1, 13:] = True
    mask[0, 2] = True  # padding need not be at the end
    mech = Reformer(2, 8, num_hashes=3, bucket_size=4)
    o, w = mech(q, k, v, key_padding_mask=mask, need_weights=True)
    keep = ~mask
    rows = keep[:, None, :, None] & mask[:, None, None, :]  # valid query, padded key
    assert (w.masked_select(rows) == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 21, dtype=torch.float64))
    torch.testing.assert_close(o, w @ v)
    q2, v2 = q.clone(), v.clone()
    q2[mask[:, None, :].expand(2, 2, 21)] = 7.0
    v2[mask[:, None, :].expand(2, 2, 21)] = 1e3
    o2 = mech(q2, torch.randn_like(k), v2, key_padding_mask=mask)[0]  # k is ignored
    torch.testing.assert_close(o2[0][:, keep[0]], o[0][:, keep[0]])
    torch.testing.assert_close(o2[1][:, keep[1]], o[1][:, keep[1]])


def test_self_excluded_with_several_hashes():
    q, k, v = _qkv(N=24)
    _, w = Reformer(2, 8, num_hashes=2, bucket_size=4)(q, k, v, need_weights=True)
    assert (w.diagonal(dim1=-2, dim2=-1) == 0).all()


@pytest.mark.parametrize("hashes", [1, 2])
def test_single_token(hashes):
    q, k, v = _qkv(N=1)
    o, w = Reformer(2, 8, num_hashes=hashes)(q, k, v, need_weights=True)
    torch.testing.assert_close(o, v)
    torch.testing.assert_close(w, torch.ones(2, 2, 1, 1, dtype=torch.float64))


def test_gradients_flow_and_half_precision():
    q, k, v = (x.requires_grad_() for x in _qkv(N=50, dtype=torch.float32))
    mask = torch.zeros(2, 50, dtype=torch.bool)
    mask[0, 40:] = True
    mech = Reformer(2, 8, bucket_size=8, dropout=0.1).train()
    o, _ = mech(q, k, v, key_padding_mask=mask)
    o.sum().backward()
    for x in (q, v):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    ob, _ = mech.eval()(*(x.detach().bfloat16() for x in (q, k, v)), key_padding_mask=mask)
    assert ob.dtype == torch.bfloat16 and torch.isfinite(ob).all()


def test_encoder_only_and_option_checks():
    q, k, v = _qkv(N=4)
    with pytest.raises(ValueError, match="not causal attention"):
        Reformer(2, 8)(q, k, v, causal=True)
    with pytest.raises(ValueError, match="num_buckets must be even"):
        Reformer(2, 8, num_buckets=5)
