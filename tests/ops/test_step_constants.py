"""The decoding step's cached constants never keep a tensor made while tracing."""

import pytest
import torch

from leapformer.ops import linear_step


class _AddShift(torch.nn.Module):
    def forward(self, x):
        return x + linear_step._constant("shift", 4, x.device, x.dtype)


@pytest.mark.parametrize("strict", [False, True])
def test_tracing_leaves_no_constant_behind(strict):
    linear_step._CONSTANTS.clear()
    torch.export.export(_AddShift(), (torch.zeros(4),), strict=strict)
    assert linear_step._CONSTANTS == {}
    out = _AddShift()(torch.zeros(4))  # eager: cached now, and a real tensor
    assert torch.allclose(out, torch.tensor([0.0, torch.pi / 2, 0.0, 0.0]))
    assert len(linear_step._CONSTANTS) == 1
