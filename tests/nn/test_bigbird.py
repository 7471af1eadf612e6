"""BigBird block-sparse attention against dense softmax attention."""

import pytest
import torch

from leapformer.nn.mechanisms.bigbird import BigBird
from leapformer.ops import softmax_attention


def _qkv(B=2, H=2, N=12, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, N, D, generator=g, dtype=torch.float64) for _ in range(3)]


def _mask(B, N, lengths):
    return torch.arange(N)[None, :] >= torch.tensor(lengths)[:, None]


def _dense_reference(q, k, v, pattern, b, mask):
    """Softmax attention restricted to the token mask expanded from a block pattern."""
    N = q.shape[2]
    blk = torch.arange(N) // b
    allowed = pattern[:, blk][:, :, blk]  # [H,N,N]
    keep = allowed[None] & ~mask[:, None, None, :]
    s = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(~keep, float("-inf"))
    return torch.softmax(s, -1) @ v


@pytest.mark.parametrize("N,block_size,r", [(12, 4, 3), (11, 4, 0), (5, 8, 3), (20, 4, 3)])
def test_covered_blocks_equal_softmax_with_padding(N, block_size, r):
    # nb <= 3 (window + global cover all), or nb = 5 with random blocks
    q, k, v = _qkv(N=N)
    mask = _mask(2, N, [N, N - 3])
    mech = BigBird(2, 8, block_size=block_size, num_random_blocks=r).double()
    o, w = mech(q, k, v, key_padding_mask=mask, need_weights=True)
    ref = softmax_attention(q, k, v, key_padding_mask=mask)
    torch.testing.assert_close(o, ref)
    torch.testing.assert_close(w @ v, ref)
    assert (w[1, :, :, N - 3:] == 0).all()


def test_block_pattern_deterministic_and_counts():
    mech = BigBird(3, 8, block_size=4, num_random_blocks=2, seed=7)
    nb = 10
    pat = mech.block_pattern(nb)
    assert pat.shape == (3, nb, nb) and pat.dtype == torch.bool
    assert torch.equal(pat, BigBird(3, 8, block_size=4, num_random_blocks=2,
                                    seed=7).block_pattern(nb))
    assert not torch.equal(pat, BigBird(3, 8, block_size=4, num_random_blocks=2,
                                        seed=8).block_pattern(nb))
    counts = pat.sum(-1)
    expected = torch.tensor([nb, 4 + 2] + [5 + 2] * (nb - 4) + [4 + 2, nb])
    assert torch.equal(counts, expected.expand(3, nb))
    i = torch.arange(1, nb - 1)
    for j in (i - 1, i, i + 1, torch.zeros_like(i), torch.full_like(i, nb - 1)):
        assert pat[:, i, j].all()  # window and global blocks
    assert pat[:, :, 0].all() and pat[:, :, -1].all()
    table = mech.key_blocks(nb)
    assert table.shape == (3, nb - 2, 7) and (table >= -1).all()
    # fewer free blocks than random blocks: every block attended
    assert BigBird(1, 8, num_random_blocks=5).block_pattern(6).all()


def test_sparse_output_matches_dense_pattern_with_padding():
    N, b = 37, 4  # 10 blocks, the last one internally padded
    q, k, v = _qkv(N=N, seed=1)
    mask = _mask(2, N, [N, 29])
    mech = BigBird(2, 8, block_size=b, num_random_blocks=2, seed=3).double()
    o, w = mech(q, k, v, key_padding_mask=mask, need_weights=True)
    pat = mech.block_pattern(10)
    assert not pat.all()
    ref = _dense_reference(q, k, v, pat, b, mask)
    torch.testing.assert_close(o, ref)
    torch.testing.assert_close(w @ v, ref)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, N, dtype=torch.float64))
    # padded positions change nothing at valid ones
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[1, :, 29:] = 1e3
    o2, _ = mech(q2, k2, v2, key_padding_mask=mask)
    torch.testing.assert_close(o2[:, :, :29], o[:, :, :29])
    torch.testing.assert_close(o2[0], o[0])


def test_single_token_and_float32():
    mech = BigBird(2, 8, block_size=4)
    q, k, v = (t.float() for t in _qkv(N=1))
    o, _ = mech(q, k, v)
    torch.testing.assert_close(o, v)
    q, k, v = (t.float() for t in _qkv(N=23))
    o, _ = mech(q, k, v, key_padding_mask=_mask(2, 23, [23, 1]))
    assert o.dtype == torch.float32 and o.shape == v.shape and torch.isfinite(o).all()
    torch.testing.assert_close(o[1, :, :1], v[1, :, :1].expand(2, 1, 8))


def test_gradients_flow_and_encoder_only():
    q, k, v = (t.float().requires_grad_() for t in _qkv(N=30))
    mech = BigBird(2, 8, block_size=4, num_random_blocks=1, dropout=0.1)
    o, _ = mech(q, k, v, key_padding_mask=_mask(2, 30, [30, 20]))
    o.square().sum().backward()
    for t in (q, k, v):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not causal"):
        mech(q, k, v, causal=True)
    with pytest.raises(ValueError, match="not cross-attention"):
        mech(q, k[:, :, :5], v[:, :, :5])
