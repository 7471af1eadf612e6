"""LeaP's ``q_scale`` (fairseq LeaPformer: q x head_dim^-1/2 before the ReLU and LeaP_q)
against the formula of docs/math.md §1.3 written out here; the hidden size option."""

import math

import pytest
import torch

from leapformer.nn import MultiheadAttention
from leapformer.nn.mechanisms import LeaPAttention

pytestmark = pytest.mark.usefixtures("one_thread")

B, H, N, D = 2, 2, 7, 16


def _formula(mech, q, k, v, scale, causal):
    """relu(s q_i).relu(k_j) cos(pi/2 (P_q,i - P_k,j)) weights, P_q = LeaP_q(relu(s q)),
    P_k = LeaP_k(relu(k)), normalised by their sum clamped at 0.1."""
    fq, fk = torch.relu(q * scale), torch.relu(k)
    pq, pk = mech.leap_q(fq), mech.leap_k(fk)
    w = (fq @ fk.transpose(-1, -2)) * torch.cos(math.pi / 2 * (pq[..., :, None] - pk[..., None, :]))
    if causal:
        w = w.masked_fill(torch.ones(N, N, dtype=torch.bool).triu(1), 0.0)
    return (w @ v) / w.sum(-1, keepdim=True).clamp_min(0.1)


@pytest.mark.parametrize("causal", [False, True])
def test_q_scale_matches_formula(causal):
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, N, D, dtype=torch.float64) for _ in range(3))
    scaled = LeaPAttention(H, D, q_scale=True).double()
    plain = LeaPAttention(H, D).double()
    plain.load_state_dict(scaled.state_dict())
    out = scaled(q, k, v, causal=causal)[0]
    torch.testing.assert_close(out, _formula(scaled, q, k, v, D ** -0.5, causal))
    torch.testing.assert_close(plain(q, k, v, causal=causal)[0],
                               _formula(plain, q, k, v, 1.0, causal))
    assert not torch.allclose(out, plain(q, k, v, causal=causal)[0])  # the option acts


def test_q_scale_decoding_and_cross_attention_agree_with_the_full_forward():
    torch.manual_seed(1)
    mha = MultiheadAttention(2 * D, H, "leap", mechanism_options={"q_scale": True}).double().eval()
    x = torch.randn(B, N, 2 * D, dtype=torch.float64)
    full = mha(x, causal=True)[0]
    cache = mha.new_cache(B)
    steps = torch.cat([mha(x[:, t:t + 1], cache=cache)[0] for t in range(N)], dim=1)
    torch.testing.assert_close(steps, full)
    mem = torch.randn(B, 5, 2 * D, dtype=torch.float64)
    cross = mha(x, mem)[0]
    ccache = mha.new_cache(B, cross=True)
    torch.testing.assert_close(mha(x, mem, cache=ccache)[0], cross)


def test_hidden_size_and_errors():
    mech = LeaPAttention(H, 32, hidden=16)
    first, second = [m for m in mech.leap_q.net if isinstance(m, torch.nn.Linear)]
    assert (first.in_features, first.out_features, second.out_features) == (32, 16, 1)
    assert mech.leap_k.hidden == 16 and LeaPAttention(H, 32).leap_q.hidden == 8
    with pytest.raises(TypeError, match="q_scale must be a bool"):
        LeaPAttention(H, D, q_scale=1)
