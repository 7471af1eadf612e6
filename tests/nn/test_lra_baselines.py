"""LRA baselines against softmax attention in the cases where they must equal it."""

import math

import pytest
import torch

from leapformer.models import ClassifierConfig, SequenceClassifier
from leapformer.nn import MultiheadAttention, build_mechanism
from leapformer.nn.mechanisms.nystromformer import iterative_pinv
from leapformer.ops import softmax_attention


def _qkv(B=2, H=2, N=12, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, N, D, generator=g, dtype=torch.float64) for _ in range(3)]


def test_linformer_with_identity_projections_is_softmax():
    q, k, v = _qkv()
    mech = build_mechanism("linformer", num_heads=2, head_dim=8, k=12, max_length=12).double()
    with torch.no_grad():
        mech.proj_k.copy_(torch.eye(12))
        mech.proj_v.copy_(torch.eye(12))
    o, _ = mech(q, k, v)
    torch.testing.assert_close(o, softmax_attention(q, k, v))


def test_linformer_formula_shorter_sequence_and_padding():
    q, k, v = _qkv(N=10)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[1, 7:] = True
    mech = build_mechanism("linformer", num_heads=2, head_dim=8, k=4, max_length=16).double()
    assert mech.proj_k.shape == (4, 16)
    o, w = mech(q, k, v, key_padding_mask=mask, need_weights=True)
    keep = (~mask)[:, None, :, None].double()
    kp = mech.proj_k[:, :10] @ (k * keep)
    vp = mech.proj_v[:, :10] @ (v * keep)
    ref_w = torch.softmax(q @ kp.transpose(-1, -2) / math.sqrt(8), -1)
    torch.testing.assert_close(w, ref_w)
    torch.testing.assert_close(o, ref_w @ vp)
    k2 = k.clone()
    k2[1, :, 7:] = 1e3  # padded keys do not matter
    torch.testing.assert_close(mech(q, k2, v, key_padding_mask=mask)[0], o)


def test_nystromformer_with_all_landmarks_and_exact_pinv_is_softmax():
    q, k, v = _qkv(N=12)
    mech = build_mechanism("nystromformer", num_heads=2, head_dim=8, num_landmarks=12,
                           pinv_iterations=0, conv_kernel=0).double()
    o, w = mech(q, k, v, need_weights=True)
    torch.testing.assert_close(o, softmax_attention(q, k, v))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 12, dtype=torch.float64))


def test_iterative_pinv_converges():
    a = torch.softmax(torch.randn(3, 6, 6, dtype=torch.float64), -1)
    torch.testing.assert_close(iterative_pinv(a, 30), torch.linalg.pinv(a), rtol=1e-6, atol=1e-6)


def test_nystromformer_landmarks_segments_and_conv():
    q, k, v = _qkv(N=13)  # 13 tokens, 4 landmarks: segments padded to 16
    mech = build_mechanism("nystromformer", num_heads=2, head_dim=8, num_landmarks=4,
                           conv_kernel=3).double()
    o, _ = mech(q, k, v)
    assert o.shape == v.shape and torch.isfinite(o).all()
    no_conv = build_mechanism("nystromformer", num_heads=2, head_dim=8, num_landmarks=4,
                              conv_kernel=0).double()
    torch.testing.assert_close(o - mech.conv(v), no_conv(q, k, v)[0])


@pytest.mark.parametrize("name,opts", [("linformer", {"k": 4, "max_length": 32}),
                                       ("nystromformer", {"num_landmarks": 4})])
def test_encoder_only_limits_and_training(name, opts):
    mha = MultiheadAttention(16, 2, name, mechanism_options=opts)
    x = torch.randn(2, 9, 16)
    with pytest.raises(ValueError, match="bidirectional self-attention only, not causal"):
        mha(x, causal=True)
    with pytest.raises(ValueError, match="not cross-attention"):
        mha(x, torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match="not decoding with a cache"):
        mha.new_cache(2)
    model = SequenceClassifier(ClassifierConfig(vocab_size=10, num_classes=2, max_length=32,
                                                attention=name, d_model=16,
                                                mechanism_options=opts))
    loss = model(torch.randint(1, 10, (3, 20))).logsumexp(-1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_linformer_rejects_longer_inputs():
    mech = build_mechanism("linformer", num_heads=1, head_dim=4, k=2, max_length=8)
    q = torch.randn(1, 1, 9, 4)
    with pytest.raises(ValueError, match="max_length=8, got 9 keys"):
        mech(q, q, q)
