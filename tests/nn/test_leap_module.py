"""LeaP network against the formula of docs/math.md §1 written out in the test."""

import pytest
import torch

from leapformer.nn import LeaP


@pytest.mark.parametrize("step_down,hidden,expect_hidden", [(4, None, 8), (2, None, 16),
                                                             (4, 16, 16), (4, 1, 1)])
def test_leap_matches_formula(step_down, hidden, expect_hidden):
    torch.manual_seed(0)
    d = 32
    net = LeaP(d, step_down=step_down, hidden=hidden)
    assert net.hidden == expect_hidden
    x = torch.relu(torch.randn(3, 4, 9, d))
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    if expect_hidden == 1:
        (l1,) = linears
        ref = torch.sigmoid(x @ l1.weight.T + l1.bias)[..., 0]
        params = d + 1
    else:
        l1, l2 = linears
        h = torch.clamp(x @ l1.weight.T + l1.bias, min=0)
        ref = 1 / (1 + torch.exp(-(h @ l2.weight.T + l2.bias)))[..., 0]
        params = d * expect_hidden + expect_hidden + expect_hidden + 1
    out = net(x)
    assert out.shape == (3, 4, 9)
    torch.testing.assert_close(out, ref)
    assert ((out > 0) & (out < 1)).all()
    assert net.num_parameters == params


def test_leap_errors():
    with pytest.raises(ValueError, match="head_dim"):
        LeaP(0)
    with pytest.raises(ValueError, match="hidden"):
        LeaP(8, hidden=0)
    with pytest.raises(ValueError, match=r"\[\.\.\., 8\]"):
        LeaP(8)(torch.randn(2, 7))
