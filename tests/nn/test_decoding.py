"""Incremental decoding through a 2-layer decoder stack equals the full forward."""

import pytest
import torch

from leapformer.nn import MECHANISMS, BlockConfig, Decoder, DecoderCache

FULL = sorted(name for name, cls in MECHANISMS.items() if cls.full)

CFG = BlockConfig(d_model=16, nhead=2, dim_feedforward=24, dropout=0.0)
MECHS = FULL


def _setup(spec, seed=0, options=None):
    torch.manual_seed(seed)
    dec = Decoder(2, CFG, spec, options).double().eval()
    B, T, S = 2, 7, 6
    x = torch.randn(B, T, 16, dtype=torch.float64)
    mem = torch.randn(B, S, 16, dtype=torch.float64)
    mpad = torch.zeros(B, S, dtype=torch.bool)
    mpad[1, 4:] = True
    return dec, x, mem, mpad


@pytest.mark.parametrize("mech", MECHS)
@pytest.mark.parametrize("grad", [True, False])
def test_token_by_token_equals_full(mech, grad):
    dec, x, mem, mpad = _setup(mech)
    T = x.shape[1]
    with torch.set_grad_enabled(grad):  # no_grad takes the fused decoding paths
        full = dec(x, mem, memory_key_padding_mask=mpad, target_length=T)
        cache = dec.new_cache(2, memory=mem, memory_key_padding_mask=mpad)
        steps = [dec(x[:, t:t + 1], cache=cache, target_length=T) for t in range(T)]
    torch.testing.assert_close(torch.cat(steps, 1), full)
    assert cache.length == T


@torch.no_grad()
def test_fused_leap_step_follows_parameter_updates():
    dec, x, mem, mpad = _setup("leap", seed=7)
    cache = dec.new_cache(2, memory=mem, memory_key_padding_mask=mpad)
    dec(x[:, :1], cache=cache)
    for layer in dec.layers:  # an optimizer step changes the LeaP weights in place
        layer.self_attn.attention.leap_k.net[0].weight.mul_(-2.0)
        layer.self_attn.attention.leap_q.net[2].bias.add_(1.0)
    full = dec(x[:, :2], mem, memory_key_padding_mask=mpad)
    fresh = dec.new_cache(2, memory=mem, memory_key_padding_mask=mpad)
    steps = [dec(x[:, t:t + 1], cache=fresh) for t in range(2)]
    torch.testing.assert_close(torch.cat(steps, 1), full)


@pytest.mark.parametrize("mech", MECHS)
def test_chunked_prefill_then_steps(mech):
    dec, x, mem, mpad = _setup(mech, seed=1)
    T = x.shape[1]
    full = dec(x, mem, memory_key_padding_mask=mpad, target_length=T)
    cache = dec.new_cache(2, memory=mem, memory_key_padding_mask=mpad)
    parts = [dec(x[:, :3], cache=cache, target_length=T), dec(x[:, 3:5], cache=cache, target_length=T)]
    parts += [dec(x[:, t:t + 1], cache=cache, target_length=T) for t in (5, 6)]
    torch.testing.assert_close(torch.cat(parts, 1), full)


def test_mixed_spec_per_block_and_layer():
    spec = "enc=softmax,dec=linear,cross=cosformer,dec.1=leap"
    dec, x, mem, mpad = _setup(spec, seed=2)
    kinds = [(layer.self_attn.mechanism, layer.cross_attn.mechanism) for layer in dec.layers]
    assert kinds == [("linear", "cosformer"), ("leap", "cosformer")]
    T = x.shape[1]
    full = dec(x, mem, memory_key_padding_mask=mpad, target_length=T)
    cache = dec.new_cache(2, memory=mem, memory_key_padding_mask=mpad)
    steps = [dec(x[:, t:t + 1], cache=cache, target_length=T) for t in range(T)]
    torch.testing.assert_close(torch.cat(steps, 1), full)


@pytest.mark.parametrize("mech", MECHS)
def test_extending_cross_state_equals_recomputing(mech):
    dec, x, mem, mpad = _setup(mech, seed=3)
    S = mem.shape[1]
    src_len = (~mpad).sum(-1)
    whole = dec.new_cache(2, memory=mem, memory_key_padding_mask=mpad, source_length=src_len)
    grown = dec.new_cache(2)
    for a, b in ((0, 2), (2, 3), (3, S)):
        dec.extend_memory(grown, mem[:, a:b], key_padding_mask=mpad[:, a:b], source_length=src_len)
    for lw, lg in zip(whole.layers, grown.layers):
        assert lw.cross_attn.length == lg.cross_attn.length == S
        for name, t in lw.cross_attn.tensors.items():
            n = S if name in ("k", "v", "pad") else None
            got = lg.cross_attn.tensors[name]
            if n is not None:  # softmax: compare the filled part of the KV buffers
                t, got = t.narrow(-2 if t.dim() == 4 else 1, 0, n), got.narrow(
                    -2 if got.dim() == 4 else 1, 0, n)
            torch.testing.assert_close(got, t)
    T = x.shape[1]
    a = [dec(x[:, t:t + 1], cache=whole, target_length=T) for t in range(T)]
    b = [dec(x[:, t:t + 1], cache=grown, target_length=T) for t in range(T)]
    torch.testing.assert_close(torch.cat(b, 1), torch.cat(a, 1))


def test_cosformer_stepping_mode_decodes_consistently_and_differs_from_given():
    opts = {"cosformer": {"length_mode": "stepping"}}
    dec, x, mem, mpad = _setup("cosformer", seed=4, options=opts)
    full = dec(x, mem, memory_key_padding_mask=mpad)
    cache = dec.new_cache(2, memory=mem, memory_key_padding_mask=mpad)
    steps = [dec(x[:, t:t + 1], cache=cache) for t in range(x.shape[1])]
    torch.testing.assert_close(torch.cat(steps, 1), full)
    given = Decoder(2, CFG, "cosformer").double().eval()
    given.load_state_dict(dec.state_dict())
    assert not torch.allclose(given(x, mem, memory_key_padding_mask=mpad, target_length=7), full)


def test_decoder_only_stack_and_cache_size():
    torch.manual_seed(5)
    dec = Decoder(2, CFG, "leap", cross=False).eval()
    x = torch.randn(1, 5, 16)
    full = dec(x)
    cache = dec.new_cache(1)
    assert isinstance(cache, DecoderCache) and cache.layers[0].cross_attn is None
    size = cache.nbytes
    steps = [dec(x[:, t:t + 1], cache=cache) for t in range(5)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-6)
    assert cache.nbytes == size == 2 * 2 * 2 * 8 * 16 * 4  # layers x heads x (sin,cos) x D x P x 4 B
    soft = Decoder(2, CFG, "softmax", cross=False)
    sc = soft.new_cache(1, max_length=100)
    assert sc.nbytes == 2 * 2 * 100 * 16 * 4  # layers x (k,v) x positions x E x 4 B


def test_cosformer_decodes_with_a_predicted_length():
    from leapformer.nn import RatioLength

    dec, x, mem, mpad = _setup("enc=softmax,dec=cosformer,cross=cosformer", seed=6)
    src_len = (~mpad).sum(-1)
    predictor = RatioLength.fit([6, 4, 10], [7, 5, 12])  # r = 24 / 20
    m_hat = predictor.predict(src_len)
    assert m_hat.tolist() == [7, 5]  # round(1.2 * 6), round(1.2 * 4)
    T = x.shape[1]
    full = dec(x, mem, memory_key_padding_mask=mpad, target_length=m_hat)
    cache = dec.new_cache(2, memory=mem, memory_key_padding_mask=mpad)
    steps = [dec(x[:, t:t + 1], cache=cache, target_length=m_hat) for t in range(T)]
    torch.testing.assert_close(torch.cat(steps, 1), full)
    truth = dec(x, mem, memory_key_padding_mask=mpad, target_length=torch.tensor([7, 3]))
    assert not torch.allclose(truth[1], full[1])  # the length matters for item 1


# (mechanism, options): every full mechanism, cosFormer in both length modes
PADDED = [(name, {}) for name in FULL] + [("cosformer", {"length_mode": "stepping"})]
PADDED_IDS = FULL + ["cosformer-stepping"]


@pytest.mark.parametrize(("mech", "options"), PADDED, ids=PADDED_IDS)
@torch.no_grad()
def test_padded_batched_cache_equals_items_alone(mech, options):
    """A left-padded prefill, a chunk with padding inside it, then single steps
    (one of them a padded token): each item's real outputs equal decoding its
    real tokens alone, one by one (padded slots add nothing and take no position)."""
    torch.manual_seed(8)
    dec = Decoder(2, CFG, mech, {mech: options}, cross=False).double().eval()
    for layer in dec.layers:  # make the attention matter
        layer.self_attn.out_proj.weight.mul_(4.0)
    B, L = 3, 12
    x = torch.randn(B, L, 16, dtype=torch.float64)
    pad = torch.zeros(B, L, dtype=torch.bool)
    pad[0, :4] = True  # prompts of 5, 2 and 4 real tokens, left-padded into 5 slots
    pad[1, :3] = True
    pad[2, :1] = True
    pad[0, 6] = True  # chunk 5..7: padding between real tokens of item 0
    pad[2, 5:7] = True  # ... and at the start of item 2's chunk
    pad[1, 9] = True  # single steps 8..11: one padded token of item 1
    bounds = [(0, 5), (5, 8)] + [(t, t + 1) for t in range(8, L)]
    M = 20  # cosFormer's target length (given mode)
    cache = dec.new_cache(B)
    outs = [dec(x[:, a:b], cache=cache, tgt_key_padding_mask=pad[:, a:b], target_length=M)
            for a, b in bounds]
    got = torch.cat(outs, 1)
    assert cache.length == L
    for lc in cache.layers:
        assert lc.self_attn.real_length.tolist() == (~pad).sum(1).tolist()
    for b in range(B):
        alone = dec.new_cache(1)
        real = (~pad[b]).nonzero().flatten().tolist()
        ref = torch.cat([dec(x[b:b + 1, t:t + 1], cache=alone, target_length=M) for t in real], 1)
        # stepping computes its quadratic weights in float32 (as CosFormer does)
        tol = {"rtol": 1e-5, "atol": 1e-6} if options else {}
        torch.testing.assert_close(got[b, real], ref[0], **tol)
        assert torch.isfinite(got[b]).all()


@pytest.mark.parametrize("mech", ["softmax", "linear"])
@torch.no_grad()
def test_all_false_padding_mask_decodes_as_no_mask(mech):
    torch.manual_seed(9)
    dec = Decoder(1, CFG, mech, cross=False).double().eval()
    x = torch.randn(2, 4, 16, dtype=torch.float64)
    a, b = dec.new_cache(2), dec.new_cache(2)
    ya = dec(x, cache=a)
    yb = dec(x, cache=b, tgt_key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    torch.testing.assert_close(yb, ya)
    assert b.layers[0].self_attn.real_length is None
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \[batch, source_length"
                                         r"\] = \[2, 1\], got \[2, 4\]"):
        dec(x[:, :1], cache=b, tgt_key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    assert b.length == 4  # the refused call changed nothing
