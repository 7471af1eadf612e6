"""The unvalidated decoding step equals the recurrent form."""

import pytest
import torch

from leapformer.ops import LinearAttentionState, leap_attention, linear_attention
from leapformer.ops.linear_step import step_

from .helpers import make_inputs


@pytest.mark.parametrize("reweighted", [True, False])
@pytest.mark.parametrize("normalize", ["clamp", "eps", "none"])
def test_steps_equal_causal_call(reweighted, normalize):
    q, k, v, qp, kp, _ = make_inputs(2, 3, 9, 9, 4, 5, seed=1)
    eps = {"clamp": 0.1, "eps": 1e-6, "none": 0.0}[normalize]
    G = 2 if reweighted else 1
    kw = dict(causal=True, normalize=normalize, mode="parallel")
    ref = leap_attention(q, k, v, qp, kp, **kw) if reweighted else linear_attention(q, k, v, **kw)
    s = LinearAttentionState.zeros(2, 3, G, 4, 5, dtype=torch.float64).s
    outs = []
    for t in range(9):
        sl = slice(t, t + 1)
        props = torch.stack((qp[..., sl], kp[..., sl])) if reweighted else None
        f = torch.relu(torch.stack((q[:, :, sl], k[:, :, sl])))
        outs.append(step_(f, v[:, :, sl], s, props, normalize=normalize, eps=eps))
    torch.testing.assert_close(torch.cat(outs, 2), ref)
    _, final = (leap_attention(q, k, v, qp, kp, causal=True, output_final_state=True)
                if reweighted else linear_attention(q, k, v, causal=True, output_final_state=True))
    torch.testing.assert_close(s, final.s)
