"""torch.autograd.gradcheck in float64 for each form."""

import pytest
import torch

from leapformer.ops import LinearAttentionState, leap_attention, linear_attention

from .helpers import make_inputs


@pytest.mark.parametrize("mode", ["parallel", "chunk", "recurrent"])
@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_leap(mode, causal):
    q, k, v, qp, kp, mask = make_inputs(1, 2, 5, 5, 3, 2, grad=True, pad_lengths=[4])
    q.data.abs_()  # stay away from the ReLU kink and the clamp, where gradients jump
    k.data.abs_()

    def f(q, k, v, qp, kp):
        return leap_attention(q, k, v, qp, kp, causal=causal, key_padding_mask=mask, mode=mode,
                              chunk_size=2, normalize="eps")

    assert torch.autograd.gradcheck(f, (q, k, v, qp, kp))


@pytest.mark.parametrize("mode", ["parallel", "chunk", "recurrent"])
def test_gradcheck_linear_with_state(mode):
    q, k, v, *_ = make_inputs(1, 1, 4, 4, 3, 2, grad=True, seed=5)
    s0 = LinearAttentionState.zeros(1, 1, 1, 3, 2, dtype=torch.float64)
    s = s0.s.clone()
    s[..., :3] = torch.rand(1, 1, 1, 3, 3, dtype=torch.float64)
    s.requires_grad_(True)

    def f(q, k, v, s):
        o, st = linear_attention(q, k, v, feature_map="elu", causal=True, mode=mode,
                                 chunk_size=3, initial_state=LinearAttentionState(s, 2),
                                 output_final_state=True)
        return o, st.s

    assert torch.autograd.gradcheck(f, (q, k, v, s))


def test_gradcheck_chunk_scan():
    from leapformer.ops._scan import chunk_states

    g = torch.Generator().manual_seed(0)
    kv = torch.randn(1, 2, 4, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    s0 = torch.randn(1, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    prev, final = chunk_states(kv, s0)
    want = torch.cat((torch.zeros_like(kv[:, :, :1]), kv.cumsum(2)), 2) + s0.unsqueeze(2)
    torch.testing.assert_close(prev, want[:, :, :4])
    torch.testing.assert_close(final, want[:, :, 4])
    assert torch.autograd.gradcheck(lambda a, b: chunk_states(a, b), (kv, s0))
    assert torch.autograd.gradcheck(lambda a, b: chunk_states(a, b)[0], (kv, s0))
    assert torch.autograd.gradcheck(lambda a, b: chunk_states(a, b)[1], (kv, s0))
