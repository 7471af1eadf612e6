"""Bad input raises ValueError/TypeError naming the argument and the shapes."""

import pytest
import torch

from leapformer.ops import leap_attention, linear_attention, softmax_attention

from .helpers import make_inputs


def _inputs():
    q, k, v, qp, kp, _ = make_inputs(2, 3, 5, 5, 4, dtype=torch.float32)
    return q, k, v, qp, kp


@pytest.mark.parametrize("bad,match", [
    (dict(q=torch.zeros(2, 3, 5)), r"q must have shape \[batch, heads, length, head_dim\], got \[2, 3, 5\]"),
    (dict(k=torch.zeros(1, 3, 5, 4)), r"batch and heads.*k \[1, 3, 5, 4\]"),
    (dict(v=torch.zeros(2, 3, 6, 4)), r"same length.*v \[2, 3, 6, 4\]"),
    (dict(k=torch.zeros(2, 3, 5, 2)), r"same head_dim.*k \[2, 3, 5, 2\]"),
    (dict(q_prop=torch.zeros(2, 3, 4)), r"q_prop must have shape \[batch, heads, length\] = \[2, 3, 5\].*got \[2, 3, 4\]"),
    (dict(k_prop=torch.zeros(5)), r"k_prop must have shape.*got \[5\]"),
    (dict(key_padding_mask=torch.zeros(2, 4, dtype=torch.bool)), r"key_padding_mask must have shape.*\[2, 5\].*got \[2, 4\]"),
    (dict(mode="fast"), r"mode must be one of"),
    (dict(normalize="layer"), r"normalize must be one of"),
    (dict(chunk_size=0), r"chunk_size must be a positive int"),
    (dict(q=torch.zeros(2, 3, 0, 4)), r"at least one query"),
])
def test_value_errors(bad, match):
    q, k, v, qp, kp = _inputs()
    args = dict(q=q, k=k, v=v, q_prop=qp, k_prop=kp)
    kw = {n: bad.pop(n) for n in list(bad) if n not in args}
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        leap_attention(args["q"], args["k"], args["v"], args["q_prop"], args["k_prop"], **kw)


@pytest.mark.parametrize("bad,match", [
    (dict(k=torch.zeros(2, 3, 5, 4, dtype=torch.float64)), "share one dtype"),
    (dict(v=torch.zeros(2, 3, 5, 4, dtype=torch.int64)), "floating-point"),
    (dict(q_prop=torch.zeros(2, 3, 5, dtype=torch.int64)), "q_prop must be a floating-point"),
    (dict(key_padding_mask=torch.zeros(2, 5)), "dtype torch.bool"),
    (dict(q=[[1.0]]), "q must be a torch.Tensor"),
])
def test_type_errors(bad, match):
    q, k, v, qp, kp = _inputs()
    args = dict(q=q, k=k, v=v, q_prop=qp, k_prop=kp)
    kw = {n: bad.pop(n) for n in list(bad) if n not in args}
    args.update(bad)
    with pytest.raises(TypeError, match=match):
        leap_attention(args["q"], args["k"], args["v"], args["q_prop"], args["k_prop"], **kw)


def test_device_mix_is_a_type_error():
    q, k, v, qp, kp = _inputs()
    with pytest.raises(TypeError, match="one device"):
        linear_attention(q, k.to("meta"), v)
    with pytest.raises(TypeError, match="key_padding_mask is on"):
        linear_attention(q, k, v, key_padding_mask=torch.zeros(2, 5, dtype=torch.bool, device="meta"))


def test_causal_needs_self_attention():
    q, k, v, *_ = make_inputs(1, 1, 3, 5, 4)
    with pytest.raises(ValueError, match=r"causal.*q \[1, 1, 3, 4\], k \[1, 1, 5, 4\]"):
        linear_attention(q, k, v, causal=True)
    with pytest.raises(ValueError, match="causal"):
        softmax_attention(q, k, v, causal=True)


def test_weights_need_parallel_form():
    q, k, v, qp, kp = _inputs()
    with pytest.raises(ValueError, match="return_weights"):
        leap_attention(q, k, v, qp, kp, mode="chunk", return_weights=True)


def test_unknown_feature_map():
    q, k, v, *_ = _inputs()
    with pytest.raises(ValueError, match="feature_map must be one of"):
        linear_attention(q, k, v, feature_map="gelu")


def test_missing_proportions():
    q, k, v, qp, _ = _inputs()
    with pytest.raises(ValueError, match="q_prop and k_prop"):
        leap_attention(q, k, v, qp, None)


def test_inputs_untouched_by_errors_and_calls():
    q, k, v, qp, kp = _inputs()
    before = [t.clone() for t in (q, k, v, qp, kp)]
    leap_attention(q, k, v, qp, kp, causal=True)
    for a, b in zip(before, (q, k, v, qp, kp)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["parallel", "chunk", "recurrent"])
def test_nan_propagates_as_documented(mode):
    q, k, v, qp, kp, _ = make_inputs(1, 1, 6, 6, 3)
    q[0, 0, 2, 0] = float("nan")
    o = leap_attention(q, k, v, qp, kp, mode=mode)
    assert torch.isnan(o[0, 0, 2]).all()
    assert not torch.isnan(o[0, 0, [0, 1, 3, 4, 5]]).any()
    q, k, v, qp, kp, _ = make_inputs(1, 1, 6, 6, 3)
    v[0, 0, 3, 0] = float("inf")
    o = leap_attention(q, k, v, qp, kp, causal=True, mode=mode)
    assert not torch.isfinite(o[0, 0, 3:, 0]).all()  # queries that see the bad value


@pytest.mark.parametrize("which,value,match", [
    ("q_prop", -0.5, r"q_prop must hold proportions in \[0, 1\], got values in \[-0.5, "),
    ("k_prop", float("nan"), r"k_prop must hold proportions in \[0, 1\].*nan"),
    ("k_prop", float("inf"), r"k_prop must hold proportions in \[0, 1\].*inf\]"),
    ("q_prop", 1.25, r"q_prop must hold proportions in \[0, 1\], got values in \[.*, 1.25\]"),
    ("k_prop", 1.0 + 1e-6, r"k_prop must hold proportions in \[0, 1\], got values in \[.*, 1\]"),
])
def test_bad_proportion_values(which, value, match):
    q, k, v, qp, kp = _inputs()
    props = {"q_prop": qp.clone(), "k_prop": kp.clone()}
    props[which][0, 0, 1] = value
    for mode in ("parallel", "chunk", "recurrent"):
        with pytest.raises(ValueError, match=match) as err:
            leap_attention(q, k, v, props["q_prop"], props["k_prop"], mode=mode)
        assert "\n" not in str(err.value)


def test_padded_positions_may_hold_any_proportion():
    q, k, v, qp, kp = _inputs()
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[1, 3:] = True
    kp, qp = kp.clone(), qp.clone()
    kp[1, :, 3:] = float("nan")
    qp[1, :, 3:] = -7.0  # self-attention: padded query rows are never read either
    o = leap_attention(q, k, v, qp, kp, key_padding_mask=pad)
    assert torch.isfinite(o[:, :, :3]).all()


def test_proportions_outside_0_1_need_check_proportions_false():
    """cosFormer positions past the normalising length give values above 1 by design:
    accepted without the check, with the formula's value (the parallel oracle)."""
    q, k, v, qp, kp = _inputs()
    with pytest.raises(ValueError, match=r"q_prop must hold proportions in \[0, 1\]"):
        leap_attention(q, k, v, qp + 0.5, kp)
    o = leap_attention(q, k, v, qp + 0.5, kp + 0.5, check_proportions=False)
    ref = leap_attention(q, k, v, qp + 0.5, kp + 0.5, mode="parallel", check_proportions=False)
    assert torch.isfinite(o).all()
    torch.testing.assert_close(o, ref)
    bounds = leap_attention(q, k, v, torch.zeros_like(qp), torch.ones_like(kp))  # [0, 1] inclusive
    assert torch.isfinite(bounds).all()
    with pytest.raises(TypeError, match="check_proportions must be a bool, got 1"):
        leap_attention(q, k, v, qp, kp, check_proportions=1)


def test_cosformer_attention_is_not_rejected_by_the_range_check():
    """Its proportions i / L are in (0, 1] by construction (max_length >= positions)."""
    from leapformer.ops import cosformer_attention

    q, k, v, *_ = make_inputs(2, 1, 8, 8, 4)
    for kw in ({}, dict(max_length=8), dict(max_length=torch.tensor([8, 12])),
               dict(max_length=12, offset=4)):
        assert torch.isfinite(cosformer_attention(q, k, v, causal=True, **kw)).all()
    with pytest.raises(ValueError, match=r"max_length must be >= the last position.*got nan"):
        cosformer_attention(q, k, v, max_length=torch.tensor([8.0, float("nan")]))


def test_cosformer_max_length_must_cover_the_positions():
    from leapformer.ops import cosformer_attention

    q, k, v, *_ = make_inputs(1, 1, 8, 8, 4)
    with pytest.raises(ValueError, match=r"max_length must be >= the last position .* = 8\), "
                       r"got 3"):
        cosformer_attention(q, k, v, max_length=3)
    with pytest.raises(ValueError, match=r"= 10\), got 9"):
        cosformer_attention(q, k, v, max_length=torch.tensor([9]), offset=2)
    with pytest.raises(TypeError, match="max_length must be an int or a tensor"):
        cosformer_attention(q, k, v, max_length=8.5)
    _, w = cosformer_attention(q, k, v, max_length=8, return_weights=True)
    assert (w >= 0).all()


@pytest.mark.parametrize("fn", [linear_attention, leap_attention])
def test_empty_batch_or_heads(fn):
    for shape in ((0, 2, 5, 4), (2, 0, 5, 4)):
        q = torch.randn(*shape)
        props = (torch.rand(*shape[:3]),) * 2 if fn is leap_attention else ()
        with pytest.raises(ValueError, match=r"at least one batch item and one head, got "
                           rf"q \[{shape[0]}, {shape[1]}, 5, 4\]"):
            fn(q, q, q, *props)
