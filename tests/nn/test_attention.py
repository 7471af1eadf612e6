"""MultiheadAttention against formulas written in the test from its own parameters."""

import math

import pytest
import torch
import torch.nn.functional as F

from leapformer.nn import MECHANISMS, MultiheadAttention
from leapformer.ops import FavorPlus

# the gated mechanisms' formulas (GLA decay) are checked in tests/nn/test_gated.py
FULL = sorted(name for name, cls in MECHANISMS.items()
              if cls.full and name not in ("gla", "gated-leap"))

E, H = 16, 2
D = E // H


def _proj(wb, x):
    B, T, _ = x.shape
    w, b = wb
    return (x @ w.T + b).view(B, T, H, -1).transpose(1, 2)


def _explicit(mha, query, key, mask=None, causal=False, q_len=None, k_len=None, normalise=True):
    """Normalised weights [B,H,M,N] of mha's mechanism, from its parameters."""
    wq, wk, _ = mha.projection_weights()
    q, k = _proj(wq, query), _proj(wk, key)
    M, N = q.shape[2], k.shape[2]
    mech = mha.attention
    if mech.name == "softmax":
        s = q @ k.transpose(-1, -2) / math.sqrt(D)
        keep = torch.ones(M, N, dtype=torch.bool)
        keep = keep.tril() if causal else keep
        keep = keep[None, None] & (True if mask is None else ~mask[:, None, None, :])
        return torch.softmax(s.masked_fill(~keep, -math.inf), -1)
    if mech.name == "performer":
        phi = FavorPlus(mech.projection, stabilize_keys=False)
        fq, fk = phi(q, True), phi(k, False)
    elif mech.name == "elu":
        fq, fk = F.elu(q) + 1, F.elu(k) + 1
    else:
        fq, fk = q.clamp(min=0), k.clamp(min=0)
    a = fq @ fk.transpose(-1, -2)
    if mech.name == "cosformer":
        i = torch.arange(1, M + 1.0)[None, :, None] / q_len[:, None, None]
        j = torch.arange(1, N + 1.0)[None, None, :] / k_len[:, None, None]
        a = a * torch.cos(math.pi / 2 * (i - j))[:, None]
    if mech.name == "leap":
        def net(seq, x):
            h = torch.relu(x @ seq[0].weight.T + seq[0].bias)
            return torch.sigmoid(h @ seq[2].weight.T + seq[2].bias)[..., 0]
        pq, pk = net(mech.leap_q.net, fq), net(mech.leap_k.net, fk)
        a = a * torch.cos(math.pi / 2 * (pq[..., :, None] - pk[..., None, :]))
    if causal:
        a = a.tril()
    if mask is not None:
        a = a.masked_fill(mask[:, None, None, :], 0.0)
    return a / a.sum(-1, keepdim=True).clamp(min=0.1) if normalise else a


def _apply(mha, weights, value):
    o = weights @ _proj(mha.projection_weights()[2], value)
    B, _, M, _ = o.shape
    return o.transpose(1, 2).reshape(B, M, E) @ mha.out_proj.weight.T + mha.out_proj.bias


@pytest.mark.parametrize("mech", FULL)
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_formula(mech, causal):
    torch.manual_seed(1)
    mha = MultiheadAttention(E, H, mech).double()
    x = torch.randn(3, 6, E, dtype=torch.float64)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[1, 4:] = True
    mask[2, 1:] = True
    out, w = mha(x, key_padding_mask=mask, causal=causal, need_weights=True,
                 average_attn_weights=False)
    lens = (~mask).sum(-1).double()
    ref_w = _explicit(mha, x, x, mask, causal, lens, lens)
    torch.testing.assert_close(w, ref_w)
    torch.testing.assert_close(out, _apply(mha, ref_w, x))
    fast, none = mha(x, key_padding_mask=mask, causal=causal)
    assert none is None
    torch.testing.assert_close(fast, out)


@pytest.mark.parametrize("mech", FULL)
def test_cross_attention_matches_formula(mech):
    torch.manual_seed(2)
    mha = MultiheadAttention(E, H, mech, kdim=12, vdim=10).double()
    x = torch.randn(2, 5, E, dtype=torch.float64)
    k = torch.randn(2, 7, 12, dtype=torch.float64)
    v = torch.randn(2, 7, 10, dtype=torch.float64)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, 5:] = True
    out, w = mha(x, k, v, key_padding_mask=mask, need_weights=True)
    ref_w = _explicit(mha, x, k, mask, False, torch.full((2,), 5.0), (~mask).sum(-1).double())
    torch.testing.assert_close(w, ref_w.mean(1))
    torch.testing.assert_close(out, _apply(mha, ref_w, v))


def test_softmax_equals_torch_multihead_attention():
    torch.manual_seed(3)
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True)
    mha = MultiheadAttention(E, H, "softmax")
    assert mha.packed
    with torch.no_grad():  # the packed projection has PyTorch's in_proj layout
        mha.in_proj.weight.copy_(ref.in_proj_weight)
        mha.in_proj.bias.copy_(ref.in_proj_bias)
        mha.out_proj.load_state_dict(ref.out_proj.state_dict())
    x, mem = torch.randn(2, 5, E), torch.randn(2, 8, E)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[1, 6:] = True
    o_ref, w_ref = ref(x, mem, mem, key_padding_mask=mask)
    o, w = mha(x, mem, mem, key_padding_mask=mask, need_weights=True)
    torch.testing.assert_close(o, o_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w, w_ref, rtol=1e-5, atol=1e-6)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(5)
    o_ref, _ = ref(x, x, x, attn_mask=causal)
    torch.testing.assert_close(mha(x, causal=True)[0], o_ref, rtol=1e-5, atol=1e-6)


def test_sequence_first_layout():
    torch.manual_seed(4)
    a = MultiheadAttention(E, H, "leap")
    b = MultiheadAttention(E, H, "leap", batch_first=False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 5, E)
    torch.testing.assert_close(b(x.transpose(0, 1))[0].transpose(0, 1), a(x)[0])


@pytest.mark.parametrize("mech", ["linear", "leap", "cosformer"])
@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_head_norm_replaces_denominator(mech, kind):
    torch.manual_seed(5)
    mha = MultiheadAttention(E, H, mech, mechanism_options={"head_norm": kind}).double()
    x = torch.randn(2, 6, E, dtype=torch.float64)
    lens = torch.full((2,), 6.0)
    a = _explicit(mha, x, x, None, True, lens, lens, normalise=False)  # numerator only
    num = a @ _proj(mha.projection_weights()[2], x)
    if kind == "layer":
        num = num - num.mean(-1, keepdim=True)
    normed = num / torch.sqrt(num.pow(2).mean(-1, keepdim=True) + 1e-5)
    normed = normed * mha.attention.head_norm.weight
    if kind == "layer":
        normed = normed + mha.attention.head_norm.bias
    ref = normed.transpose(1, 2).reshape(2, 6, E) @ mha.out_proj.weight.T + mha.out_proj.bias
    torch.testing.assert_close(mha(x, causal=True)[0], ref)


def test_performer_redraw_changes_features_and_state_dict_round_trips():
    mha = MultiheadAttention(E, H, "performer", mechanism_options={"num_features": 12, "seed": 0})
    assert mha.attention.projection.shape == (12, D)
    x = torch.randn(1, 4, E)
    before = mha(x)[0]
    clone = MultiheadAttention(E, H, "performer", mechanism_options={"num_features": 12})
    clone.load_state_dict(mha.state_dict())
    torch.testing.assert_close(clone(x)[0], before)
    mha.attention.redraw(torch.Generator().manual_seed(9))
    assert not torch.allclose(mha(x)[0], before)


@pytest.mark.parametrize("mech", FULL)
def test_gradients_reach_every_parameter(mech):
    torch.manual_seed(6)
    mha = MultiheadAttention(E, H, mech)
    x = torch.randn(2, 9, E)
    mha(x, causal=True)[0].square().mean().backward()
    for name, p in mha.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("mech", ["softmax", "leap"])
def test_without_bias_packed_and_unpacked(mech):
    torch.manual_seed(7)
    packed = MultiheadAttention(E, H, mech, bias=False).double()
    assert packed.packed and all(b is None for _, b in packed.projection_weights())
    x = torch.randn(2, 5, E, dtype=torch.float64)
    out, w = packed(x, causal=True, need_weights=True, average_attn_weights=False)
    wv = packed.projection_weights()[2][0]
    o = w @ (x @ wv.T).view(2, 5, H, D).transpose(1, 2)
    torch.testing.assert_close(out, o.transpose(1, 2).reshape(2, 5, E) @ packed.out_proj.weight.T)
    cache = packed.new_cache(2)
    steps = torch.cat([packed(x[:, t:t + 1], cache=cache)[0] for t in range(5)], 1)
    torch.testing.assert_close(steps, out)
    unpacked = MultiheadAttention(E, H, mech, bias=False, kdim=8)
    assert not unpacked.packed and unpacked.q_proj.bias is None
