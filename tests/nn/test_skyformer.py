"""Skyformer: Nyström-approximated Gaussian-kernel attention."""

import pytest
import torch

from leapformer.nn.mechanisms.skyformer import Skyformer


def _qkv(B=2, H=2, N=12, D=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, N, D, generator=g, dtype=dtype) for _ in range(3)]


def _mask(B=2, N=12, valid=9):
    mask = torch.zeros(B, N, dtype=torch.bool)
    mask[1, valid:] = True
    return mask


def _kernelized(q, k, v, mask=None, normalize=True):
    """Exact kernelized attention: exp(-||q_i - k_j||^2 / (2 sqrt d)), rows normalised."""
    d = q.shape[-1]
    w = torch.exp(-(q[..., :, None, :] - k[..., None, :, :]).pow(2).sum(-1) / (2 * d ** 0.5))
    if mask is not None:
        w = w.masked_fill(mask[:, None, None, :], 0.0)
    if normalize:
        w = w / w.sum(-1, keepdim=True)
    return w @ v, w


@pytest.mark.parametrize("landmarks", [24, 100])
def test_all_rows_as_landmarks_is_exact_kernelized_attention(landmarks):
    q, k, v = _qkv()
    mask = _mask()
    mech = Skyformer(2, 8, num_landmarks=landmarks, ridge=0.0, pinv_iterations=0)
    o, w = mech(q, k, v, key_padding_mask=mask, need_weights=True)
    ref_o, ref_w = _kernelized(q, k, v, mask)
    valid = ~mask
    torch.testing.assert_close(o[0], ref_o[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(o[1][:, valid[1]], ref_o[1][:, valid[1]], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(w[:, :, :9], ref_w[:, :, :9], rtol=1e-4, atol=1e-4)
    assert (w[1, :, :, 9:] == 0).all()


def test_newton_iterations_converge_to_the_exact_result():
    q, k, v = _qkv(N=10)
    mech = Skyformer(2, 8, num_landmarks=20, ridge=0.0, pinv_iterations=12)
    torch.testing.assert_close(mech(q, k, v)[0], _kernelized(q, k, v)[0], rtol=1e-4, atol=1e-4)


def test_unnormalized_option():
    q, k, v = _qkv(N=7)
    mech = Skyformer(2, 8, num_landmarks=14, ridge=0.0, pinv_iterations=0, normalize=False)
    torch.testing.assert_close(mech(q, k, v)[0], _kernelized(q, k, v, normalize=False)[0],
                               rtol=1e-4, atol=1e-4)


def test_padding_gets_no_weight_and_does_not_matter():
    q, k, v = _qkv(N=13)
    mask = _mask(N=13, valid=8)
    mech = Skyformer(2, 8, num_landmarks=6).eval()  # approximate: 3 + 3 landmarks
    o, w = mech(q, k, v, key_padding_mask=mask, need_weights=True)
    assert torch.isfinite(o).all() and (w[1, :, :, 8:] == 0).all()
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[1, :, 8:] = 50.0
    o2 = mech(q2, k2, v2, key_padding_mask=mask)[0]
    torch.testing.assert_close(o2[0], o[0])
    torch.testing.assert_close(o2[1, :, :8], o[1, :, :8])
    torch.testing.assert_close(mech(q, k, v, key_padding_mask=mask)[0], o)  # deterministic


def test_single_token_and_default_options():
    q, k, v = _qkv(N=1)
    exact = Skyformer(2, 8, ridge=0.0, pinv_iterations=0)
    torch.testing.assert_close(exact(q, k, v)[0], v)
    o, w = Skyformer(2, 8)(q, k, v, need_weights=True)
    assert o.shape == v.shape and w.shape == (2, 2, 1, 1) and torch.isfinite(o).all()


def test_gradients_flow_and_half_precision():
    q, k, v = (x.requires_grad_() for x in _qkv(N=40, dtype=torch.float32))
    mask = _mask(N=40, valid=30)
    mech = Skyformer(2, 8, num_landmarks=16, pinv_iterations=3, dropout=0.1).train()
    o, _ = mech(q, k, v, key_padding_mask=mask)
    o.sum().backward()
    for x in (q, k, v):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    ob, _ = mech.eval()(*(x.detach().bfloat16() for x in (q, k, v)), key_padding_mask=mask)
    assert ob.dtype == torch.bfloat16 and torch.isfinite(ob).all()


def test_encoder_only_and_option_checks():
    q, k, v = _qkv(N=4)
    with pytest.raises(ValueError, match="not causal attention"):
        Skyformer(2, 8)(q, k, v, causal=True)
    with pytest.raises(ValueError, match="num_landmarks must be positive"):
        Skyformer(2, 8, num_landmarks=0)
