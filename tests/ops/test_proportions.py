import math

import pytest
import torch

from leapformer.ops import (
    cosformer_attention,
    cosformer_proportions,
    cross_proportions,
    leap_attention,
    reweighting,
)

from .helpers import make_inputs


def test_reweighting_is_sin_cos():
    p = torch.tensor([[[0.0, 0.5, 1.0]]])
    w = reweighting(p)
    r = math.sqrt(0.5)
    torch.testing.assert_close(w, torch.tensor([[[[0.0, 1.0], [r, r], [1.0, 0.0]]]]))


@pytest.mark.parametrize("T,L", [(6, None), (6, 10)])
def test_cosformer_weights_match_direct_formula(T, L):
    q, k, v, *_ = make_inputs(1, 2, T, T, 4, seed=7)
    _, w = cosformer_attention(q, k, v, max_length=L, causal=True, return_weights=True,
                               normalize="none")
    Lv = T if L is None else L
    i = torch.arange(1, T + 1, dtype=torch.float64)
    direct = (torch.relu(q) @ torch.relu(k).transpose(-1, -2)) * torch.cos(
        math.pi / 2 * (i[:, None] - i[None, :]) / Lv)
    torch.testing.assert_close(w, direct.tril())


def test_cosformer_proportions_official_indexing():
    p = cosformer_proportions(4)
    torch.testing.assert_close(p, torch.tensor([[[0.25, 0.5, 0.75, 1.0]]]))
    p = cosformer_proportions(2, 8, offset=3)
    torch.testing.assert_close(p, torch.tensor([[[4 / 8, 5 / 8]]]))
    p = cosformer_proportions(2, torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(p, torch.tensor([[[0.5, 1.0]], [[0.25, 0.5]]]))


def test_cross_proportions_give_mla_eq8_weights():
    M, N = 3, 5
    q, k, v, *_ = make_inputs(1, 1, M, N, 4, seed=9)
    qp, kp = cross_proportions(M, N, dtype=torch.float64)
    _, w = leap_attention(q, k, v, qp, kp, return_weights=True, normalize="none")
    i = torch.arange(1, M + 1, dtype=torch.float64)[:, None]
    j = torch.arange(1, N + 1, dtype=torch.float64)[None, :]
    direct = (torch.relu(q) @ torch.relu(k).transpose(-1, -2)) * torch.cos(
        math.pi / 2 * (i / M - j / N))
    torch.testing.assert_close(w, direct)
    qp2, _ = cross_proportions(2, N, target_total=10.0, target_offset=4)
    torch.testing.assert_close(qp2, torch.tensor([[[0.5, 0.6]]]))


def test_cosformer_is_leap_with_position_proportions():
    q, k, v, *_ = make_inputs(2, 2, 9, 9, 4, seed=11)
    p = cosformer_proportions(9, dtype=torch.float64)
    torch.testing.assert_close(cosformer_attention(q, k, v, causal=True),
                               leap_attention(q, k, v, p, p, causal=True))


def test_bad_lengths():
    with pytest.raises(ValueError, match="max_length"):
        cosformer_proportions(3, 0)
    with pytest.raises(ValueError, match="totals"):
        cross_proportions(3, 4, source_total=0)
