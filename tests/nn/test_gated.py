"""The gated mechanisms ``gla`` and ``gated-leap``: registered, the causal forward equals
the GLA formula written from the layer's parameters, a training step updates every
parameter, decoding (step by step, prefill, padded prompts, a causal LM) equals the
full causal forward, and non-causal calls are the ungated mechanisms."""

import math

import pytest
import torch

from leapformer.models import CausalLM, LMConfig
from leapformer.nn import MECHANISMS, BlockConfig, Decoder, MultiheadAttention
from leapformer.nn.mechanisms import GatedLeaP, GatedLinear, build_mechanism

pytestmark = pytest.mark.usefixtures("one_thread")

GATED = ["gla", "gated-leap"]
E, H = 16, 2
D = E // H


def test_registry_names():
    assert MECHANISMS["gla"] is GatedLinear and MECHANISMS["gated-leap"] is GatedLeaP
    assert all(MECHANISMS[n].full for n in GATED)
    m = build_mechanism("gated-leap", num_heads=2, head_dim=8, tau=4, gate_rank=3, hidden=2)
    assert m.tau == 4.0 and m.gate[0].out_features == 3 and m.leap_q.hidden == 2
    with pytest.raises(TypeError, match="bad options for mechanism 'gla': tau must be a number"):
        build_mechanism("gla", num_heads=2, head_dim=8, tau="16")
    with pytest.raises(ValueError, match="tau must be a positive finite number"):
        build_mechanism("gla", num_heads=2, head_dim=8, tau=0.0)
    with pytest.raises(ValueError, match="gate_rank must be positive"):
        build_mechanism("gla", num_heads=2, head_dim=8, gate_rank=0)


def _heads(x, w, b):
    B, T, _ = x.shape
    return (x @ w.T + b).view(B, T, H, D).transpose(1, 2)


def _explicit(mha, x, mask):
    """GLA's weights from the layer's parameters: ``a = sigmoid(gate(k))^(1/tau)``,
    ``w_ij = sum_d relu(q_i)_d relu(k_j)_d prod_{j<t<=i} a_t,d`` (times the LeaP cosine)."""
    (wq, bq), (wk, bk), (wv, bv) = mha.projection_weights()
    q, k, v = _heads(x, wq, bq), _heads(x, wk, bk), _heads(x, wv, bv)
    mech = mha.attention
    if getattr(mech, "q_scale", False):
        q = q * D ** -0.5
    B, _, T, _ = q.shape
    g1, g2 = mech.gate[0], mech.gate[1]
    logits = (k.transpose(1, 2).reshape(B, T, E) @ g1.weight.T) @ g2.weight.T + g2.bias
    a = torch.sigmoid(logits.view(B, T, H, D).transpose(1, 2)) ** (1 / mech.tau)
    a = a.masked_fill(mask[:, None, :, None], 1.0)  # padded slots decay nothing
    fq, fk = q.clamp(min=0), k.clamp(min=0)
    w = torch.zeros(B, H, T, T, dtype=x.dtype)
    for i in range(T):
        for j in range(i + 1):
            decay = a[:, :, j + 1:i + 1].prod(2)  # [B, H, D]
            w[:, :, i, j] = (fq[:, :, i] * fk[:, :, j] * decay).sum(-1)
    if mech.name == "gated-leap":
        def net(seq, z):
            return torch.sigmoid(torch.relu(z @ seq[0].weight.T + seq[0].bias) @ seq[2].weight.T
                                 + seq[2].bias)[..., 0]
        pq, pk = net(mech.leap_q.net, fq), net(mech.leap_k.net, fk)
        w = w * torch.cos(math.pi / 2 * (pq[..., :, None] - pk[..., None, :]))
    w = w.masked_fill(mask[:, None, None, :], 0.0)
    w = w / w.sum(-1, keepdim=True).clamp(min=0.1)
    o = (w @ v).transpose(1, 2).reshape(B, T, E)
    return mha.out_proj(o), w


@pytest.mark.parametrize(("mech", "options"), [("gla", {}), ("gated-leap", {}),
                                               ("gated-leap", {"q_scale": True})])
def test_causal_forward_equals_the_formula(mech, options):
    torch.manual_seed(0)
    mha = MultiheadAttention(E, H, mech, mechanism_options=options).double()
    with torch.no_grad():
        mha.attention.gate[1].bias.fill_(-1.0)  # a strong decay, so that it matters
    x = torch.randn(3, 7, E, dtype=torch.float64)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[1, 5:] = True
    mask[2, 2] = True
    out, w = mha(x, key_padding_mask=mask, causal=True, need_weights=True,
                 average_attn_weights=False)
    want, want_w = _explicit(mha, x, mask)
    torch.testing.assert_close(w, want_w)
    torch.testing.assert_close(out, want)
    out_chunk, _ = mha(x, key_padding_mask=mask, causal=True)
    torch.testing.assert_close(out_chunk, want)


@pytest.mark.parametrize("mech", GATED)
def test_a_training_step_updates_every_parameter(mech):
    torch.manual_seed(1)
    dec = Decoder(2, BlockConfig(d_model=E, nhead=H, dim_feedforward=24, dropout=0.1), mech,
                  cross=False)
    x = torch.randn(4, 40, E)
    target = torch.randn(4, 40, E)
    before = {n: p.detach().clone() for n, p in dec.named_parameters()}
    opt = torch.optim.SGD(dec.parameters(), lr=0.1)
    loss = (dec(x) - target).pow(2).mean()
    loss.backward()
    gate_grads = [p.grad for n, p in dec.named_parameters() if ".gate." in n]
    assert len(gate_grads) == 2 * 3 and all(g is not None and g.abs().sum() > 0 for g in gate_grads)
    opt.step()
    changed = [n for n, p in dec.named_parameters() if not torch.equal(p, before[n])]
    assert set(changed) == set(before)
    assert math.isfinite(loss.item())
    assert (dec(x) - target).pow(2).mean().item() < loss.item()


@pytest.mark.parametrize("mech", GATED)
@pytest.mark.parametrize("grad", [True, False])
def test_step_by_step_decoding_equals_the_full_forward(mech, grad):
    torch.manual_seed(2)
    options = {"gated-leap": {"q_scale": True}}  # the query scaling reaches every path
    dec = Decoder(2, BlockConfig(d_model=E, nhead=H, dim_feedforward=24, dropout=0.0), mech,
                  options, cross=False).double().eval()
    x = torch.randn(2, 9, E, dtype=torch.float64)
    with torch.set_grad_enabled(grad):  # no_grad takes the fused LeaP step
        full = dec(x)
        cache = dec.new_cache(2)
        steps = [dec(x[:, t:t + 1], cache=cache) for t in range(9)]
        torch.testing.assert_close(torch.cat(steps, 1), full)
        cache = dec.new_cache(2)
        parts = [dec(x[:, :4], cache=cache), dec(x[:, 4:7], cache=cache)]
        parts += [dec(x[:, t:t + 1], cache=cache) for t in (7, 8)]
        torch.testing.assert_close(torch.cat(parts, 1), full)
    assert cache.nbytes == 2 * 2 * H * (2 if mech == "gated-leap" else 1) * D * 16 * 8


@pytest.mark.parametrize("mech", GATED)
@torch.no_grad()
def test_causal_lm_decoding_with_padded_prompts(mech):
    torch.manual_seed(3)
    cfg = LMConfig(vocab_size=30, context_length=16, attention=mech, num_layers=2, d_model=E,
                   nhead=H, dim_feedforward=24, dropout=0.0)
    lm = CausalLM(cfg).double().eval()
    tokens = torch.randint(1, 30, (2, 8))
    full = lm(tokens)
    cache = lm.new_cache(2)
    steps = [lm(tokens[:, t:t + 1], cache=cache) for t in range(8)]
    torch.testing.assert_close(torch.cat(steps, 1), full)
    # item 1 left-padded by 3: its real tokens decode as when alone
    padded = tokens.clone()
    padded[1, :3] = 0
    mask = padded == 0
    cache = lm.new_cache(2)
    got = lm(padded, key_padding_mask=mask, cache=cache)
    alone = lm(tokens[1:, 3:])
    torch.testing.assert_close(got[1, 3:], alone[0])


@pytest.mark.parametrize(("mech", "plain"), [("gla", "linear"), ("gated-leap", "leap")])
def test_non_causal_calls_are_the_ungated_mechanism(mech, plain):
    torch.manual_seed(4)
    gated = MultiheadAttention(E, H, mech).double()
    ungated = MultiheadAttention(E, H, plain).double()
    ungated.load_state_dict(gated.state_dict(), strict=False)
    x = torch.randn(2, 6, E, dtype=torch.float64)
    mem = torch.randn(2, 5, E, dtype=torch.float64)
    torch.testing.assert_close(gated(x)[0], ungated(x)[0])
    torch.testing.assert_close(gated(x, mem)[0], ungated(x, mem)[0])
    assert not torch.allclose(gated(x, causal=True)[0], ungated(x, causal=True)[0])
