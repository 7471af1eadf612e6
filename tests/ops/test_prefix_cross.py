"""Prefix-constrained (wait-k) cross-attention: the prefix-sum form equals the
masked quadratic computation (values and gradients), prefix 0 is a zero
output, no M x N tensor is built, wait-k prefixes, and errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from leapformer.ops import (
    leap_attention,
    linear_attention,
    prefix_cross_attention,
    prefix_cross_attention_parallel,
    prefix_softmax_attention,
    waitk_prefix,
)
from tests.ops.helpers import make_inputs


pytestmark = pytest.mark.usefixtures("one_thread")


def masked_reference(q, k, v, prefix, qp=None, kp=None, *, mask=None, phi=F.relu, clamp=0.1):
    """Written out: w_ij = phi(q_i).phi(k_j) [cos(pi/2 (qp_i - kp_j))], zero unless
    j < prefix_i and key j is real; o_i = sum_j w_ij v_j / max(sum_j w_ij, clamp)."""
    w = phi(q) @ phi(k).transpose(-1, -2)
    if qp is not None:
        w = w * torch.cos(math.pi / 2 * (qp[..., :, None] - kp[..., None, :]))
    N = k.shape[2]
    visible = torch.arange(N)[None, None, :] < prefix[:, :, None]  # [B, M, N]
    if mask is not None:
        visible = visible & ~mask[:, None, :]
    w = w * visible[:, None]
    return (w @ v) / w.sum(-1, keepdim=True).clamp_min(clamp)


def _elu1(x):
    return F.elu(x) + 1.0


# (B, H, M, N, D, Dv, pad lengths or None, chunk size)
CASES = [
    (1, 1, 1, 1, 3, 3, None, 64),
    (2, 2, 5, 7, 4, 3, [7, 4], 3),
    (2, 1, 9, 4, 3, 5, [2, 4], 1),
    (1, 2, 3, 11, 5, 4, None, 4),
    (3, 2, 6, 6, 4, 4, [6, 1, 3], 5),
]


def _prefix(B, M, N, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.randint(0, N + 1, (B, M), generator=g)
    p[0, 0] = 0  # the extremes always appear
    p[-1, -1] = N
    return p


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
@pytest.mark.parametrize("reweight", [False, True], ids=["plain", "reweighted"])
def test_prefix_sums_equal_masked_quadratic_values_and_grads(case, reweight):
    B, H, M, N, D, Dv, pads, C = case
    q, k, v, qp, kp, mask = make_inputs(B, H, M, N, D, Dv, seed=M * N, grad=True,
                                        pad_lengths=pads)
    prefix = _prefix(B, M, N, seed=B + M)
    props = (qp, kp) if reweight else (None, None)
    got = prefix_cross_attention(q, k, v, prefix, *props, key_padding_mask=mask, mode="chunk",
                                 chunk_size=C)
    ref = masked_reference(q, k, v, prefix, *props, mask=mask)
    torch.testing.assert_close(got, ref)
    g = torch.randn_like(ref)
    inputs = (q, k, v, qp, kp) if reweight else (q, k, v)
    for a, b in zip(torch.autograd.grad(got, inputs, g), torch.autograd.grad(ref, inputs, g),
                    strict=True):
        torch.testing.assert_close(a, b)
    oracle = prefix_cross_attention_parallel(q, k, v, prefix, *props, key_padding_mask=mask)
    torch.testing.assert_close(oracle, ref)


def test_gradcheck_float64_reweighted_with_padding():
    q, k, v, qp, kp, mask = make_inputs(2, 1, 4, 5, 3, 2, seed=3, grad=True, pad_lengths=[5, 3])
    prefix = torch.tensor([[1, 3, 0, 5], [2, 2, 4, 5]])
    torch.autograd.gradcheck(
        lambda *t: prefix_cross_attention(*t[:3], prefix, *t[3:], key_padding_mask=mask,
                                          mode="chunk", chunk_size=2), (q, k, v, qp, kp))


def test_broadcast_proportions_cosformer_style_and_elu_features():
    """Proportions shared over heads (cosFormer: i/M, j/N from the whole source)."""
    B, H, M, N = 2, 3, 5, 8
    q, k, v, _, _, mask = make_inputs(B, H, M, N, 4, seed=11, pad_lengths=[8, 6])
    n = torch.tensor([8.0, 6.0], dtype=torch.float64)
    qp = (torch.arange(1, M + 1, dtype=torch.float64) / M).expand(B, 1, M)
    kp = torch.arange(1, N + 1, dtype=torch.float64)[None, None, :] / n[:, None, None]
    prefix = waitk_prefix(2, M, torch.tensor([8, 6]))
    got = prefix_cross_attention(q, k, v, prefix, qp, kp, key_padding_mask=mask, chunk_size=3)
    torch.testing.assert_close(got, masked_reference(q, k, v, prefix, qp, kp, mask=mask))
    got = prefix_cross_attention(q, k, v, prefix, feature_map="elu", key_padding_mask=mask)
    torch.testing.assert_close(got, masked_reference(q, k, v, prefix, mask=mask, phi=_elu1))


def test_shared_prefix_row_broadcasts_over_batch():
    q, k, v, *_ = make_inputs(3, 2, 4, 6, 4, seed=5)
    row = torch.tensor([[2, 0, 6, 3]])
    got = prefix_cross_attention(q, k, v, row)
    torch.testing.assert_close(got, masked_reference(q, k, v, row.expand(3, 4)))


def test_full_prefix_is_ordinary_cross_attention():
    q, k, v, qp, kp, mask = make_inputs(2, 2, 5, 7, 4, seed=6, pad_lengths=[7, 5])
    full = torch.full((2, 5), 7)
    torch.testing.assert_close(prefix_cross_attention(q, k, v, full, key_padding_mask=mask),
                               linear_attention(q, k, v, key_padding_mask=mask))
    torch.testing.assert_close(
        prefix_cross_attention(q, k, v, full, qp, kp, key_padding_mask=mask),
        leap_attention(q, k, v, qp, kp, key_padding_mask=mask))


@pytest.mark.parametrize("normalize", ["clamp", "eps", "none"])
def test_prefix_zero_and_all_padded_prefix_give_zero_with_finite_grads(normalize):
    """Documented: a query that sees no (unpadded) key outputs zeros."""
    q, k, v, qp, kp, mask = make_inputs(2, 2, 3, 4, 3, seed=7, grad=True, pad_lengths=[4, 2])
    mask[1, 0] = True  # item 1: keys 0, 2, 3 padded, so prefix 1 sees nothing real
    prefix = torch.tensor([[0, 2, 4], [1, 0, 4]])
    out = prefix_cross_attention(q, k, v, prefix, qp, kp, key_padding_mask=mask,
                                 normalize=normalize)
    assert torch.equal(out[0, :, 0], torch.zeros_like(out[0, :, 0]))
    assert torch.equal(out[1, :, :2], torch.zeros_like(out[1, :, :2]))
    assert out[0, :, 1].abs().sum() > 0
    grads = torch.autograd.grad(out.sum(), (q, k, v, qp, kp))
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.equal(grads[0][0, :, 0], torch.zeros_like(grads[0][0, :, 0]))


def test_softmax_prefix_equals_explicit_masked_softmax_and_prefix_zero_is_zero():
    q, k, v, _, _, mask = make_inputs(2, 2, 5, 6, 4, seed=8, grad=True, pad_lengths=[6, 4])
    prefix = torch.tensor([[0, 1, 3, 6, 6], [2, 5, 4, 0, 1]])
    got = prefix_softmax_attention(q, k, v, prefix, key_padding_mask=mask)
    visible = (torch.arange(6)[None, None, :] < prefix[:, :, None]) & ~mask[:, None, :]
    s = (q @ k.transpose(-1, -2)) / 2.0  # sqrt(head_dim = 4)
    s = s.masked_fill(~visible[:, None], -math.inf)
    rows = visible.any(-1)[:, None, :, None]
    ref = torch.where(rows, torch.softmax(s.masked_fill(~rows, 0.0), -1) @ v, 0.0)
    torch.testing.assert_close(got, ref)
    assert torch.equal(got[0, :, 0], torch.zeros_like(got[0, :, 0]))
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(got, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g),
                    strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)


class _Shapes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.numels = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.numels.append((func.__name__, t.numel(), list(t.shape)))
        return out


def test_chunk_form_never_builds_an_m_by_n_tensor():
    B, H, M, N = 1, 1, 37, 41
    q, k, v, qp, kp, mask = make_inputs(B, H, M, N, 2, 2, seed=9, grad=True, pad_lengths=[39])
    prefix = waitk_prefix(3, M, N)
    with _Shapes() as rec:
        out = prefix_cross_attention(q, k, v, prefix, qp, kp, key_padding_mask=mask,
                                     mode="chunk", chunk_size=8)
        out.sum().backward()
    biggest = max(rec.numels, key=lambda r: r[1])
    assert biggest[1] < M * N, biggest  # O((N + M) d^2), never M x N
    with _Shapes() as rec:  # the recorder does see the quadratic oracle's weights
        prefix_cross_attention_parallel(q, k, v, prefix, qp, kp, key_padding_mask=mask)
    assert max(r[1] for r in rec.numels) >= M * N


# -- wait-k prefixes -------------------------------------------------------------------------


def test_waitk_prefix_hand_worked():
    # k = 1: target t reads t source units
    assert waitk_prefix(1, 4, 6).tolist() == [[1, 2, 3, 4]]
    # k = 3, |x| = 6: 3, 4, 5, 6, then capped at |x|
    assert waitk_prefix(3, 6, 6).tolist() == [[3, 4, 5, 6, 6, 6]]
    # source shorter than k: everything from the first target token on
    assert waitk_prefix(5, 3, 2).tolist() == [[2, 2, 2]]
    # per-item source lengths
    assert waitk_prefix(3, 4, torch.tensor([2, 7, 4])).tolist() == [
        [2, 2, 2, 2], [3, 4, 5, 6], [3, 4, 4, 4]]
    # pre-decision ratio 2: units of two positions; |x| = 9 positions
    assert waitk_prefix(2, 4, 9, ratio=2).tolist() == [[4, 6, 8, 9]]
    assert waitk_prefix(1, 2, torch.tensor([3])).dtype == torch.long


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    ((0, 3, 4), {}, "wait_k must be a positive int, got 0"),
    ((2.0, 3, 4), {}, "wait_k must be a positive int"),
    ((2, 0, 4), {}, "num_queries must be positive, got 0"),
    ((2, 3, 4), {"ratio": 0}, "ratio must be a positive int"),
    ((2, 3, 0), {}, r"source lengths must be positive, got \[0\]"),
    ((2, 3, torch.tensor([[3]])), {}, r"source_length must be .* got torch.int64 \[1, 1\]"),
    ((2, 3, torch.tensor([3.0])), {}, r"integer tensor \[batch\], got torch.float32 \[1\]"),
])
def test_waitk_prefix_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        waitk_prefix(*args, **kwargs)


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [prefix_cross_attention, prefix_softmax_attention,
                                prefix_cross_attention_parallel])
def test_prefix_errors_name_the_argument_and_shape(fn):
    q, k, v, *_ = make_inputs(2, 1, 3, 5, 4)
    with pytest.raises(ValueError, match=r"prefix must have shape \[batch, queries\] = \[2, 3\] "
                                         r".* got \[2, 4\]"):
        fn(q, k, v, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"prefix must have shape .* got \[6\]"):
        fn(q, k, v, torch.zeros(6, dtype=torch.long))
    with pytest.raises(TypeError, match="prefix must be an integer tensor .* got dtype "
                                        "torch.float32"):
        fn(q, k, v, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="got dtype torch.bool"):
        fn(q, k, v, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="prefix must be an integer tensor .* got list"):
        fn(q, k, v, [[1, 2, 3], [1, 2, 3]])
    with pytest.raises(ValueError, match=r"prefix values must lie in \[0, 5\] .* got values in "
                                         r"\[1, 6\]"):
        fn(q, k, v, torch.tensor([[1, 2, 6], [1, 1, 1]]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 5\] .* \[-1, 2\]"):
        fn(q, k, v, torch.tensor([[-1, 2, 2], [1, 1, 1]]))


def test_option_errors():
    q, k, v, qp, _, _ = make_inputs(1, 1, 2, 3, 2)
    p = torch.ones(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="mode must be one of"):
        prefix_cross_attention(q, k, v, p, mode="recurrent")
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got 0"):
        prefix_cross_attention(q, k, v, p, chunk_size=0)
    with pytest.raises(ValueError, match="pass both q_prop and k_prop"):
        prefix_cross_attention(q, k, v, p, qp)
    with pytest.raises(ValueError, match="return_weights=True needs mode='parallel'"):
        prefix_cross_attention(q, k, v, p, mode="chunk", return_weights=True)
    _, w = prefix_cross_attention(q, k, v, p, return_weights=True)
    assert w.shape == (1, 1, 2, 3) and torch.equal(w[..., 1:], torch.zeros_like(w[..., 1:]))
