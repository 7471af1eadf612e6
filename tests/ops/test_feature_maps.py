import math

import pytest
import torch

from leapformer.ops import FavorPlus, draw_projection, elu_plus_one, get_feature_map, linear_attention, softmax_attention
from leapformer.ops.feature_maps import identity, relu


def test_named_maps():
    x = torch.tensor([-2.0, 0.0, 3.0])
    assert torch.equal(get_feature_map("relu")(x, True), torch.tensor([0.0, 0.0, 3.0]))
    torch.testing.assert_close(get_feature_map("elu")(x, True), torch.tensor([math.exp(-2.0), 1.0, 4.0]))
    assert get_feature_map("identity") is identity
    assert get_feature_map(relu) is relu
    assert (elu_plus_one(torch.randn(1000), False) > 0).all()
    with pytest.raises(TypeError):
        get_feature_map(3)


def test_orthogonal_projection():
    g = torch.Generator().manual_seed(0)
    w = draw_projection(12, 8, generator=g, dtype=torch.float64)
    assert w.shape == (12, 8)
    block = w[:8] / w[:8].norm(dim=1, keepdim=True)
    torch.testing.assert_close(block @ block.T, torch.eye(8, dtype=torch.float64))
    w2 = draw_projection(12, 8, generator=g, dtype=torch.float64)
    assert not torch.allclose(w, w2)  # redrawing gives new features
    w3 = draw_projection(12, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(w, w3)
    iid = draw_projection(5, 3, orthogonal=False)
    assert iid.shape == (5, 3)


def test_favor_features_estimate_the_softmax_kernel():
    g = torch.Generator().manual_seed(1)
    d, m = 8, 4096
    x = 0.5 * torch.randn(6, d, generator=g, dtype=torch.float64)
    y = 0.5 * torch.randn(6, d, generator=g, dtype=torch.float64)
    fm = FavorPlus(draw_projection(m, d, generator=g, dtype=torch.float64), eps=0.0, stabilize=False)
    est = fm(x, True) @ fm(y, False).T
    exact = torch.exp(x @ y.T / math.sqrt(d))
    rel = (est - exact).abs() / exact
    assert rel.mean() < 0.05 and rel.max() < 0.25


def test_performer_attention_approximates_softmax():
    g = torch.Generator().manual_seed(2)
    q, k, v = (0.5 * torch.randn(1, 2, 16, 8, generator=g, dtype=torch.float64) for _ in range(3))
    fm = FavorPlus(draw_projection(2048, 8, generator=g, dtype=torch.float64))
    o = linear_attention(q, k, v, feature_map=fm, normalize="eps")
    ref = softmax_attention(q, k, v)
    assert (o - ref).abs().max() < 0.05
    with pytest.raises(ValueError, match="projection"):
        fm(torch.zeros(2, 5, dtype=torch.float64), True)


def test_favor_stabiliser_cancels_in_attention():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 1, 10, 4, generator=g, dtype=torch.float64) for _ in range(3))
    proj = draw_projection(64, 4, generator=g, dtype=torch.float64)
    a = linear_attention(q, k, v, feature_map=FavorPlus(proj, eps=0.0), normalize="eps", eps=0.0)
    b = linear_attention(q, k, v, feature_map=FavorPlus(proj, eps=0.0, stabilize=False),
                         normalize="eps", eps=0.0)
    torch.testing.assert_close(a, b)
