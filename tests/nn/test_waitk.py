"""Wait-k training (prefix-constrained cross-attention) in MultiheadAttention and
Decoder, and causal (streaming) encoders: incremental encoding equals one pass."""

import math

import pytest
import torch
import torch.nn.functional as F

from leapformer.nn import BlockConfig, Decoder, Encoder, MultiheadAttention
from leapformer.ops import waitk_prefix

E, H = 12, 3
D = E // H
CFG = BlockConfig(d_model=16, nhead=2, dim_feedforward=24, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(B=2, M=5, N=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, M, E, generator=g, dtype=torch.float64)
    mem = torch.randn(B, N, E, generator=g, dtype=torch.float64)
    pad = torch.zeros(B, N, dtype=torch.bool)
    pad[1, N - 2:] = True  # item 1 has N - 2 real source positions
    return x, mem, pad


def _mha(mech, seed=0):
    torch.manual_seed(seed)
    return MultiheadAttention(E, H, mech).double().eval()


def _heads(t):
    B, T, _ = t.shape
    return t.view(B, T, H, D).transpose(1, 2)


def masked_reference(mha, x, mem, prefix, pad):
    """The attention written out with an explicit [B, H, M, N] visibility mask."""
    (wq, bq), (wk, bk), (wv, bv) = mha.projection_weights()
    q, k, v = _heads(F.linear(x, wq, bq)), _heads(F.linear(mem, wk, bk)), _heads(F.linear(mem, wv, bv))
    B, M, N = x.shape[0], x.shape[1], mem.shape[1]
    visible = (torch.arange(N)[None, None, :] < prefix[:, :, None]) & ~pad[:, None, :]
    visible = visible[:, None]  # [B, 1, M, N]
    if mha.mechanism == "softmax":
        s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        o = torch.softmax(s.masked_fill(~visible, -math.inf), -1) @ v
    else:
        phi = (lambda t: F.elu(t) + 1.0) if mha.mechanism == "elu" else F.relu
        w = phi(q) @ phi(k).transpose(-1, -2)
        if mha.mechanism == "cosformer":  # i / M and j / N, N = the whole unpadded source
            n = (~pad).sum(1).to(torch.float64)
            qp = (torch.arange(1, M + 1, dtype=torch.float64) / M)[None, None, :]
            kp = torch.arange(1, N + 1, dtype=torch.float64)[None, None, :] / n[:, None, None]
        elif mha.mechanism == "leap":
            qp, kp = mha.attention.leap_q(F.relu(q)), mha.attention.leap_k(F.relu(k))
        if mha.mechanism in ("cosformer", "leap"):
            w = w * torch.cos(math.pi / 2 * (qp[..., :, None] - kp[..., None, :]))
        w = w * visible
        o = (w @ v) / w.sum(-1, keepdim=True).clamp_min(0.1)
    return mha.out_proj(o.transpose(1, 2).reshape(B, M, E))


PREFIX_MECHS = ["softmax", "linear", "elu", "cosformer", "leap"]


@pytest.mark.parametrize("mech", PREFIX_MECHS)
def test_mha_prefix_equals_masked_reference(mech):
    mha = _mha(mech)
    x, mem, pad = _inputs()
    prefix = torch.tensor([[1, 3, 0, 7, 5], [2, 2, 4, 5, 7]])  # 0: a query that sees nothing
    out, _ = mha(x, mem, key_padding_mask=pad, prefix=prefix)
    ref = masked_reference(mha, x, mem, prefix.clamp_min(1), pad)
    keep = prefix > 0
    torch.testing.assert_close(out[keep], ref[keep])
    # documented: a query that sees no key gets a zero attention output (out_proj's bias)
    torch.testing.assert_close(out[0, 2], mha.out_proj.bias)
    wk = waitk_prefix(2, 5, (~pad).sum(1))
    torch.testing.assert_close(mha(x, mem, key_padding_mask=pad, prefix=wk)[0],
                               masked_reference(mha, x, mem, wk, pad))


@pytest.mark.parametrize("mech", PREFIX_MECHS)
def test_mha_prefix_weights_are_masked_and_full_prefix_is_no_prefix(mech):
    mha = _mha(mech, seed=1)
    x, mem, pad = _inputs(seed=1)
    prefix = waitk_prefix(3, 5, (~pad).sum(1))
    out, w = mha(x, mem, key_padding_mask=pad, prefix=prefix, need_weights=True,
                 average_attn_weights=False)
    torch.testing.assert_close(out, mha(x, mem, key_padding_mask=pad, prefix=prefix)[0])
    hidden = torch.arange(7)[None, None, :] >= prefix[:, :, None]
    assert torch.equal(w.masked_select(hidden[:, None]), torch.zeros(int(hidden.sum()) * H,
                                                                      dtype=w.dtype))
    full = torch.full((2, 5), 7)
    torch.testing.assert_close(mha(x, mem, key_padding_mask=pad, prefix=full)[0],
                               mha(x, mem, key_padding_mask=pad)[0])


def test_prefix_gradients_match_reference():
    mha = _mha("leap", seed=2)
    x, mem, pad = _inputs(seed=2)
    prefix = waitk_prefix(1, 5, (~pad).sum(1))
    out = mha(x, mem, key_padding_mask=pad, prefix=prefix)[0]
    ref = masked_reference(mha, x, mem, prefix, pad)
    params = [p for p in mha.parameters()]
    for a, b in zip(torch.autograd.grad(out.square().sum(), params),
                    torch.autograd.grad(ref.square().sum(), params), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mech", ["linformer", "nystromformer", "bigbird", "reformer"])
def test_mechanisms_without_prefix_support_raise(mech):
    mha = MultiheadAttention(E, H, mech, mechanism_options={"k": 4} if mech == "linformer"
                             else None)
    x = torch.randn(1, 6, E)
    with pytest.raises(ValueError, match=f"the {mech} mechanism does not support prefix"):
        mha(x, prefix=torch.full((1, 6), 3))


def test_prefix_errors():
    mha = _mha("linear")
    x, mem, _ = _inputs()
    with pytest.raises(ValueError, match=r"prefix must have shape \[batch, queries\] = \[2, 5\], "
                                         r"got \[2, 7\]"):
        mha(x, mem, prefix=torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(TypeError, match="prefix must be an integer tensor .* got torch.float64"):
        mha(x, mem, prefix=torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"prefix values must lie in \[0, 7\]"):
        mha(x, mem, prefix=torch.full((2, 5), 8))
    with pytest.raises(ValueError, match="cannot be combined with causal=True"):
        mha(x, causal=True, prefix=torch.full((2, 5), 2))
    cache = mha.new_cache(2, cross=True)
    with pytest.raises(ValueError, match="prefix is for training"):
        mha(x, mem, cache=cache, prefix=torch.full((2, 5), 2))
    assert cache.length == 0  # refused before extending the cache


# -- Decoder(memory_prefix=) -----------------------------------------------------------------


def _decoder(spec, seed=0):
    torch.manual_seed(seed)
    dec = Decoder(2, CFG, spec).double().eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 6, 16, generator=g, dtype=torch.float64)
    mem = torch.randn(2, 8, 16, generator=g, dtype=torch.float64)
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[0, 5:] = True
    return dec, x, mem, pad


@pytest.mark.parametrize("cross", PREFIX_MECHS)
def test_decoder_full_memory_prefix_equals_unrestricted_and_waitk_ignores_unread_source(cross):
    dec, x, mem, pad = _decoder(f"dec=linear,cross={cross}", seed=3)
    src = (~pad).sum(1)
    free = dec(x, mem, memory_key_padding_mask=pad, target_length=6, source_length=src)
    full = dec(x, mem, memory_key_padding_mask=pad, target_length=6, source_length=src,
               memory_prefix=torch.full((2, 6), 8))
    torch.testing.assert_close(full, free)
    prefix = waitk_prefix(2, 6, src)  # item 0: 2 3 4 5 5 5; item 1: 2 3 4 5 6 7
    waitk = dec(x, mem, memory_key_padding_mask=pad, target_length=6, source_length=src,
                memory_prefix=prefix)
    assert not torch.allclose(waitk, free)
    changed = mem.clone()
    changed[:, 4:] += 3.0  # source not yet read by targets 1 and 2 (prefixes 2, 3)
    again = dec(x, changed, memory_key_padding_mask=pad, target_length=6, source_length=src,
                memory_prefix=prefix)
    torch.testing.assert_close(again[:, :2], waitk[:, :2])
    assert not torch.allclose(again[:, 3:], waitk[:, 3:])


def test_decoder_memory_prefix_errors():
    dec, x, mem, pad = _decoder("linear")
    cache = dec.new_cache(2, memory=mem, memory_key_padding_mask=pad)
    with pytest.raises(ValueError, match="memory_prefix is for training"):
        dec(x[:, :1], cache=cache, memory_prefix=torch.ones(2, 1, dtype=torch.long))
    lm = Decoder(1, CFG, "linear", cross=False)
    with pytest.raises(ValueError, match="memory_prefix needs a decoder layer with cross"):
        lm(x.float(), memory_prefix=torch.ones(2, 6, dtype=torch.long))


# -- causal (streaming) encoders -------------------------------------------------------------

ENC_MECHS = ["softmax", "linear", "leap", "cosformer"]


def _encoder(mech, seed=0):
    torch.manual_seed(seed)
    enc = Encoder(2, CFG, mech, causal=True).double().eval()
    for layer in enc.layers:  # make the attention matter
        layer.self_attn.out_proj.weight.data.mul_(3.0)
    src = torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)
    return enc, src


@pytest.mark.parametrize("mech", ENC_MECHS)
def test_incremental_encoding_equals_one_causal_pass(mech):
    enc, src = _encoder(mech, seed=4)
    S = src.shape[1]
    full = enc(src, length=S)  # cosFormer: the full source length, given
    cache = enc.new_cache(2)
    parts = [enc(src[:, a:b], cache=cache, length=S) for a, b in ((0, 4), (4, 5), (5, 9))]
    torch.testing.assert_close(torch.cat(parts, 1), full)
    assert cache.length == S
    bidirectional = enc(src, length=S, causal=False)
    assert not torch.allclose(bidirectional, full)


@pytest.mark.parametrize("mech", ENC_MECHS)
def test_causal_encoding_of_a_prefix_is_the_prefix_of_the_encoding(mech):
    """Streamed input is encoded once: reading more source never changes what
    the first s positions were encoded as."""
    enc, src = _encoder(mech, seed=5)
    S = src.shape[1]
    full = enc(src, length=S)
    for s in (1, 4, 8):
        torch.testing.assert_close(enc(src[:, :s], length=S), full[:, :s])


def test_incremental_encoding_with_padded_chunk_equals_items_alone():
    enc, src = _encoder("linear", seed=6)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, :3] = True  # item 1 starts later (left-padded first chunk)
    cache = enc.new_cache(2)
    out = torch.cat([enc(src[:, a:b], cache=cache, key_padding_mask=pad[:, a:b])
                     for a, b in ((0, 4), (4, 9))], 1)
    torch.testing.assert_close(out[1, 3:], enc(src[1:, 3:])[0])
    torch.testing.assert_close(out[0], enc(src[:1])[0])


def test_encoder_cache_errors():
    enc, src = _encoder("linear")
    with pytest.raises(ValueError, match="incremental encoding with a cache needs a causal"):
        enc(src, cache=enc.new_cache(2), causal=False)
    with pytest.raises(ValueError, match="cache must come from Encoder.new_cache"):
        enc(src, cache=Encoder(1, CFG, "linear", causal=True).new_cache(2))
