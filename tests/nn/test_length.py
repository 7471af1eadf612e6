"""Tests for the target-length predictors (docs/math.md §3, MLA §3.3)."""

import math

import pytest
import torch

from leapformer.nn.length import (
    ConvLength,
    LookupLength,
    RatioLength,
    build_length_predictor,
    length_loss,
)


def _tensor(*rows):
    return torch.tensor(rows, dtype=torch.long)


# ---------------------------------------------------------------- ratio


def test_ratio_fit_recovers_ratio():
    g = torch.Generator().manual_seed(0)
    src = torch.randint(1, 50, (200,), generator=g) * 4
    tgt = src * 5 // 4  # r = 1.25 exactly
    assert RatioLength.fit(src, tgt).ratio.item() == pytest.approx(1.25)
    # python lists; ratio of totals 30 / 20, not the mean of per-pair ratios
    fitted = RatioLength.fit([10, 10], [10, 20])
    assert fitted.ratio.item() == pytest.approx(1.5)
    fitted = RatioLength.fit([1, 9], [3, 9])  # mean of ratios would be 2.0
    assert fitted.ratio.item() == pytest.approx(1.2)


def test_ratio_rounding_and_minimum_one():
    pred = RatioLength(0.3).predict(torch.tensor([0, 1, 3, 10, 12]))
    assert pred.dtype == torch.long
    assert pred.tolist() == [1, 1, 1, 3, 4]
    assert RatioLength(1.25).predict(torch.tensor([4, 7, 100])).tolist() == [5, 9, 125]
    assert RatioLength(1.25)(torch.tensor([4])).tolist() == [5]  # forward aliases predict


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_ratio_rejects_bad_ratio(bad):
    with pytest.raises(ValueError, match="ratio"):
        RatioLength(bad)


def test_ratio_input_errors():
    r = RatioLength(1.0)
    with pytest.raises(TypeError, match="src_lengths"):
        r.predict(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="src_lengths"):
        r.predict(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="src_lengths"):
        r.predict(torch.tensor([-1, 2]))
    with pytest.raises(ValueError):
        RatioLength.fit([1, 2, 3], [1, 2])
    with pytest.raises(ValueError):
        RatioLength.fit([0, 0], [1, 2])


# ---------------------------------------------------------------- lookup


def test_lookup_fit_with_durations():
    # token 1 aligned to 2 and 4 units -> 3; token 2 to 1 and 3 -> 2; token 3 to 5.
    # total 15 units over 5 tokens -> default 3.
    lk = LookupLength.fit([[1, 2, 1], [2, 3]], durations=[[2, 1, 4], [3, 5]])
    assert lk.table[1].item() == pytest.approx(3.0)
    assert lk.table[2].item() == pytest.approx(2.0)
    assert lk.table[3].item() == pytest.approx(5.0)
    assert lk.default.item() == pytest.approx(3.0)
    assert lk.known.tolist() == [False, True, True, True]
    assert lk.predict(torch.tensor([3]), src_tokens=_tensor([1, 2, 3])).tolist() == [10]


def test_lookup_fit_from_target_lengths_spreads_uniformly():
    # pair 1: 4 units over 2 tokens -> 2 each; pair 2: 9 units over 3 tokens -> 3 each.
    # token 1 seen with shares 2, 3, 3 -> 8/3; token 2 -> 2; token 3 -> 3; default 13/5.
    lk = LookupLength.fit([[1, 2], [1, 1, 3]], target_lengths=[4, 9], vocab_size=6)
    assert lk.table.shape == (6,)
    assert lk.table[1].item() == pytest.approx(8 / 3)
    assert lk.table[2].item() == pytest.approx(2.0)
    assert lk.table[3].item() == pytest.approx(3.0)
    assert lk.default.item() == pytest.approx(2.6)
    # 8/3 + 2 + 3 = 7.67 -> 8
    assert lk.predict(torch.tensor([3]), src_tokens=_tensor([1, 2, 3])).tolist() == [8]


def test_lookup_unknown_tokens_padding_and_damping():
    lk = LookupLength({1: 3.0, 2: 2.0, 3: 5.0}, default=1.5, vocab_size=5)
    # 0 and 4 are in range but unseen, 9 and -2 out of range: all use the default
    tokens = _tensor([0, 4, 9, -2], [1, 2, 7, 7], [3, 0, 0, 0])
    lengths = torch.tensor([4, 2, 1])  # positions past the length are padding
    assert lk.predict(lengths, src_tokens=tokens).tolist() == [6, 5, 5]
    mask = torch.arange(4) >= lengths[:, None]
    assert lk.predict(lengths, src_tokens=tokens, src_key_padding_mask=mask).tolist() == [6, 5, 5]
    half = LookupLength({1: 3.0, 2: 2.0, 3: 5.0}, default=1.5, damping=0.5, vocab_size=5)
    assert half.predict(lengths, src_tokens=tokens).tolist() == [3, 2, 2]  # 3, 2.5->2, 2.5->2
    tiny = LookupLength(torch.tensor([0.1, 0.1]), default=0.1)
    assert tiny.predict(torch.tensor([2, 0]), src_tokens=_tensor([0, 1], [0, 0])).tolist() == [1, 1]


def test_lookup_errors():
    lk = LookupLength({1: 2.0}, default=1.0, vocab_size=3)
    with pytest.raises(ValueError, match="src_tokens"):
        lk.predict(torch.tensor([2]))
    with pytest.raises(ValueError, match="src_tokens"):
        lk.predict(torch.tensor([2, 2]), src_tokens=_tensor([1, 1]))  # batch 1 vs 2
    with pytest.raises(TypeError, match="src_tokens"):
        lk.predict(torch.tensor([2]), src_tokens=torch.ones(1, 2))
    with pytest.raises(ValueError, match="src_key_padding_mask"):
        lk.predict(torch.tensor([2]), src_tokens=_tensor([1, 1]),
                   src_key_padding_mask=torch.tensor([[False, True]]))
    with pytest.raises(ValueError, match="exceed"):
        lk.predict(torch.tensor([3]), src_tokens=_tensor([1, 1]))
    with pytest.raises(ValueError, match="exactly one"):
        LookupLength.fit([[1]])
    with pytest.raises(ValueError, match="durations"):
        LookupLength.fit([[1, 2]], durations=[[1]])
    with pytest.raises(ValueError, match="vocab_size"):
        LookupLength.fit([[1, 5]], target_lengths=[3], vocab_size=4)
    with pytest.raises(ValueError, match="damping"):
        LookupLength({1: 2.0}, default=1.0, damping=0.0)


# ---------------------------------------------------------------- conv


def _batch(lengths, embed=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    x = torch.randn(len(lengths), int(lengths.max()), embed, generator=g)
    mask = torch.arange(x.shape[1]) >= lengths[:, None]
    return x, mask, lengths


def test_conv_shape_non_negative_and_predict():
    torch.manual_seed(0)
    conv = ConvLength(8, hidden=16).eval()
    x, mask, lengths = _batch([5, 3, 1])
    out = conv(x, mask)
    assert out.shape == (3,) and out.dtype == torch.float32
    assert (out >= 0).all()
    pred = conv.predict(lengths, encoder_out=x)  # mask derived from lengths
    assert pred.dtype == torch.long and (pred >= 1).all()
    assert pred.tolist() == torch.round(out).clamp_min(1).long().tolist()
    assert conv(x[:, :0], mask[:, :0]).tolist() == [0.0, 0.0, 0.0]  # no tokens, no length


def test_conv_padding_invariance():
    torch.manual_seed(0)
    conv = ConvLength(8, hidden=16, kernel_size=5).eval()
    x, mask, lengths = _batch([6, 4, 1, 3])
    x = x.masked_fill(mask[..., None], 1e3)  # garbage in padding must not leak
    batched = conv(x, mask)
    alone = torch.stack([conv(x[i : i + 1, : int(n)])[0] for i, n in enumerate(lengths)])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)
    longer = torch.cat([x, torch.randn(4, 3, 8)], dim=1)  # extra padding changes nothing
    more = torch.cat([mask, torch.ones(4, 3, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(conv(longer, more), batched, rtol=1e-5, atol=1e-5)


def test_conv_gradient_flows():
    torch.manual_seed(0)
    conv = ConvLength(8, hidden=16)
    x, mask, lengths = _batch([5, 2])
    x.requires_grad_(True)
    length_loss(conv(x, mask), 2 * lengths).backward()
    for name, p in conv.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad[mask].abs().sum() == 0  # padded inputs get no gradient
    assert x.grad[~mask].abs().sum() > 0


def test_conv_learns_twice_the_token_count():
    torch.manual_seed(0)
    conv = ConvLength(8, hidden=32, dropout=0.0)
    opt = torch.optim.Adam(conv.parameters(), lr=1e-2)
    lengths = torch.randint(1, 9, (16,))
    x, mask, _ = _batch(lengths.tolist(), seed=1)
    target = 2 * lengths
    losses = []
    for _ in range(25):
        loss = length_loss(conv(x, mask), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    err = (conv.eval().predict(lengths, encoder_out=x) - target).abs().float().mean()
    assert err < 1.0


def test_conv_errors():
    conv = ConvLength(8, hidden=4)
    x, mask, lengths = _batch([3, 2])
    with pytest.raises(ValueError, match="encoder_out"):
        conv.predict(lengths)
    with pytest.raises(ValueError, match="encoder_out"):
        conv(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match="encoder_out"):
        conv(torch.randn(2, 3))
    with pytest.raises(TypeError, match="encoder_out"):
        conv(torch.ones(2, 3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="src_key_padding_mask"):
        conv(x, mask[:, :2])
    with pytest.raises(TypeError, match="src_key_padding_mask"):
        conv(x, mask.long())
    with pytest.raises(ValueError, match="encoder_out"):
        conv.predict(torch.tensor([3]), encoder_out=x)  # batch 1 vs 2
    with pytest.raises(ValueError):
        ConvLength(0)
    with pytest.raises(ValueError):
        ConvLength(8, dropout=1.0)


def test_length_loss_value_and_shapes():
    pred = torch.tensor([3.0, 0.0])
    target = torch.tensor([1, 0])
    expected = ((math.log(4) - math.log(2)) ** 2 + 0.0) / 2
    assert length_loss(pred, target).item() == pytest.approx(expected)
    assert length_loss(torch.tensor([4.0]), torch.tensor([4])).item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="shape"):
        length_loss(torch.ones(3), torch.ones(2, dtype=torch.long))
    with pytest.raises(TypeError, match="pred"):
        length_loss(torch.ones(2, dtype=torch.long), torch.ones(2, dtype=torch.long))


# ---------------------------------------------------------------- shared


def test_state_dict_round_trip():
    ratio = RatioLength(0.6)
    other = RatioLength(2.0)
    other.load_state_dict(ratio.state_dict())
    assert other.predict(torch.tensor([10])).tolist() == [6]

    lk = LookupLength.fit([[1, 2, 1], [2, 3]], durations=[[2, 1, 4], [3, 5]], damping=0.5)
    blank = LookupLength({}, default=0.1, vocab_size=4)
    blank.load_state_dict(lk.state_dict())
    tokens, lengths = _tensor([1, 2, 3, 0], [3, 3, 9, 9]), torch.tensor([4, 4])
    assert blank.predict(lengths, src_tokens=tokens).tolist() == [6, 8]  # 6.5->6, 8
    assert lk.predict(lengths, src_tokens=tokens).tolist() == [6, 8]

    torch.manual_seed(0)
    conv = ConvLength(8, hidden=16).eval()
    torch.manual_seed(1)
    fresh = ConvLength(8, hidden=16).eval()
    x, mask, _ = _batch([4, 2])
    assert not torch.allclose(conv(x, mask), fresh(x, mask))
    fresh.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x, mask), fresh(x, mask))


def test_build_length_predictor():
    assert isinstance(build_length_predictor("ratio", ratio=1.5), RatioLength)
    lk = build_length_predictor("lookup", table={1: 2.0}, default=1.0)
    assert isinstance(lk, LookupLength)
    assert isinstance(build_length_predictor("conv", embed_dim=4, hidden=8), ConvLength)
    with pytest.raises(ValueError, match="conv.*lookup.*ratio"):
        build_length_predictor("stepping")
