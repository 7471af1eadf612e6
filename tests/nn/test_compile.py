"""The training path traces into one graph (no graph breaks) under torch.compile's frontend."""

import pytest
import torch
import torch._dynamo as dynamo

from leapformer.nn import MECHANISMS, MultiheadAttention

FULL = sorted(name for name, cls in MECHANISMS.items() if cls.full)


@pytest.mark.parametrize("mech", FULL)
def test_no_graph_breaks_on_training_forward(mech):
    mha = MultiheadAttention(16, 2, mech).train()
    x = torch.randn(2, 9, 16)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[1, 6:] = True
    dynamo.reset()
    report = dynamo.explain(lambda t: mha(t, key_padding_mask=mask, causal=True)[0])(x)
    assert report.graph_break_count == 0, [str(r.reason) for r in report.break_reasons]
    assert report.graph_count == 1
