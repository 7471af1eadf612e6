"""cosFormer's normaliser: ``length="padded"`` (official LRA: the tensor length) against
``length="item"`` (each item's unpadded length), both against the formula of
docs/math.md §1.1 written out here."""

import math

import pytest
import torch

from leapformer.models import ClassifierConfig, SequenceClassifier
from leapformer.nn.mechanisms import CosFormer

pytestmark = pytest.mark.usefixtures("one_thread")

B, H, N, D = 2, 2, 9, 4


def _inputs():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, N, D, generator=g, dtype=torch.float64) for _ in range(3))
    pad = torch.zeros(B, N, dtype=torch.bool)
    pad[1, 6:] = True  # item 1 has 6 real tokens
    return q, k, v, pad


def _formula(q, k, v, pad, lengths, causal=False):
    """sum_j relu(q_i).relu(k_j) cos(pi/2 (i - j) / L) v_j / max(that without v_j, 0.1),
    positions 1-based, padded keys left out, L per item."""
    out = torch.zeros_like(q)
    for b in range(B):
        L = float(lengths[b])
        for i in range(N):
            num, den = torch.zeros(H, D, dtype=q.dtype), torch.zeros(H, dtype=q.dtype)
            for j in range(N):
                if pad[b, j] or (causal and j > i):
                    continue
                w = (torch.relu(q[b, :, i]) * torch.relu(k[b, :, j])).sum(-1) * \
                    math.cos(math.pi / 2 * (i - j) / L)
                num += w[:, None] * v[b, :, j]
                den += w
            out[b, :, i] = num / den.clamp_min(0.1)[:, None]
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_padded_uses_the_tensor_length_and_item_the_unpadded_one(causal):
    q, k, v, pad = _inputs()
    item_len = (~pad).sum(-1).double()
    kw = dict(causal=causal, key_padding_mask=pad, q_len=item_len, k_len=item_len)
    padded = CosFormer(H, D, length="padded").double()(q, k, v, **kw)[0]
    item = CosFormer(H, D, length="item").double()(q, k, v, **kw)[0]
    default = CosFormer(H, D).double()(q, k, v, **kw)[0]
    tol = dict(rtol=1e-5, atol=1e-6)  # the mechanism's proportions are float32
    torch.testing.assert_close(padded, _formula(q, k, v, pad, [N, N], causal), **tol)
    torch.testing.assert_close(item, _formula(q, k, v, pad, item_len.tolist(), causal), **tol)
    torch.testing.assert_close(default, item, rtol=0, atol=0)  # item is the default
    # the unpadded item: padded differs from item only through L
    assert not torch.allclose(padded[1, :, :6], item[1, :, :6])
    torch.testing.assert_close(padded[0], item[0])  # no padding: one and the same


def test_padded_ignores_given_lengths_in_cross_attention():
    q, k, v, pad = _inputs()
    q = q[:, :, :5]
    given = torch.tensor([3.0, 4.0], dtype=torch.float64)
    mech = CosFormer(H, D, length="padded").double()
    out = mech(q, k, v, key_padding_mask=pad, q_len=given, k_len=given)[0]
    # i / M and j / N with M = 5, N = 9 (the tensors' lengths)
    qp = (torch.arange(1, 6, dtype=torch.float64) / 5).expand(B, H, 5)
    kp = (torch.arange(1, N + 1, dtype=torch.float64) / N).expand(B, H, N)
    w = torch.relu(q) @ torch.relu(k).transpose(-1, -2) * \
        torch.cos(math.pi / 2 * (qp[..., :, None] - kp[..., None, :]))
    w = w.masked_fill(pad[:, None, None, :], 0.0)
    ref = (w @ v) / w.sum(-1, keepdim=True).clamp_min(0.1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_in_the_classifier_padded_depends_on_the_tensor_length_unless_fixed():
    def model(**kw):
        torch.manual_seed(0)
        cfg = ClassifierConfig(vocab_size=12, num_classes=3, max_length=24, attention="cosformer",
                               d_model=16, dim_feedforward=32, **kw)
        return SequenceClassifier(cfg).double().eval()

    tokens = torch.randint(1, 12, (1, 10))
    longer = torch.cat((tokens, torch.zeros(1, 6, dtype=torch.long)), dim=1)  # batch-padded
    item = model()
    torch.testing.assert_close(item(tokens), item(longer))
    padded = model(mechanism_options={"length": "padded"})
    assert not torch.allclose(padded(tokens), padded(longer))
    fixed = model(mechanism_options={"length": "padded"}, pad_to=20)  # as the paper profile
    torch.testing.assert_close(fixed(tokens), fixed(longer))


def test_errors():
    with pytest.raises(ValueError, match="length must be one of"):
        CosFormer(H, D, length="tensor")
