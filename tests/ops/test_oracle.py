"""The parallel oracle against the formula of docs/math.md §1 written out with loops."""

import pytest
import torch

from leapformer.ops import leap_attention, linear_attention

from .helpers import explicit_leap, make_inputs


@pytest.mark.parametrize("causal", [False, True])
def test_parallel_equals_explicit_formula(causal):
    q, k, v, qp, kp, mask = make_inputs(2, 2, 5, 5, 3, 4, pad_lengths=[5, 3])
    got = leap_attention(q, k, v, qp, kp, causal=causal, key_padding_mask=mask, mode="parallel")
    want = explicit_leap(q, k, v, qp, kp, causal=causal, mask=mask)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_cross_attention_explicit_formula():
    q, k, v, qp, kp, _ = make_inputs(1, 2, 3, 6, 4, 2, seed=3)
    got = leap_attention(q, k, v, qp, kp, mode="chunk")
    torch.testing.assert_close(got, explicit_leap(q, k, v, qp, kp), rtol=1e-12, atol=1e-12)


def test_linear_attention_is_katharopoulos_formula():
    q, k, v, *_ = make_inputs(1, 1, 4, 4, 3, seed=1)
    fq = torch.nn.functional.elu(q) + 1
    fk = torch.nn.functional.elu(k) + 1
    s = fq @ fk.transpose(-1, -2)
    want = (s.tril() @ v) / s.tril().sum(-1, keepdim=True)
    got = linear_attention(q, k, v, feature_map="elu", causal=True, mode="chunk")
    torch.testing.assert_close(got, want)


def test_returned_weights_are_normalised_rows():
    q, k, v, qp, kp, mask = make_inputs(2, 2, 6, 6, 4, pad_lengths=[6, 4], seed=2)
    q = q.abs() + 0.1  # keep every denominator above the clamp
    k = k.abs() + 0.1
    o, w = leap_attention(q, k, v, qp, kp, key_padding_mask=mask, return_weights=True)
    assert w.shape == (2, 2, 6, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 6, dtype=w.dtype))
    assert torch.all(w[1, :, :, 4:] == 0)
    torch.testing.assert_close(w @ v.masked_fill(mask[:, None, :, None], 0), o)


@pytest.mark.parametrize("normalize,eps", [("clamp", 0.1), ("eps", 1e-3), ("none", None)])
def test_normalisation_options(normalize, eps):
    q, k, v, qp, kp, _ = make_inputs(1, 1, 5, 5, 3, seed=4)
    num = leap_attention(q, k, v, qp, kp, normalize="none", mode="parallel")
    _, w = leap_attention(q, k, v, qp, kp, normalize="none", return_weights=True)
    den = w.sum(-1, keepdim=True)
    torch.testing.assert_close(num, w @ v)
    want = {"clamp": num / den.clamp_min(0.1), "eps": num / (den + 1e-3), "none": num}[normalize]
    for mode in ("parallel", "chunk", "recurrent"):
        got = leap_attention(q, k, v, qp, kp, normalize=normalize, eps=eps, mode=mode)
        torch.testing.assert_close(got, want)


def test_clamp_makes_empty_rows_zero_not_nan():
    q, k, v, qp, kp, _ = make_inputs(1, 1, 3, 3, 2)
    q = -q.abs()  # ReLU(q) = 0: every similarity is zero
    for mode in ("parallel", "chunk", "recurrent"):
        o = leap_attention(q, k, v, qp, kp, causal=True, mode=mode)
        assert torch.equal(o, torch.zeros_like(o))
