"""LRA classifiers: shapes, padding invariance, learning a trivial task, errors."""

import pytest
import torch

from leapformer.models import ClassifierConfig, DualEncoderClassifier, SequenceClassifier
from leapformer.nn import MECHANISMS

FULL = sorted(name for name, cls in MECHANISMS.items() if cls.full)


def _cfg(mech="softmax", **kw):
    return ClassifierConfig(**{"vocab_size": 12, "num_classes": 3, "max_length": 32,
                               "attention": mech, "d_model": 16, "dim_feedforward": 32, **kw})


@pytest.mark.parametrize("mech", FULL)
def test_padding_does_not_change_logits(mech):
    torch.manual_seed(0)
    model = SequenceClassifier(_cfg(mech)).double().eval()
    tokens = torch.randint(1, 12, (2, 20))
    tokens[1, 13:] = 0  # pad id
    logits = model(tokens)
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits[1:], model(tokens[1:, :13]))
    torch.testing.assert_close(logits[:1], model(tokens[:1]))


def test_mean_pooling_matches_direct_computation():
    torch.manual_seed(1)
    model = SequenceClassifier(_cfg()).eval()
    tokens = torch.tensor([[3, 4, 5, 0, 0]])
    enc = model.encoder
    x = enc.embed(tokens) + enc.pos.weight[:5]
    h = enc.encoder(x, key_padding_mask=tokens == 0)
    torch.testing.assert_close(enc(tokens), h[:, :3].mean(1))


@pytest.mark.parametrize("mech", ["softmax", "leap"])
def test_learns_a_trivial_task(mech):
    torch.manual_seed(2)
    model = SequenceClassifier(_cfg(mech, dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tokens = torch.randint(1, 12, (64, 10))
    labels = (tokens == 5).any(1).long() + (tokens == 7).any(1).long()  # 0, 1 or 2
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(tokens), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_dual_encoder_shares_weights_and_is_order_sensitive():
    torch.manual_seed(3)
    model = DualEncoderClassifier(_cfg("linear")).eval()
    a, b = torch.randint(1, 12, (2, 9)), torch.randint(1, 12, (2, 14))
    out = model(a, b)
    assert out.shape == (2, 3)
    assert not torch.allclose(out, model(b, a))  # u - v makes the pair ordered
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in model.encoder.parameters()) + sum(p.numel() for p in model.head.parameters())


def test_errors():
    with pytest.raises(ValueError, match="unknown attention mechanism 'fast'"):
        _cfg("fast")
    with pytest.raises(ValueError, match="num_classes must be positive"):
        _cfg(num_classes=0)
    model = SequenceClassifier(_cfg())
    with pytest.raises(ValueError, match="length 40 > max_length=32"):
        model(torch.ones(1, 40, dtype=torch.long))
    with pytest.raises(ValueError, match=r"integer tensor \[batch, length\]"):
        model(torch.ones(1, 4))
    with pytest.raises(ValueError, match="same|share the batch"):
        DualEncoderClassifier(_cfg())(torch.ones(2, 4, dtype=torch.long), torch.ones(3, 4, dtype=torch.long))


def test_normalized_pair_features_validate_and_learn_a_copy_relation():
    with pytest.raises(ValueError, match="pair_features must be one of"):
        ClassifierConfig(vocab_size=8, num_classes=2, max_length=8, pair_features="cosine")
    torch.manual_seed(0)
    cfg = ClassifierConfig(vocab_size=20, num_classes=2, max_length=12, d_model=16, nhead=2,
                           dim_feedforward=32, dropout=0.0, pair_features="normalized",
                           init_std=0.02)
    model = DualEncoderClassifier(cfg)
    assert isinstance(model.norm, torch.nn.BatchNorm1d)
    assert isinstance(DualEncoderClassifier(ClassifierConfig(
        vocab_size=20, num_classes=2, max_length=12)).norm, torch.nn.Identity)

    def batch(n):  # label 1: the second document is the first one; 0: an unrelated one
        a = torch.randint(1, 20, (n, 12))
        y = torch.randint(0, 2, (n,))
        b = torch.where(y[:, None] == 1, a, torch.randint(1, 20, (n, 12)))
        return a, b, y

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        a, b, y = batch(32)
        loss = torch.nn.functional.cross_entropy(model(a, b), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    a, b, y = batch(400)
    with torch.no_grad():
        acc = (model(a, b).argmax(-1) == y).float().mean().item()
    assert acc > 0.9


def test_normalized_pair_features_refuse_a_training_batch_of_one():
    cfg = ClassifierConfig(vocab_size=20, num_classes=2, max_length=12, d_model=16, nhead=2,
                           dim_feedforward=32, pair_features="normalized")
    model = DualEncoderClassifier(cfg)
    one = torch.randint(1, 20, (1, 12))
    with pytest.raises(ValueError, match="pair_features='normalized'.*got 1"):
        model(one, one)
    model.eval()  # evaluation uses the running statistics: one pair is fine
    assert model(one, one).shape == (1, 2)


def test_sincos2d_positions_code_row_and_column():
    import math

    from leapformer.models.classifier import sincos2d_table

    table = sincos2d_table(40, 8, width=5)
    assert table.shape == (40, 8)
    # pixel 13 of a 5-wide image: row 2, column 3; frequencies 0.2 and 2.0 (2 per part)
    for j, f in enumerate((0.2, 2.0)):
        assert table[13, j].item() == pytest.approx(math.sin(2 * f), abs=1e-6)
        assert table[13, 2 + j].item() == pytest.approx(math.cos(2 * f), abs=1e-6)
        assert table[13, 4 + j].item() == pytest.approx(math.sin(3 * f), abs=1e-6)
        assert table[13, 6 + j].item() == pytest.approx(math.cos(3 * f), abs=1e-6)
    shifted = sincos2d_table(40, 8, width=5, offset=1)
    assert torch.equal(shifted[0], torch.zeros(8)) and torch.equal(shifted[14], table[13])
    cfg = ClassifierConfig(vocab_size=10, num_classes=2, max_length=40, d_model=8, nhead=2,
                           positions="sincos2d", grid_width=5, pooling="cls")
    model = SequenceClassifier(cfg)
    assert torch.equal(model.encoder.pos.weight.detach(), shifted)  # CLS takes position 0
    assert model.encoder.pos.weight.requires_grad  # a start, still trained
    mean = SequenceClassifier(ClassifierConfig(vocab_size=10, num_classes=2, max_length=40,
                                               d_model=8, nhead=2, positions="sincos2d",
                                               grid_width=5))
    assert torch.equal(mean.encoder.pos.weight.detach(), table)
    with pytest.raises(ValueError, match="needs grid_width"):
        ClassifierConfig(vocab_size=10, num_classes=2, max_length=40, positions="sincos2d")
    with pytest.raises(ValueError, match="divisible by 4"):
        ClassifierConfig(vocab_size=10, num_classes=2, max_length=40, d_model=6, nhead=2,
                         positions="sincos2d", grid_width=5)
    with pytest.raises(ValueError, match="positions must be one of"):
        ClassifierConfig(vocab_size=10, num_classes=2, max_length=40, positions="rope")


def test_padding_inside_the_sequence_is_invisible():
    """Masked tokens in the middle (the masked Pathfinder background) change nothing: the
    same tokens with the padding moved to the end give the same output (mean pooling,
    position-free mechanism: here the positions of the kept tokens are kept too)."""
    torch.manual_seed(0)
    for mech in ("softmax", "linear", "leap", "performer"):
        cfg = ClassifierConfig(vocab_size=10, num_classes=2, max_length=12, d_model=8, nhead=2,
                               attention=mech, dropout=0.0)
        model = SequenceClassifier(cfg).eval()
        a = torch.tensor([[3, 0, 4, 0, 0, 5, 0, 0]])
        b = torch.tensor([[3, 7, 4, 2, 9, 5, 1, 6]])  # other tokens where a is padded
        with torch.no_grad():
            out_a = model(a)
            out_b = model(b, key_padding_mask=a == 0)
        torch.testing.assert_close(out_a, out_b, msg=mech)
