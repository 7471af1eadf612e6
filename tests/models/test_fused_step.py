"""The fused decoding step (``leapformer.models.fused_step``): compiled with inductor it
equals the eager modules at every position, compiles once for all positions, falls back
to eager when compiling fails, and serves ``generate`` with the eager path's tokens."""

import logging

import pytest
import torch
from torch._dynamo.utils import counters

from leapformer.models import CausalLM, FusedDecoderStep, LMConfig, generate
from leapformer.models import fused_step
from leapformer.nn import AttentionSpec, BlockConfig, Decoder

pytestmark = pytest.mark.usefixtures("one_thread")

# every code path of the step in two layers: softmax and LeaP self-attention, LeaP and
# softmax cross-attention
HYBRID = "dec=leap,cross=softmax,dec.0=softmax,cross.0=leap"


def hybrid_decoder(seed=0):
    torch.manual_seed(seed)
    block = BlockConfig(d_model=32, nhead=2, dim_feedforward=64, dropout=0.0)
    spec = AttentionSpec.parse(HYBRID + ",enc=softmax")
    return Decoder(2, block, spec).eval()


def caches(dec, memory, pad, prompt, prompt_pad, max_length=40):
    """Two identical caches: cross-attention over a padded memory, a left-padded prompt."""
    out = []
    for _ in range(2):
        c = dec.new_cache(3, max_length=max_length, memory=memory, memory_key_padding_mask=pad)
        dec(prompt, cache=c, tgt_key_padding_mask=prompt_pad)
        out.append(c)
    return out


@torch.no_grad()
def test_compiled_step_equals_eager_and_compiles_once():
    dec = hybrid_decoder()
    g = torch.Generator().manual_seed(1)
    memory = torch.randn(3, 5, 32, generator=g)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[1, 3:] = True
    prompt = torch.randn(3, 4, 32, generator=g)
    prompt_pad = torch.zeros(3, 4, dtype=torch.bool)
    prompt_pad[2, :2] = True  # a left-padded prompt: the softmax cache keeps its padding
    fused_cache, eager_cache = caches(dec, memory, pad, prompt, prompt_pad)
    step = FusedDecoderStep(dec, compile_after=0)
    torch._dynamo.reset()
    counters.clear()
    for i in range(20):
        if i in (7, 13):  # more source arrives between steps
            more = torch.randn(3, 1, 32, generator=g)
            dec.extend_memory(fused_cache, more)
            dec.extend_memory(eager_cache, more)
        x = torch.randn(3, 1, 32, generator=g)
        got = step(x, fused_cache)
        assert step.compiled, f"step {i} ran eagerly"
        want = dec(x, cache=eager_cache)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1  # one compile for 20 positions
    # ... and for new caches of another capacity (generate makes one per call)
    other, other_eager = caches(dec, memory, pad, prompt, prompt_pad, max_length=57)
    for _ in range(3):
        x = torch.randn(3, 1, 32, generator=g)
        torch.testing.assert_close(step(x, other), dec(x, cache=other_eager),
                                   rtol=1e-5, atol=1e-5)
        assert step.compiled
    assert counters["stats"]["unique_graphs"] == 1
    # the caches advanced alike (counters and state)
    for a, b in zip(fused_cache.layers, eager_cache.layers):
        assert (a.self_attn.length, a.self_attn.queries, a.cross_attn.queries) == \
            (b.self_attn.length, b.self_attn.queries, b.cross_attn.queries)
        torch.testing.assert_close(a.self_attn.real_length, b.self_attn.real_length)
        for name, t in b.self_attn.tensors.items():
            if name == "pad":
                assert torch.equal(a.self_attn.tensors[name], t)
            elif name == "s":
                torch.testing.assert_close(a.self_attn.tensors[name], t, rtol=1e-5, atol=1e-5)
            else:  # softmax buffers: the filled slots
                n = b.self_attn.length
                torch.testing.assert_close(a.self_attn.tensors[name][:, :, :n], t[:, :, :n])


def failing_backend(gm, example_inputs):
    raise RuntimeError("no compiler here")


@torch.no_grad()
def test_compile_failure_falls_back_to_eager(caplog):
    dec = hybrid_decoder(seed=2)
    memory = torch.randn(2, 3, 32)
    fused_cache, eager_cache = (dec.new_cache(2, max_length=8, memory=memory) for _ in range(2))
    step = FusedDecoderStep(dec, compile_after=0, backend=failing_backend)
    with caplog.at_level(logging.WARNING, logger="leapformer.models.fused_step"):
        for _ in range(3):
            x = torch.randn(2, 1, 32)
            torch.testing.assert_close(step(x, fused_cache), dec(x, cache=eager_cache))
            assert not step.compiled
    assert not step.enabled
    warnings = [r for r in caplog.records if "decoding eagerly" in r.getMessage()]
    assert len(warnings) == 1 and "no compiler here" in warnings[0].getMessage()


def backend_failing_at_run(gm, example_inputs):
    def run(*args):
        raise ValueError("bad state at run time")
    return run


@torch.no_grad()
def test_errors_of_running_compiled_code_are_not_hidden():
    dec = hybrid_decoder(seed=2)
    cache = dec.new_cache(2, max_length=8, memory=torch.randn(2, 3, 32))
    step = FusedDecoderStep(dec, compile_after=0, backend=backend_failing_at_run)
    step(torch.randn(2, 1, 32), cache)  # eager: no past key yet
    with pytest.raises(ValueError, match="bad state at run time"):
        step(torch.randn(2, 1, 32), cache)
    assert step.enabled  # not turned off: it was no compiler failure


@torch.no_grad()
def test_compile_failure_after_a_compiled_step_is_raised():
    dec = hybrid_decoder(seed=2)
    cache = dec.new_cache(2, max_length=8, memory=torch.randn(2, 3, 32))
    step = FusedDecoderStep(dec, compile_after=0, backend=failing_backend)
    step(torch.randn(2, 1, 32), cache)  # eager: no past key yet
    step.compiled_once = True  # as if an earlier step had compiled and run
    with pytest.raises(Exception, match="no compiler here"):
        step(torch.randn(2, 1, 32), cache)
    assert step.enabled


@torch.no_grad()
def test_eager_until_compile_after_and_when_not_covered():
    dec = hybrid_decoder(seed=3)
    memory = torch.randn(1, 3, 32)
    c = dec.new_cache(1, max_length=8, memory=memory)
    step = FusedDecoderStep(dec, compile_after=2, backend=failing_backend)
    step(torch.randn(1, 1, 32), c)
    step(torch.randn(1, 1, 32), c)
    assert step.enabled and not step.compiled  # not yet tried
    torch.manual_seed(0)
    cos = Decoder(1, BlockConfig(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0),
                  "cosformer", cross=False).eval()
    assert not FusedDecoderStep(cos).enabled


def tiny_lm(attention, seed=0):
    torch.manual_seed(seed)
    cfg = LMConfig(vocab_size=29, attention=attention, num_layers=2, d_model=16, nhead=2,
                   dim_feedforward=32, dropout=0.0, context_length=64)
    return CausalLM(cfg).eval()


PROMPTS = [[5, 6, 7, 8], [9], [10, 11]]  # left-padded to one batch


@pytest.mark.parametrize("attention", [["softmax", "leap"], "cosformer"])
def test_generate_with_fused_step(monkeypatch, attention):
    """Dynamo traces the step (its eager backend: no C++ compile here) from the first
    token; the tokens are the eager path's. cosFormer is not covered: eager."""
    monkeypatch.setattr(fused_step, "COMPILE_AFTER", 0)
    monkeypatch.setattr(fused_step, "BACKEND", "eager")
    model = tiny_lm(attention)
    want = generate(model, PROMPTS, 12, compile_step=False)
    got = generate(model, PROMPTS, 12)
    assert got == want
    (step,) = fused_step._SHARED[model].values()  # the model's shared step, made by generate
    assert step.steps == 11
    assert step.compiled == (attention != "cosformer")
    sampled = [generate(model, PROMPTS, 9, strategy="sample", seed=4, compile_step=c)
               for c in (False, True)]
    assert sampled[0] == sampled[1]


def test_generate_compile_step_type():
    with pytest.raises(TypeError, match="compile_step"):
        generate(tiny_lm("leap"), PROMPTS, 2, compile_step="yes")
