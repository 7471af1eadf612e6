"""The speech front-end and encoder: subsampler lengths, padding and causality, streamed
encoding equal to the full causal pass, SpecAugment, bad inputs."""

import pytest
import torch

from leapformer.models.seq2seq import Seq2SeqConfig
from leapformer.models.speech import (
    Conv1dSubsampler,
    SpecAugment,
    SpeechSeq2Seq,
    subsampled_lengths,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(spec="leap", causal=True, input_dim=8, **kw):
    cfg = Seq2SeqConfig(src_vocab_size=4, tgt_vocab_size=20, d_model=16, nhead=2,
                        num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=32,
                        dropout=0.0)
    return SpeechSeq2Seq(cfg, spec, causal_encoder=causal, input_dim=input_dim, conv_channels=12,
                         **kw).eval()


@pytest.mark.parametrize("causal", [False, True])
def test_subsampler_lengths_shapes_and_padding(causal):
    torch.manual_seed(0)
    sub = Conv1dSubsampler(8, 12, 6, causal=causal)
    lengths = torch.tensor([1, 2, 5, 17, 40])
    x = torch.randn(5, 40, 8)
    for r, n in enumerate(lengths.tolist()):
        x[r, n:] = 0.0
    y, out_len = sub(x, lengths)
    # fairseq: n -> floor((n - 1) / 2 + 1) per layer
    ref = lengths.float()
    for _ in range(2):
        ref = ((ref - 1) / 2 + 1).floor()
    assert out_len.tolist() == ref.long().tolist() == [1, 1, 2, 5, 10]
    assert y.shape == (5, 10, 6)
    assert subsampled_lengths(0) == 0 and subsampled_lengths(4) == 1
    for r, n in enumerate(lengths.tolist()):  # each item as if alone
        alone, m = sub(x[r:r + 1, :n], lengths[r:r + 1])
        torch.testing.assert_close(y[r, :int(m)], alone[0], atol=1e-6, rtol=1e-5)
        assert bool((y[r, int(m):] == 0).all())


def test_causal_subsampler_sees_no_later_frame_and_streams():
    torch.manual_seed(1)
    sub = Conv1dSubsampler(8, 12, 6, causal=True)
    x = torch.randn(2, 37, 8)
    full, _ = sub(x, torch.tensor([37, 37]))
    x2 = x.clone()
    x2[:, 20:] = torch.randn(2, 17, 8)
    changed, _ = sub(x2, torch.tensor([37, 37]))
    # state j reads frames <= 4j + 3 only (left-padded kernel 5, stride 2, twice)
    j = (20 - 3 - 1) // 4 + 1  # states 0..4 end at frame <= 19
    torch.testing.assert_close(full[:, :j], changed[:, :j])
    assert not torch.allclose(full[:, j], changed[:, j])
    state = sub.new_state(2)
    parts, i = [], 0
    for n in [1, 1, 2, 9, 3, 21]:
        parts.append(sub.stream(x[:, i:i + n], state))
        i += n
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="causal"):
        Conv1dSubsampler(8, 12, 6).new_state(1)


@pytest.mark.parametrize("spec", ["softmax", "leap", "linear", "enc=leap,dec=softmax,cross=linear"])
def test_streamed_encoder_equals_full_causal_pass(spec):
    torch.manual_seed(2)
    model = tiny(spec)
    for T, chunks in [(1, [1]), (9, [4, 5]), (61, [1, 2, 3, 7, 1, 11, 36])]:
        x = torch.randn(1, T, 8)
        full = model.encode(x).memory
        stream = model.new_stream()
        parts, i = [], 0
        for n in chunks:
            parts.append(model.stream_encode(x[:, i:i + n], stream))
            i += n
        got = torch.cat(parts, 1)
        assert got.shape == full.shape and stream.states == full.shape[1]
        torch.testing.assert_close(got, full, atol=2e-5, rtol=1e-4)


def test_padded_batch_encodes_each_item_as_alone():
    torch.manual_seed(3)
    model = tiny("leap", causal=False)
    x = torch.randn(3, 30, 8)
    mask = torch.zeros(3, 30, dtype=torch.bool)
    mask[1, 13:] = True
    mask[2, 1:] = True
    enc = model.encode(x.masked_fill(mask[..., None], 0.0), mask)
    assert enc.src_lengths.tolist() == [8, 4, 1]
    for r, n in enumerate([30, 13, 1]):
        alone = model.encode(x[r:r + 1, :n]).memory[0]
        torch.testing.assert_close(enc.memory[r, :alone.shape[0]], alone, atol=2e-5, rtol=1e-4)


def test_loss_with_waitk_prefix_and_gradients_reach_the_subsampler():
    torch.manual_seed(4)
    model = tiny("leap").train()
    x = torch.randn(2, 50, 8)
    tgt_in = torch.tensor([[2, 5, 6, 7], [2, 8, 9, 0]])
    tgt_out = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])
    from leapformer.ops import waitk_prefix
    prefix = waitk_prefix(1, 4, torch.tensor([13, 13]), ratio=3)
    r = model.loss(x, None, tgt_in, tgt_out, tgt_in == 0, prefix)
    r["loss"].backward()
    assert torch.isfinite(r["loss"]) and int(r["tokens"]) == 7
    assert model.subsampler.convs[0].weight.grad.abs().sum() > 0


def test_specaugment_masks_in_training_only():
    torch.manual_seed(5)
    sa = SpecAugment(freq_masks=2, freq_width=3, time_masks=2, time_width=5)
    x = torch.randn(4, 40, 8) + 10.0
    lengths = torch.tensor([40, 30, 7, 1])
    sa.train()
    y = sa(x, lengths)
    assert bool((y == 0).any()) and bool(((y == 0) | (y == x)).all())
    sa.eval()
    assert torch.equal(sa(x, lengths), x)
    model = tiny(specaugment=SpecAugment(time_width=3))
    assert model.specaugment is not None


def test_bad_inputs_give_one_line_errors():
    model = tiny()
    for bad in (torch.zeros(1, 5, 8, dtype=torch.long), torch.zeros(5, 8), torch.zeros(1, 5, 7)):
        with pytest.raises(ValueError, match="src must be a float tensor"):
            model.encode(bad)
    with pytest.raises(ValueError, match="right padding"):
        model.encode(torch.zeros(1, 5, 8), torch.tensor([[True, False, False, False, False]]))
    with pytest.raises(TypeError, match="no source tokens"):
        model.embed_source(torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="lookup"):
        tiny(length_predictor="lookup")
    with pytest.raises(ValueError, match="causal encoder"):
        tiny(causal=False).new_stream()
    with pytest.raises(ValueError, match="kernel_sizes"):
        Conv1dSubsampler(8, 12, 6, kernel_sizes=(4,))
    with pytest.raises(TypeError, match="SpeechStream"):
        model.stream_encode(torch.zeros(1, 3, 8), None)


@pytest.mark.parametrize("spec", ["softmax", "enc=leap,dec=linear,cross=leap"])
def test_agent_incremental_and_reencode_agree_on_a_causal_model(spec):
    # a causal model re-encoded on each prefix gives the states the stream gives, so both
    # encoder modes write the same tokens at the same delays
    import numpy as np

    from leapformer.models.speech_simul import SpeechSimulAgent
    torch.manual_seed(6)
    model = tiny(spec, input_dim=80)
    x = (0.2 * np.sin(np.arange(9000) * 0.07)).astype(np.float32)
    a = SpeechSimulAgent(model, 2, ratio=3, encoder="incremental", segment_ms=50).translate(x)
    b = SpeechSimulAgent(model, 2, ratio=3, encoder="reencode", segment_ms=50).translate(x)
    assert a.tokens == b.tokens and a.delays == b.delays and len(a.tokens) > 3
    assert a.source_ms == 562.5 and a.delays[0] < a.source_ms


@pytest.mark.parametrize("encoder", ["incremental", "reencode"])
@pytest.mark.parametrize("spec", ["softmax", "leap",
                                  "enc=leap,dec=leap,cross=softmax,dec.0=linear"])
def test_agent_fused_step_writes_what_the_eager_step_writes(monkeypatch, spec, encoder):
    # the compiled decoder step (traced by dynamo and run by its eager backend in the
    # suite: tests/conftest.py), two decoder layers, the cross-attention memory growing
    # (incremental) or rebuilt (reencode) between steps: the same tokens at the same
    # delays as the eager modules, from one graph
    import numpy as np
    from torch._dynamo.utils import counters

    from leapformer.models.speech_simul import SpeechSimulAgent
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(7)
    cfg = Seq2SeqConfig(src_vocab_size=4, tgt_vocab_size=20, d_model=16, nhead=2,
                        num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=32,
                        dropout=0.0)
    model = SpeechSeq2Seq(cfg, spec, causal_encoder=True, input_dim=80, conv_channels=12).eval()
    x = (0.2 * np.sin(np.arange(9000) * 0.05)).astype(np.float32)
    kw = dict(ratio=3, segment_ms=50, max_len_a=2.0, encoder=encoder)
    want = SpeechSimulAgent(model, 2, compile_step=False, **kw).translate(x)
    fused = SpeechSimulAgent(model, 2, **kw)
    assert fused.warm_up(0.5) and fused.step.compile_after == 64  # restored
    got = fused.translate(x)
    assert fused.step.compiled and len(got.tokens) > 3
    assert got.tokens == want.tokens and got.delays == want.delays
    assert counters["stats"]["unique_graphs"] == 1  # no recompile per position or memory
    assert not SpeechSimulAgent(model, 2, compile_step=False).warm_up()
    with pytest.raises(TypeError, match="compile_step"):
        SpeechSimulAgent(model, 2, compile_step="no")
