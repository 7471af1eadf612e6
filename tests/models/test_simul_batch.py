"""Batched simultaneous decoding (``translate_batch``): a batch of sentences of
different lengths gives, sentence by sentence, what translating each alone gives
(tokens, delays, logits), for softmax and LeaP, incremental and re-encoding."""

import pytest
import torch

from leapformer.models import Seq2Seq, Seq2SeqConfig, SimulAgent, translate_batch
from leapformer.models import fused_step

SV, TV = 19, 23
LENGTHS = (7, 2, 5, 1)  # different lengths, one of a single token

pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(spec, *, causal=True, seed=0):
    """A tiny float64 model whose attention matters, EOS made unlikely (long outputs)."""
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(SV, TV, d_model=16, nhead=2, num_encoder_layers=2,
                        num_decoder_layers=2, dim_feedforward=32, dropout=0.0)
    model = Seq2Seq(cfg, spec, causal_encoder=causal).double().eval()
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.self_attn.out_proj.weight.mul_(4.0)
            layer.cross_attn.out_proj.weight.mul_(4.0)
        model.tgt_embed.weight[cfg.eos_id].mul_(-1.5)
    return model


def sources(seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, SV, (n,), generator=g).tolist() for n in LENGTHS]


def check_same(agent, srcs):
    alone = [agent.translate(s, return_logits=True) for s in srcs]
    batch = translate_batch(agent, srcs, return_logits=True)
    assert len(batch) == len(srcs)
    for a, b in zip(alone, batch):
        assert b.tokens == a.tokens
        assert b.delays == a.delays
        assert (b.source_length, b.finished, b.decoder_steps) == \
            (a.source_length, a.finished, a.decoder_steps)
        assert len(b.elapsed) == len(b.tokens)
        assert all(x <= y for x, y in zip(b.elapsed, b.elapsed[1:]))
        torch.testing.assert_close(torch.stack(b.logits), torch.stack(a.logits),
                                   rtol=1e-9, atol=1e-9)
    return alone


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("spec", ["softmax", "leap"])
def test_batch_equals_one_at_a_time(spec, k):
    agent = SimulAgent(make_model(spec), k, max_len_a=1.0, max_len_b=3, compile_step=False)
    alone = check_same(agent, sources())
    # not vacuous: the sentences stop at different rounds
    assert len({len(r.tokens) for r in alone}) > 1


@pytest.mark.parametrize("spec", ["softmax", "enc=leap,dec=linear,cross=softmax,cross.0=leap"])
def test_batch_reencode_bidirectional(spec):
    agent = SimulAgent(make_model(spec, causal=False), 2, max_len_a=1.0, max_len_b=2,
                       encoder="reencode", compile_step=False)
    check_same(agent, sources(seed=3))


def test_batch_with_traced_step(monkeypatch):
    """The fused step (traced by dynamo, run by its eager backend: no C++ compile here)
    serves the batch from the first step, with the same results."""
    monkeypatch.setattr(fused_step, "COMPILE_AFTER", 0)
    monkeypatch.setattr(fused_step, "BACKEND", "eager")
    model = make_model("enc=leap,dec=leap,cross=softmax,dec.0=softmax")
    eager = SimulAgent(model, 2, max_len_a=1.0, max_len_b=3, compile_step=False)
    fused = SimulAgent(model, 2, max_len_a=1.0, max_len_b=3)
    srcs = sources(seed=5)
    want = [eager.translate(s, return_logits=True) for s in srcs]
    got = translate_batch(fused, srcs, return_logits=True)
    assert fused.step.compiled
    for a, b in zip(want, got):
        assert b.tokens == a.tokens and b.delays == a.delays
        torch.testing.assert_close(torch.stack(b.logits), torch.stack(a.logits),
                                   rtol=1e-9, atol=1e-9)


def test_batch_bad_input():
    agent = SimulAgent(make_model("leap"), 2, compile_step=False)
    with pytest.raises(ValueError, match="sources"):
        translate_batch(agent, [])
    with pytest.raises(ValueError, match="src_ids"):
        translate_batch(agent, [[5, 6], []])
    with pytest.raises(TypeError, match="agent"):
        translate_batch(object(), [[5]])
