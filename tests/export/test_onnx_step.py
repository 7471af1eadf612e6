"""The exported decoding step run in onnxruntime against PyTorch's own cached decoding
(``CausalLM.hidden_states(..., cache=)``) and the full forward, token by token."""

import numpy as np
import pytest
import torch

from leapformer.export import (
    DecodeStep,
    OnnxDecoder,
    check_exportable,
    export_onnx,
    initial_states,
)
from leapformer.models.generate import cosformer_length_mode, generate
from leapformer.models.lm import CausalLM, LMConfig

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 20
TOL = 1e-4
# a LeaP model and a ReLU-linear one of other sizes, positions and output layers, and
# per-layer mixes
CONFIGS = {
    "leap": dict(vocab_size=37, context_length=64, attention="leap", num_layers=1, d_model=32,
                 nhead=4, dim_feedforward=48, positions="learned",
                 mechanism_options={"step_down": 2}),
    "linear": dict(vocab_size=29, context_length=32, attention="linear", num_layers=2,
                   d_model=24, nhead=3, dim_feedforward=40, positions="sinusoidal",
                   tie_embeddings=False),
    # per-layer mixes: LeaP + ReLU-linear, and the gated mechanisms (decay in the state)
    "hybrid": dict(vocab_size=29, context_length=32, attention=["leap", "linear"],
                   num_layers=2, d_model=24, nhead=3, dim_feedforward=40,
                   mechanism_options={"leap": {"step_down": 2}}),
    "gated": dict(vocab_size=29, context_length=32, attention=["gla", "gated-leap"],
                  num_layers=2, d_model=24, nhead=3, dim_feedforward=40, tie_embeddings=False),
}


def _model(name: str, seed: int = 0) -> CausalLM:
    torch.manual_seed(seed)
    model = CausalLM(LMConfig(**CONFIGS[name]))
    with torch.no_grad():  # larger logits than the init's: argmax ties would hide errors
        model.embed.weight.mul_(3.0)
    return model


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def exported(request, tmp_path_factory):
    model = _model(request.param)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx")
    assert model.training  # the mode is restored
    return model.eval(), OnnxDecoder(path, threads=1)


def _eager_steps(model, tokens):
    """Logits [B, T, V] and the final states of PyTorch's cached decoding, one token a step."""
    cache = model.new_cache(tokens.shape[0])
    out = []
    with torch.no_grad(), cosformer_length_mode(model, "given"):
        for t in range(tokens.shape[1]):
            h = model.hidden_states(tokens[:, t:t + 1], target_length=model.cfg.context_length,
                                    cache=cache)
            out.append(model.project(h[:, -1]))
    return torch.stack(out, 1), [layer.self_attn.tensors["s"] for layer in cache.decoder.layers]


def test_onnx_steps_equal_pytorch_steps(exported):
    model, dec = exported
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, model.cfg.vocab_size, (2, STEPS), generator=gen)
    ref, ref_states = _eager_steps(model, tokens)
    with torch.no_grad():
        full = model(tokens)
    torch.testing.assert_close(ref, full, atol=TOL, rtol=TOL)  # the oracle agrees with itself
    states = dec.initial_states(2)
    assert [s.shape[1:] for s in states] == [tuple(s.shape[1:]) for s in ref_states]
    for t in range(STEPS):
        logits, states = dec.step(tokens[:, t].numpy(), np.full(2, t + 1), states)
        assert logits.shape == (2, model.cfg.vocab_size) and logits.dtype == np.float32
        np.testing.assert_allclose(logits, ref[:, t].numpy(), atol=TOL, rtol=TOL,
                                   err_msg=f"step {t + 1}")
    for s, r in zip(states, ref_states, strict=True):
        np.testing.assert_allclose(s, r.numpy(), atol=TOL, rtol=TOL)
    assert any(np.abs(s).max() > 0 for s in states)


def test_batch_items_at_their_own_positions(exported):
    """Batches of 1 and 3 (traced with 2); item 2 starts 7 steps after the others, from a
    zero state at position 1: each item decodes as it does alone."""
    model, dec = exported
    gen = torch.Generator().manual_seed(2)
    V = model.cfg.vocab_size
    long, short = torch.randint(0, V, (2, 12), generator=gen), torch.randint(0, V, (1, 5),
                                                                             generator=gen)
    alone = [_eager_steps(model, long[i:i + 1])[0][0] for i in range(2)]
    alone.append(_eager_steps(model, short)[0][0])
    single = dec.initial_states(1)
    for t in range(5):
        logits, single = dec.step(short[:, t].numpy(), [t + 1], single)
        np.testing.assert_allclose(logits[0], alone[2][t].numpy(), atol=TOL, rtol=TOL)
    states = dec.initial_states(3)
    for t in range(12):
        tok = [int(long[0, t]), int(long[1, t]), int(short[0, t - 7]) if t >= 7 else 0]
        pos = [t + 1, t + 1, max(t - 6, 1)]
        if t == 7:  # item 2 restarts: zero state
            for s in states:
                s[2] = 0
        logits, states = dec.step(tok, pos, states)
        for i in range(2):
            np.testing.assert_allclose(logits[i], alone[i][t].numpy(), atol=TOL, rtol=TOL)
        if t >= 7:
            np.testing.assert_allclose(logits[2], alone[2][t - 7].numpy(), atol=TOL, rtol=TOL)


@pytest.mark.parametrize("prompt", [[3], [5, 1, 4, 2]])
def test_greedy_generation_equals_pytorch(exported, prompt):
    model, dec = exported
    want = generate(model, [prompt], 12)[0]
    assert dec.generate(prompt, 12) == want
    assert dec.generate(prompt, 0) == []


@pytest.mark.parametrize("name", ["leap", "linear", "cosformer", "elu"])
def test_decode_step_module_is_pure(name):
    """The wrapper itself (eager): steps equal the model's cached decoding, inputs untouched."""
    cfg = dict(CONFIGS["leap"], attention=name, mechanism_options={})
    torch.manual_seed(3)
    model = CausalLM(LMConfig(**cfg)).eval()
    step = DecodeStep(model)
    tokens = torch.randint(0, cfg["vocab_size"], (3, 6))
    ref, ref_states = _eager_steps(model, tokens)
    states = initial_states(model, 3)
    with torch.no_grad(), cosformer_length_mode(model, "given"):
        for t in range(6):
            before = [s.clone() for s in states]
            logits, *new = step(tokens[:, t], torch.full((3,), t + 1), *states)
            assert all(torch.equal(a, b) for a, b in zip(before, states, strict=True))
            torch.testing.assert_close(logits, ref[:, t], atol=TOL, rtol=TOL)
            states = new
    for s, r in zip(states, ref_states, strict=True):
        torch.testing.assert_close(s, r)
    with pytest.raises(ValueError, match="expected 1 states .one per layer., got 0"):
        step(tokens[:, 0], torch.ones(3, dtype=torch.long))


def test_softmax_and_non_lm_are_refused(tmp_path):
    model = CausalLM(LMConfig(**dict(CONFIGS["linear"], attention="softmax")))
    for call in (lambda: export_onnx(model, tmp_path / "s.onnx"), lambda: DecodeStep(model),
                 lambda: check_exportable(model)):
        with pytest.raises(ValueError) as err:
            call()
        text = str(err.value)
        assert "\n" not in text and "'softmax'" in text and "grows with the length" in text
        assert "leap" in text
    assert not (tmp_path / "s.onnx").exists()
    hybrid = CausalLM(LMConfig(**dict(CONFIGS["hybrid"], attention=["softmax", "leap"],
                                      mechanism_options={})))
    with pytest.raises(ValueError) as err:
        export_onnx(hybrid, tmp_path / "h.onnx")
    text = str(err.value)
    assert "\n" not in text and "'softmax' (layer 0)" in text and "grows with the length" in text
    assert not (tmp_path / "h.onnx").exists()
    with pytest.raises(TypeError, match="must be a leapformer CausalLM, got Linear"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")


def test_bad_paths(tmp_path):
    model = _model("linear")
    with pytest.raises(ValueError, match="is a folder, not a file"):
        export_onnx(model, tmp_path)
    with pytest.raises(FileNotFoundError, match="no ONNX file at"):
        OnnxDecoder(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError) as err:
        OnnxDecoder(junk)
    assert "could not load" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="opset must be an int >= 18"):
        export_onnx(model, tmp_path / "old.onnx", opset=11)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        initial_states(model, 0)
