"""Simultaneous wait-k agent: the incremental agent (causal encoder, extended
cross-attention state, MLA Algorithm 1) equals recomputing everything from
scratch at every step; wait-k with k >= |x| is offline greedy; delays follow
the schedule; re-encoding with a causal encoder gives the incremental tokens."""

import pytest
import torch

from leapformer.models import (
    Seq2Seq,
    Seq2SeqConfig,
    SimulAgent,
    greedy,
    simultaneous_greedy,
)
from leapformer.ops import waitk_prefix

SV, TV = 19, 23
SPECS = ["softmax", "linear", "leap", "enc=leap,dec=linear,cross=softmax,dec.1=leap,cross.0=linear"]
IDS = ["softmax", "linear", "leap", "mixed"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(spec="leap", *, causal=True, layers=2, seed=0, length_predictor=None):
    """A tiny float64 model whose attention matters, EOS made unlikely (long outputs)."""
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(SV, TV, d_model=16, nhead=2, num_encoder_layers=2,
                        num_decoder_layers=layers, dim_feedforward=32, dropout=0.0)
    model = Seq2Seq(cfg, spec, length_predictor, causal_encoder=causal).double().eval()
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.self_attn.out_proj.weight.mul_(4.0)
            layer.cross_attn.out_proj.weight.mul_(4.0)
        model.tgt_embed.weight[cfg.eos_id].mul_(-1.0)
    return model


def source(n=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, SV, (n,), generator=g).tolist()


def reference_logits(model, src, res, k):
    """Per step, from scratch: encode the source read so far (causally, EOS once the
    source is finished), run the decoder teacher-forced on BOS + tokens written, each
    target position seeing the source it had read when it was computed (wait-k)."""
    n = len(src)
    full = src + [model.cfg.eos_id]
    out = []
    for t in range(1, res.decoder_steps + 1):
        g = min(k + t - 1, n)
        read = n + 1 if g >= n else g
        x = torch.tensor([full[:read]])
        tgt_in = torch.tensor([[model.cfg.bos_id] + res.tokens[:t - 1]])
        seen = [n + 1 if min(k + i - 1, n) >= n else k + i - 1 for i in range(1, t + 1)]
        logits = model(x, None, tgt_in, memory_prefix=torch.tensor([seen]))
        out.append(logits[0, -1])
    return out


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("k", [1, 3])
@torch.no_grad()
def test_incremental_logits_equal_recomputing_from_scratch(spec, k):
    model = make_model(spec)
    src = source()
    res = simultaneous_greedy(model, src, k, max_len_a=1.0, max_len_b=3, return_logits=True)
    assert res.decoder_steps >= len(src) and res.oracle == []
    ref = reference_logits(model, src, res, k)
    assert len(ref) == len(res.logits)
    for step, (a, b) in enumerate(zip(res.logits, ref)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"step {step}")


@pytest.mark.parametrize("spec", ["leap", "softmax"])
@torch.no_grad()
def test_one_layer_decoder_equals_full_cross_attention_over_the_prefix(spec):
    """With one decoder layer no earlier hidden state depends on the source, so the
    from-scratch reference may give every position the whole prefix read so far."""
    model = make_model(spec, layers=1)
    src, k = source(6, seed=3), 2
    res = simultaneous_greedy(model, src, k, max_len_a=1.0, max_len_b=2, return_logits=True)
    full = src + [model.cfg.eos_id]
    for t, got in enumerate(res.logits, 1):
        g = min(k + t - 1, len(src))
        x = torch.tensor([full[:len(full) if g >= len(src) else g]])
        tgt_in = torch.tensor([[model.cfg.bos_id] + res.tokens[:t - 1]])
        torch.testing.assert_close(got, model(x, None, tgt_in)[0, -1], rtol=1e-10, atol=1e-10)


@torch.no_grad()
def test_multilayer_reference_needs_the_waitk_prefix():
    """The test above would be wrong with two decoder layers: the agent keeps the
    earlier positions' states (as wait-k training does), so the logits differ."""
    model = make_model("leap")
    src, k = source(), 1
    res = simultaneous_greedy(model, src, k, max_len_a=1.0, max_len_b=3, return_logits=True)
    t = 3
    x = torch.tensor([src[:k + t - 1]])
    tgt_in = torch.tensor([[model.cfg.bos_id] + res.tokens[:t - 1]])
    assert not torch.allclose(res.logits[t - 1], model(x, None, tgt_in)[0, -1])


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@torch.no_grad()
def test_waitk_at_least_source_length_equals_offline_greedy(spec):
    model = make_model(spec)
    for seed in range(3):
        src = source(5 + seed, seed=seed)
        want = greedy(model, torch.tensor([src + [model.cfg.eos_id]]), max_len_a=1.2,
                      max_len_b=2)[0]
        for k in (len(src), len(src) + 4):
            res = simultaneous_greedy(model, src, k, max_len_a=1.2, max_len_b=2)
            assert res.tokens == want
            assert res.delays == [len(src)] * len(want)


@pytest.mark.parametrize("k", [1, 2, 4])
@torch.no_grad()
def test_delays_follow_the_waitk_schedule(k):
    model = make_model("leap")
    src = source(6)
    res = simultaneous_greedy(model, src, k, max_len_a=1.5, max_len_b=4)
    assert len(res.tokens) > len(src)  # EOS was made unlikely: the schedule runs out
    assert res.delays == [min(k + t - 1, len(src)) for t in range(1, len(res.tokens) + 1)]
    assert len(res.elapsed) == len(res.tokens)
    assert all(b >= a for a, b in zip(res.elapsed, res.elapsed[1:])) and res.elapsed[0] >= 0
    assert len(res.tokens) == int(1.5 * 7 + 4)  # the length limit, |x| + 1 with EOS
    assert not res.finished and res.decoder_s > 0 and res.encoder_s > 0
    # the schedule is that of wait-k training (waitk_prefix, EOS read with the last token)
    sched = waitk_prefix(k, len(res.tokens), len(src))[0].tolist()
    assert res.delays == sched


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@torch.no_grad()
def test_reencode_with_a_causal_encoder_equals_incremental(spec):
    model = make_model(spec)
    src = source(8, seed=5)
    for k in (1, 3):
        a = simultaneous_greedy(model, src, k, max_len_a=1.0, max_len_b=2, return_logits=True)
        b = simultaneous_greedy(model, src, k, max_len_a=1.0, max_len_b=2, encoder="reencode",
                                return_logits=True)
        assert a.tokens == b.tokens and a.delays == b.delays
        for x, y in zip(a.logits, b.logits):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


@torch.no_grad()
def test_reencode_with_a_bidirectional_encoder_runs_and_differs_from_causal_semantics():
    model = make_model("leap", causal=False)
    src = source(8, seed=5)
    res = simultaneous_greedy(model, src, 2, max_len_a=1.0, max_len_b=2, encoder="reencode")
    assert res.delays == [min(2 + t - 1, 8) for t in range(1, len(res.tokens) + 1)]
    with pytest.raises(ValueError, match="causal encoder"):
        simultaneous_greedy(model, src, 2)


@torch.no_grad()
def test_cosformer_records_its_oracle_lengths():
    model = make_model("enc=cosformer,dec=leap,cross=cosformer", length_predictor="ratio")
    src = source(6)
    inc = simultaneous_greedy(model, src, 2, max_len_a=1.0, max_len_b=2)
    assert inc.oracle == ["source_length", "target_length"]
    ree = simultaneous_greedy(model, src, 2, max_len_a=1.0, max_len_b=2, encoder="reencode")
    assert ree.oracle == ["target_length"]
    leap = simultaneous_greedy(make_model("leap"), src, 2, max_len_a=1.0, max_len_b=2)
    assert leap.oracle == []
    # incremental cosFormer with the full source length equals offline greedy when k >= |x|
    want = greedy(model, torch.tensor([src + [3]]), max_len_a=1.0, max_len_b=2)[0]
    assert simultaneous_greedy(model, src, 6, max_len_a=1.0, max_len_b=2).tokens == want


def test_errors_name_the_argument():
    model = make_model("leap")
    with pytest.raises(ValueError, match="k must be a positive int"):
        SimulAgent(model, 0)
    with pytest.raises(ValueError, match="encoder must be one of"):
        SimulAgent(model, 2, encoder="fast")
    with pytest.raises(ValueError, match="max_len_a must be >= 0"):
        SimulAgent(model, 2, max_len_a=-1)
    with pytest.raises(TypeError, match="model must be a Seq2Seq"):
        SimulAgent(object(), 2)
    agent = SimulAgent(model, 2)
    with pytest.raises(ValueError, match="src_ids is empty"):
        agent.translate([])
    with pytest.raises(ValueError, match=r"src_ids\[1\] = 3 is a pad/bos/eos id"):
        agent.translate([5, 3])
    with pytest.raises(ValueError, match=r"src_ids\[0\] = 99"):
        agent.translate([99])
    with pytest.raises(ValueError, match="1-D integer tensor"):
        agent.translate(torch.ones(2, 2, dtype=torch.long))
