"""``linearize`` on tiny GPT-2 and Llama: the swapped attention against an independent
quadratic computation of LeaP / ReLU linear attention from the layer's own weights
(values and gradients; padding, length 1, GQA, rotary), decoding through the key/value
cache, partial linearisation, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leapformer.hf import CACHE_ARGUMENT
from leapformer.linearize import (
    attention_modules,
    linear_cores,
    linearize,
    new_parameters,
    softmax_mode,
)

from ._tiny import ARCHS, VOCAB, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def _qkv(arch: str, module: nn.Module, h: torch.Tensor, kwargs: dict):
    """The layer's queries, keys and values ``[B, heads, T, D]``, computed here from its
    weights (GPT-2: fused Conv1D; Llama: separate projections then rotary)."""
    B, T, E = h.shape
    D = module.head_dim
    if arch == "gpt2":
        qkv = h @ module.c_attn.weight + module.c_attn.bias
        q, k, v = qkv.split(E, dim=-1)
        return [x.view(B, T, -1, D).transpose(1, 2) for x in (q, k, v)]
    q = (h @ module.q_proj.weight.T).view(B, T, -1, D).transpose(1, 2)
    k = (h @ module.k_proj.weight.T).view(B, T, -1, D).transpose(1, 2)
    v = (h @ module.v_proj.weight.T).view(B, T, -1, D).transpose(1, 2)
    cos, sin = (x[:, None] for x in kwargs["position_embeddings"])

    def rotate(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    return q * cos + rotate(q) * sin, k * cos + rotate(k) * sin, v


def _leap_net(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``sigmoid(W2 relu(W1 x + b1) + b2)`` written out."""
    lin1, lin2 = net[0], net[2]
    return torch.sigmoid(F.relu(x @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias)[..., 0]


def _hedgehog(m, x):
    z = torch.einsum("bhtd,hde->bhte", x, m.weight) + m.bias[None, :, None, :]
    return torch.cat((torch.softmax(z, -1), torch.softmax(-z, -1)), dim=-1)


def reference(arch, module, h, kwargs, pad):
    """The attention module's output ``[B, T, E]``, quadratic form, from scratch."""
    core = module.linear_core
    q, k, v = _qkv(arch, module, h, kwargs)
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    if core.feature_map_name == "hedgehog":
        fq, fk = _hedgehog(core.phi_q, q), _hedgehog(core.phi_k, k)
    else:
        fq, fk = F.relu(q), F.relu(k)
    w = fq @ fk.transpose(-1, -2)  # [B, H, T, T]
    if core.mechanism == "leap":
        pq, pk = _leap_net(core.leap_q.net, F.relu(q)), _leap_net(core.leap_k.net, F.relu(k))
        w = w * torch.cos(math.pi / 2 * (pq[..., :, None] - pk[..., None, :]))
    T = h.shape[1]
    allowed = torch.ones(T, T, dtype=torch.bool).tril()[None, None]
    if pad is not None:
        allowed = allowed & ~pad[:, None, None, :]
    w = w * allowed
    o = (w @ v) / w.sum(-1, keepdim=True).clamp_min(core.eps)
    o = o.transpose(1, 2).reshape(h.shape[0], T, -1)
    if arch == "gpt2":
        return o @ module.c_proj.weight + module.c_proj.bias
    return o @ module.o_proj.weight.T


def _capture(model, layer, input_ids, attention_mask):
    """``(args, kwargs)`` the attention module of ``layer`` is called with."""
    seen = {}
    module = attention_modules(model)[layer]

    def hook(mod, args, kwargs):
        seen["args"], seen["kwargs"] = args, dict(kwargs)

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        handle.remove()
    return module, seen["args"], seen["kwargs"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mechanism,feature_map", [("leap", "relu"), ("linear", "relu"),
                                                   ("leap", "hedgehog")])
@pytest.mark.parametrize("T,padded", [(7, False), (9, True), (1, False)])
def test_layer_matches_reference(arch, mechanism, feature_map, T, padded):
    model = tiny(arch, dtype=torch.float64, sharp=3.0)
    linearize(model, mechanism, feature_map=feature_map)
    with torch.no_grad():  # a non-identity Hedgehog map, LeaP away from its init
        for p in new_parameters(model):
            p.add_(0.3 * torch.randn_like(p))
    g = torch.Generator().manual_seed(T)
    ids = torch.randint(0, VOCAB, (2, T), generator=g)
    mask = torch.ones(2, T, dtype=torch.long)
    if padded:
        mask[1, :3] = 0  # left padding
    module, args, kwargs = _capture(model, 1, ids, mask)
    h_in = args[0] if args else kwargs.pop("hidden_states")
    h = h_in.detach().clone().requires_grad_(True)
    call_args = (h,) + tuple(args[1:]) if args else ()
    call_kwargs = kwargs if args else {**kwargs, "hidden_states": h}
    out = module(*call_args, **call_kwargs)[0]
    pad = (mask == 0) if padded else None
    h_ref = h_in.detach().clone().requires_grad_(True)
    ref = reference(arch, module, h_ref, kwargs, pad)
    real = mask.bool()
    assert out.shape == ref.shape
    torch.testing.assert_close(out[real], ref[real], rtol=1e-9, atol=1e-10)
    # gradients: hidden states and the new parameters, through the real positions
    r = torch.randn(out.shape, generator=g, dtype=out.dtype) * real[..., None]
    params = list(module.linear_core.parameters())
    grads = torch.autograd.grad((out * r).sum(), [h, *params])
    grads_ref = torch.autograd.grad((ref * r).sum(), [h_ref, *params])
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mechanism", ["leap", "linear"])
def test_model_runs_finite_and_decodes_through_the_cache(arch, mechanism):
    model = tiny(arch)
    ids = torch.randint(0, VOCAB, (3, 12))
    with torch.no_grad():
        teacher = model(input_ids=ids).logits
    linearize(model, mechanism)
    assert model.config._attn_implementation == "leapformer_linear"
    with torch.no_grad():
        full = model(input_ids=ids).logits
        assert torch.isfinite(full).all()
        assert not torch.allclose(full, teacher, atol=1e-4)  # the attention did change
        # prompt, then tokens one by one through transformers' key/value cache
        out = model(input_ids=ids[:, :8], use_cache=True)
        steps = [out.logits]
        past = getattr(out, CACHE_ARGUMENT)
        for t in range(8, 12):
            out = model(input_ids=ids[:, t:t + 1], **{CACHE_ARGUMENT: past}, use_cache=True)
            steps.append(out.logits)
            past = getattr(out, CACHE_ARGUMENT)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)
    # training mode with gradients reaches the new parameters
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for p in new_parameters(model)]
    if mechanism == "leap":
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    else:
        assert grads == []


@pytest.mark.parametrize("arch", ARCHS)
def test_some_layers_and_softmax_mode(arch):
    model = tiny(arch)
    ids = torch.randint(0, VOCAB, (2, 10))
    with torch.no_grad():
        teacher = model(input_ids=ids).logits
    linearize(model, "leap", layers=[1])
    assert sorted(linear_cores(model)) == [1]
    assert not hasattr(attention_modules(model)[0], "linear_core")
    with torch.no_grad():
        with softmax_mode(model):
            torch.testing.assert_close(model(input_ids=ids).logits, teacher)
        assert not torch.allclose(model(input_ids=ids).logits, teacher, atol=1e-4)
    # LeaP: two networks per layer, head_dim 8 / step-down 4 -> 8*2+2 + 2+1 each
    assert sum(p.numel() for p in new_parameters(model)) == 2 * (8 * 2 + 2 + 2 + 1)


def test_bad_input():
    model = tiny("gpt2")
    with pytest.raises(TypeError, match="PreTrainedModel"):
        linearize(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="mechanism must be one of"):
        linearize(model, "softmax")
    with pytest.raises(ValueError, match="feature_map must be one of"):
        linearize(model, feature_map="elu")
    with pytest.raises(ValueError, match="layers holds 2; the model has layers 0..1"):
        linearize(model, layers=[0, 2])
    with pytest.raises(ValueError, match="twice"):
        linearize(model, layers=[1, 1])
    with pytest.raises(ValueError, match="layers must be 'all'"):
        linearize(model, layers="some")
    assert not linear_cores(model)  # nothing was attached by the failed calls
    linearize(model)
    with pytest.raises(ValueError, match="already linearised"):
        linearize(model)


@pytest.mark.parametrize("arch", ARCHS)
def test_failed_linearize_leaves_the_model_as_it_was(arch, monkeypatch):
    from leapformer.linearize.core import LinearCore

    model = tiny(arch)
    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        teacher = model(input_ids=ids).logits
    attn = model.config._attn_implementation
    hooks = [(len(m._forward_pre_hooks), len(m._forward_hooks))
             for m in attention_modules(model)]

    def boom(self, *args, **kwargs):
        raise RuntimeError("probe failed")

    with monkeypatch.context() as mp:
        mp.setattr(LinearCore, "forward", boom)
        with pytest.raises(RuntimeError, match="probe failed"):
            linearize(model)
    assert not linear_cores(model) and getattr(model, "leapformer_linearize", None) is None
    assert model.config._attn_implementation == attn
    assert [(len(m._forward_pre_hooks), len(m._forward_hooks))
            for m in attention_modules(model)] == hooks
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, teacher, rtol=0, atol=0)
    linearize(model)  # not refused as "already linearised"
    assert sorted(linear_cores(model)) == [0, 1]
