import torch

from leapformer.ops import softmax_attention

from .helpers import make_inputs


def _manual(q, k, v, causal, mask):
    s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    keep = torch.ones_like(s, dtype=torch.bool)
    if causal:
        keep = keep & torch.ones(s.shape[-2:], dtype=torch.bool).tril()
    if mask is not None:
        keep = keep & ~mask[:, None, None, :]
    p = torch.softmax(s.masked_fill(~keep, float("-inf")), -1).nan_to_num(0.0)
    return p @ v


def test_softmax_matches_manual_formula_with_masks():
    q, k, v, _, _, mask = make_inputs(2, 2, 7, 7, 4, pad_lengths=[7, 4])
    for causal in (False, True):
        for m in (None, mask):
            torch.testing.assert_close(softmax_attention(q, k, v, causal=causal, key_padding_mask=m),
                                       _manual(q, k, v, causal, m))


def test_rows_with_no_visible_key_are_zero():
    q, k, v, *_ = make_inputs(1, 1, 4, 4, 2)
    left_pad = torch.tensor([[True, True, False, False]])
    o = softmax_attention(q, k, v, causal=True, key_padding_mask=left_pad)
    assert torch.equal(o[0, 0, :2], torch.zeros(2, 2, dtype=o.dtype))
    torch.testing.assert_close(o, _manual(q, k, v, True, left_pad))
