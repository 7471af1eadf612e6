"""Encoder-decoder model: incremental decoding equals the teacher-forced forward for
every MLA block kind, padding is exact, the length predictor is wired in, the
loss (label smoothing, length loss) and training, cache reordering, errors."""

import pytest
import torch
import torch.nn.functional as F

from leapformer.models import (
    SEQ2SEQ_PRESETS,
    Seq2Seq,
    Seq2SeqConfig,
    label_smoothed_nll,
)
from leapformer.nn.length import ConvLength, LookupLength, RatioLength

SV, TV = 19, 23
SPECS = ["softmax", "linear", "leap", "cosformer",
         "enc=leap,dec=linear,cross=cosformer,dec.1=softmax,cross.0=leap"]
IDS = ["softmax", "linear", "leap", "cosformer", "mixed"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(spec="leap", seed=0, length_predictor=None, dtype=torch.float64, **kw):
    """A tiny model whose attention matters (attention outputs scaled up)."""
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(**{"src_vocab_size": SV, "tgt_vocab_size": TV, "d_model": 16,
                           "nhead": 2, "num_encoder_layers": 2, "num_decoder_layers": 2,
                           "dim_feedforward": 32, "dropout": 0.0, "length_hidden": 8, **kw})
    model = Seq2Seq(cfg, spec, length_predictor).to(dtype).eval()
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.self_attn.out_proj.weight.mul_(4.0)
            layer.cross_attn.out_proj.weight.mul_(4.0)
    return model


def batch(seed=0, B=3, S=7, T=6):
    """Right-padded sources (lengths S, S-2, 3), unpadded decoder inputs starting with BOS."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, SV, (B, S), generator=g)
    mask = torch.zeros(B, S, dtype=torch.bool)
    mask[1, S - 2:] = True
    mask[2, 3:] = True
    src = src.masked_fill(mask, 0)
    tgt = torch.randint(4, TV, (B, T), generator=g)
    tgt[:, 0] = 2
    return src, mask, tgt


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@torch.no_grad()
def test_step_by_step_equals_teacher_forced_forward(spec):
    model = make_model(spec, seed=1)
    src, mask, tgt = batch(1)
    M = torch.tensor([6, 9, 7])  # per-item target lengths (cosFormer reads them)
    full = model(src, mask, tgt, None, target_length=M)
    enc = model.encode(src, mask)
    cache = model.new_decoder_cache(enc, target_length=M)
    steps = torch.cat([model.decode_step(tgt[:, t:t + 1], cache) for t in range(tgt.shape[1])], 1)
    torch.testing.assert_close(steps, full)
    assert cache.length == tgt.shape[1]
    # a chunk of several tokens at once continues the same cache
    cache = model.new_decoder_cache(enc, target_length=M)
    chunks = torch.cat([model.decode_step(tgt[:, :4], cache), model.decode_step(tgt[:, 4:], cache)], 1)
    torch.testing.assert_close(chunks, full)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@torch.no_grad()
def test_padded_batch_equals_items_alone(spec):
    model = make_model(spec, seed=2)
    src, mask, tgt = batch(2)
    tmask = torch.zeros_like(tgt, dtype=torch.bool)
    tmask[0, 4:] = True
    full = model(src, mask, tgt.masked_fill(tmask, 0), tmask)
    for b in range(3):
        n, m = int((~mask[b]).sum()), int((~tmask[b]).sum())
        alone = model(src[b:b + 1, :n], None, tgt[b:b + 1, :m])
        torch.testing.assert_close(full[b:b + 1, :m], alone)


@pytest.mark.parametrize("spec", ["linear", "cosformer", "softmax"])
@torch.no_grad()
def test_cosformer_decoder_reads_the_target_length(spec):
    model = make_model(spec, seed=3)
    src, mask, tgt = batch(3)
    a = model(src, mask, tgt, None, target_length=6)
    b = model(src, mask, tgt, None, target_length=12)
    assert model.needs_target_length == (spec == "cosformer")
    assert torch.equal(a, b) != (spec == "cosformer")


def test_cosformer_decoding_needs_a_length_or_predictor():
    model = make_model("enc=linear,dec=linear,cross=cosformer")
    src, mask, _ = batch()
    enc = model.encode(src, mask)
    with pytest.raises(ValueError, match="target_length"):
        model.new_decoder_cache(enc)
    cache = model.new_decoder_cache(enc, target_length=5)
    assert cache.target_length.tolist() == [5, 5, 5]
    # LeaP and the linear family need no length
    assert make_model("leap").new_decoder_cache(make_model("leap").encode(src, mask)) \
        .target_length is None


@torch.no_grad()
def test_ratio_and_lookup_predictors_fit_and_predict():
    model = make_model("cosformer", length_predictor="ratio")
    assert isinstance(model.length_predictor, RatioLength)
    sources = [[5, 6, 7, 3], [8, 9, 3]]
    model.fit_length_predictor(sources, [6, 4])  # r = 10 / 7
    src = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])
    mask = src == 0
    cache = model.new_decoder_cache(model.encode(src, mask))
    expected = torch.round(torch.tensor([4.0, 3.0], dtype=torch.float64) * 10 / 7).long()
    assert cache.target_length.tolist() == expected.tolist()
    assert "length_predictor.ratio" in model.state_dict()

    lookup = make_model("cosformer", length_predictor="lookup")
    # each token of a source gets tgt/src; token 3 is in both: (8/4 + 3/3) / 2 = 1.5
    lookup.fit_length_predictor(sources, [8, 3])
    assert isinstance(lookup.length_predictor, LookupLength)
    got = lookup.predict_target_length(lookup.encode(src, mask))
    assert got.tolist() == [8, 4]  # round(2 + 2 + 2 + 1.5) = 8, round(1 + 1 + 1.5) = 4 (half even)


def test_conv_predictor_is_trained_jointly():
    model = make_model("cosformer", length_predictor="conv", dtype=torch.float32)
    assert isinstance(model.length_predictor, ConvLength)
    src, mask, tgt = batch(4)
    out = model.loss(src, mask, tgt, torch.roll(tgt, -1, 1))
    assert out["length_loss"] > 0
    out["loss"].backward()
    assert model.length_predictor.proj.weight.grad.abs().sum() > 0
    model.eval()
    M = model.predict_target_length(model.encode(src, mask))
    assert M.shape == (3,) and M.dtype == torch.long and bool((M >= 1).all())
    with pytest.raises(ValueError, match="ratio or lookup"):
        model.fit_length_predictor([[4, 3]], [3])


def test_label_smoothed_nll_matches_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11, dtype=torch.float64)
    target = torch.randint(1, 11, (2, 5))
    target[1, 3:] = 0
    keep = target != 0
    for eps in (0.0, 0.1):
        loss, nll = label_smoothed_nll(logits, target, epsilon=eps, ignore_index=0)
        ref = F.cross_entropy(logits[keep], target[keep], label_smoothing=eps)
        torch.testing.assert_close(loss, ref)
        torch.testing.assert_close(nll, F.cross_entropy(logits[keep], target[keep]))
    loss, _ = label_smoothed_nll(logits, target, reduction="none")
    assert loss.shape == (2, 5) and bool((loss[1, 3:] == 0).all())
    with pytest.raises(ValueError, match="reduction"):
        label_smoothed_nll(logits, target, reduction="avg")
    with pytest.raises(ValueError, match="logits"):
        label_smoothed_nll(logits[:, :4], target)


def test_training_steps_reduce_the_loss():
    """A copy task: a few Adam steps on one batch lower the loss (leap in every block)."""
    torch.manual_seed(0)
    model = make_model("leap", dtype=torch.float32, label_smoothing=0.1)
    model.train()
    src = torch.randint(4, SV, (8, 6))
    src[:, -1] = 3
    tgt = torch.cat([torch.full((8, 1), 2), src[:, :-1]], 1)  # BOS + copy
    out = src.clone()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model.loss(src, None, tgt, out)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


@torch.no_grad()
def test_full_memory_prefix_equals_no_prefix_and_shorter_prefix_differs():
    model = make_model("enc=leap,dec=leap,cross=linear", seed=5)
    src, _, tgt = batch(5)
    full = model(src, None, tgt, None)
    every = torch.full(tgt.shape, src.shape[1], dtype=torch.long)
    torch.testing.assert_close(model(src, None, tgt, None, every), full)
    waitk = torch.clamp(torch.arange(tgt.shape[1]) + 2, max=src.shape[1]).expand_as(tgt)
    assert not torch.allclose(model(src, None, tgt, None, waitk.contiguous()), full)


@torch.no_grad()
def test_causal_encoder_prefix_does_not_see_the_future():
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(SV, TV, d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=1,
                        dim_feedforward=32, dropout=0.0)
    model = Seq2Seq(cfg, "leap", causal_encoder=True).eval()
    src = torch.randint(4, SV, (1, 8))
    other = src.clone()
    other[0, 5:] = 4
    a, b = model.encode(src).memory, model.encode(other).memory
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("spec", ["softmax", "cosformer", "leap"])
@torch.no_grad()
def test_cache_reorder_equals_decoding_the_reordered_batch(spec):
    model = make_model(spec, seed=6)
    src, mask, tgt = batch(6)
    index = torch.tensor([2, 0, 0, 1])
    enc = model.encode(src, mask)
    cache = model.new_decoder_cache(enc, target_length=7)
    model.decode_step(tgt[:, :3], cache)
    cache.reorder(index)
    got = model.decode_step(tgt[index, 3:], cache)
    ref_cache = model.new_decoder_cache(model.encode(src[index], mask[index]), target_length=7)
    ref = model.decode_step(tgt[index], ref_cache)[:, 3:]
    torch.testing.assert_close(got, ref)
    with pytest.raises(ValueError, match="rows outside"):
        cache.reorder(torch.tensor([4]))


def test_presets_and_config_errors():
    cfg = Seq2SeqConfig.preset("paper", 8000, 8000)
    assert (cfg.d_model, cfg.nhead, cfg.num_encoder_layers, cfg.dim_feedforward) == \
        (512, 8, 6, 2048)
    assert Seq2SeqConfig.preset("lite", 100, 100, d_model=64).d_model == 64
    assert set(SEQ2SEQ_PRESETS) == {"paper", "lite"}
    with pytest.raises(ValueError, match="unknown seq2seq preset"):
        Seq2SeqConfig.preset("big", 10, 10)
    with pytest.raises(ValueError, match="src_vocab_size"):
        Seq2SeqConfig(0, 10)
    with pytest.raises(ValueError, match="positions"):
        Seq2SeqConfig(10, 10, positions="rotary")
    with pytest.raises(ValueError, match="multiple of nhead"):
        Seq2SeqConfig(10, 10, d_model=30, nhead=4)
    with pytest.raises(ValueError, match="must differ"):
        Seq2SeqConfig(10, 10, bos_id=0)
    small = Seq2SeqConfig(10, 10, d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                          dim_feedforward=8)
    with pytest.raises(ValueError, match="linformer"):
        Seq2Seq(small, "enc=leap,dec=linformer,cross=leap")
    with pytest.raises(ValueError, match="length_predictor"):
        Seq2Seq(small, "leap", length_predictor="oracle")
    with pytest.raises(ValueError, match="unknown attention mechanism"):
        Seq2Seq(small, "enc=nope")


def test_input_errors_name_the_argument():
    model = make_model("leap")
    src, mask, tgt = batch()
    with pytest.raises(ValueError, match=r"src holds ids outside \[0, 19\)"):
        model(src + SV, mask, tgt)
    with pytest.raises(ValueError, match="tgt_in must be an integer tensor"):
        model(src, mask, tgt.float())
    with pytest.raises(ValueError, match="src_mask must have the shape"):
        model(src, mask[:, :3], tgt)
    with pytest.raises(TypeError, match="src_mask must be a bool"):
        model(src, mask.long(), tgt)
    with pytest.raises(ValueError, match="right padding"):
        model(src, mask.flip(1), tgt)
    with pytest.raises(ValueError, match="src has 3 items but tgt_in 2"):
        model(src, mask, tgt[:2])
    cache = model.new_decoder_cache(model.encode(src, mask))
    with pytest.raises(ValueError, match="cache holds 3 rows"):
        model.decode_step(tgt[:2, :1], cache)
    with pytest.raises(TypeError, match="Seq2SeqCache"):
        model.decode_step(tgt[:, :1], cache.decoder)
    with pytest.raises(ValueError, match="target_length"):
        model.new_decoder_cache(model.encode(src, mask), target_length=0)
    learned = make_model("leap", positions="learned", max_positions=5)
    with pytest.raises(ValueError, match="max_positions=5"):
        learned(src, mask, tgt)
