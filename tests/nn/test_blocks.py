"""Blocks and stacks: padding invariance, pre/post-norm, state_dict round trip, errors."""

import pytest
import torch

from leapformer.nn import MECHANISMS, BlockConfig, Decoder, Encoder, MultiheadAttention

FULL = sorted(name for name, cls in MECHANISMS.items() if cls.full)

MECHS = FULL


def _cfg(**kw):
    return BlockConfig(**{"d_model": 16, "nhead": 2, "dim_feedforward": 24, "dropout": 0.0, **kw})


@pytest.mark.parametrize("mech", MECHS)
@pytest.mark.parametrize("norm_first", [True, False])
def test_padded_batch_equals_items_alone(mech, norm_first):
    torch.manual_seed(0)
    enc = Encoder(2, _cfg(norm_first=norm_first), mech).double().eval()
    dec = Decoder(2, _cfg(norm_first=norm_first), mech).double().eval()
    src_lens, tgt_lens = [6, 3], [5, 2]
    src = torch.randn(2, 6, 16, dtype=torch.float64)
    tgt = torch.randn(2, 5, 16, dtype=torch.float64)
    spad = torch.arange(6)[None] >= torch.tensor(src_lens)[:, None]
    tpad = torch.arange(5)[None] >= torch.tensor(tgt_lens)[:, None]
    src = src.masked_fill(spad[..., None], 7.0)  # garbage in padded positions
    mem = enc(src, key_padding_mask=spad)
    out = dec(tgt, mem, tgt_key_padding_mask=tpad, memory_key_padding_mask=spad,
              target_length=torch.tensor(tgt_lens))
    for b in range(2):
        s, t = src_lens[b], tgt_lens[b]
        mem_b = enc(src[b:b + 1, :s])
        torch.testing.assert_close(mem[b:b + 1, :s], mem_b)
        out_b = dec(tgt[b:b + 1, :t], mem_b, target_length=t)
        torch.testing.assert_close(out[b:b + 1, :t], out_b)


@pytest.mark.parametrize("mech", MECHS)
def test_state_dict_round_trip(mech, tmp_path):
    torch.manual_seed(1)
    cfg = _cfg()
    dec = Decoder(2, cfg, mech).eval()
    path = tmp_path / "dec.pt"
    torch.save(dec.state_dict(), path)
    torch.manual_seed(99)
    other = Decoder(2, cfg, mech).eval()
    other.load_state_dict(torch.load(path))
    x, mem = torch.randn(2, 4, 16), torch.randn(2, 3, 16)
    torch.testing.assert_close(other(x, mem, target_length=4), dec(x, mem, target_length=4))


def test_training_mode_dropout_and_loss_falls():
    torch.manual_seed(2)
    enc = Encoder(1, _cfg(dropout=0.1), "leap")
    dec = Decoder(1, _cfg(dropout=0.1), "enc=leap,dec=cosformer,cross=linear")
    head = torch.nn.Linear(16, 16)
    params = [*enc.parameters(), *dec.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    src, tgt = torch.randn(4, 6, 16), torch.randn(4, 5, 16)
    target = tgt.flip(1)
    losses = []
    for _ in range(30):
        out = head(dec(tgt, enc(src), target_length=5))
        loss = (out - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_errors():
    mha = MultiheadAttention(16, 2, "leap")
    x = torch.randn(2, 5, 16)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        MultiheadAttention(15, 2)
    with pytest.raises(ValueError, match=r"query must be \[batch, length, embed\] with embed = 16, got \[2, 5, 12\]"):
        mha(torch.randn(2, 5, 12))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \[batch, source_length\] = \[2, 5\], got \[2, 4\]"):
        mha(x, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="key_padding_mask must be a bool tensor"):
        mha(x, key_padding_mask=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="causal attention needs"):
        mha(x, torch.randn(2, 3, 16), causal=True)
    with pytest.raises(ValueError, match="unknown attention mechanism 'fast'"):
        MultiheadAttention(16, 2, "fast")
    with pytest.raises(TypeError, match="bad options for mechanism 'leap'"):
        MultiheadAttention(16, 2, "leap", mechanism_options={"colour": 1})
    with pytest.raises(ValueError, match="head_norm"):
        MultiheadAttention(16, 2, "linear", mechanism_options={"head_norm": "batch"})
    with pytest.raises(ValueError, match="activation"):
        _cfg(activation="swish")


def test_cache_errors():
    a, b = MultiheadAttention(16, 2, "leap"), MultiheadAttention(16, 2, "leap")
    x = torch.randn(2, 1, 16)
    cache = a.new_cache(2, max_length=2)
    with pytest.raises(ValueError, match="belongs to another layer"):
        b(x, cache=cache)
    with pytest.raises(ValueError, match="batch size 2, got a batch of 3"):
        a(torch.randn(3, 1, 16), cache=cache)
    a(x, cache=cache)
    a(x, cache=cache)
    with pytest.raises(ValueError, match="past the cache's max_length=2"):
        a(x, cache=cache)
    assert cache.length == 2  # the refused call changed nothing
    cross = a.new_cache(2, cross=True)
    with pytest.raises(ValueError, match="holds no source yet"):
        a(x, cache=cross)
    with pytest.raises(ValueError, match="self-attention cache was passed where a cross"):
        a.extend_memory(a.new_cache(2), torch.randn(2, 3, 16))
    with pytest.raises(ValueError, match="need_weights"):
        a(x, cache=a.new_cache(2), need_weights=True)
    cos = MultiheadAttention(16, 2, "cosformer")
    with pytest.raises(ValueError, match="cosformer needs the target length"):
        cos(x, cache=cos.new_cache(2))
    dec = Decoder(2, _cfg(), "leap")
    with pytest.raises(ValueError, match="DecoderCache with 2 layers"):
        dec(x, cache=Decoder(1, _cfg(), "leap").new_cache(2))
    with pytest.raises(ValueError, match="pass memory"):
        dec(x)
