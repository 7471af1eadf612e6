"""The classifier options of the official LRA harness: GELU, N(0, 0.02^2) embeddings,
head width 128, the retrieval head, pooling modes, fixed padding, attention dropout."""

import pytest
import torch
import torch.nn.functional as F

from leapformer.models import ClassifierConfig, DualEncoderClassifier, SequenceClassifier
from leapformer.tasks.lra import get_profile
from leapformer.tasks.lra.profile import classifier_options

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**kw):
    return ClassifierConfig(**{"vocab_size": 12, "num_classes": 3, "max_length": 32,
                               "d_model": 16, "dim_feedforward": 32, **kw})


def test_official_text_model_has_the_official_parameter_count():
    # LeaPformer's pytorch-lra log softmax_text_train.log: "num_parameter": 370562
    cfg = ClassifierConfig(vocab_size=512, num_classes=2,
                           **classifier_options("softmax", get_profile("text", "paper")))
    assert sum(p.numel() for p in SequenceClassifier(cfg).parameters()) == 370_562


def test_head_widths_gelu_and_embedding_init():
    p = get_profile("text", "paper")
    cfg = ClassifierConfig(vocab_size=512, num_classes=10, **classifier_options("leap", p))
    torch.manual_seed(0)
    single, dual = SequenceClassifier(cfg), DualEncoderClassifier(
        ClassifierConfig(**{**cfg.__dict__, "num_classes": 2}))
    shapes = [tuple(m.weight.shape) for m in single.head if isinstance(m, torch.nn.Linear)]
    assert shapes == [(128, 64), (10, 128)]
    shapes = [tuple(m.weight.shape) for m in dual.head if isinstance(m, torch.nn.Linear)]
    assert shapes == [(128, 256), (2, 128)]
    assert isinstance(single.head[1], torch.nn.ReLU)
    ffn = single.encoder.encoder.layers[0].ffn
    x = torch.randn(3, 64)
    torch.testing.assert_close(ffn.eval()(x), ffn.linear2(F.gelu(ffn.linear1(x))))
    emb, pos = single.encoder.embed.weight, single.encoder.pos.weight
    assert emb[0].abs().sum() == 0  # the padding row
    assert abs(emb[1:].std().item() - 0.02) < 0.001 and abs(pos.std().item() - 0.02) < 0.001
    assert pos.shape == (4096, 64)
    # lite: PyTorch's N(0, 1) embeddings, ReLU, head width d_model (unchanged)
    lite = SequenceClassifier(_cfg())
    assert lite.encoder.embed.weight[1:].std() > 0.5
    assert [m.out_features for m in lite.head if isinstance(m, torch.nn.Linear)] == [16, 3]
    assert lite.encoder.encoder.layers[0].ffn.activation is F.relu


def test_pooling_modes():
    torch.manual_seed(1)
    tokens = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 2]])
    mean = SequenceClassifier(_cfg()).eval().encoder
    padded = SequenceClassifier(_cfg(pooling="mean_padded")).eval().encoder
    padded.load_state_dict(mean.state_dict())
    h = mean.encoder(mean.embed(tokens) + mean.pos.weight[:5], key_padding_mask=tokens == 0)
    torch.testing.assert_close(mean(tokens)[0], h[0, :3].mean(0))
    torch.testing.assert_close(padded(tokens)[0], h[0, :3].sum(0) / 5)  # / the tensor length
    torch.testing.assert_close(padded(tokens)[1], mean(tokens)[1])
    # cls: a learned vector at position 0; at max_length the last token is dropped
    cls = SequenceClassifier(_cfg(pooling="cls", max_length=5)).eval().encoder
    x = torch.cat((cls.cls.expand(2, 1, -1), cls.embed(tokens[:, :4])), 1) + cls.pos.weight[:5]
    ref = cls.encoder(x, key_padding_mask=F.pad(tokens[:, :4] == 0, (1, 0), value=False))
    torch.testing.assert_close(cls(tokens), ref[:, 0])
    assert "encoder.cls" not in SequenceClassifier(_cfg()).state_dict()


def test_pad_to_makes_features_independent_of_the_batch():
    torch.manual_seed(2)
    model = SequenceClassifier(_cfg(pooling="mean_padded", pad_to=24)).double().eval()
    short = torch.randint(1, 12, (1, 6))
    batch = torch.cat((F.pad(short, (0, 10)), torch.randint(1, 12, (1, 16))))
    torch.testing.assert_close(model(short), model(batch)[:1])
    manual = SequenceClassifier(_cfg(pooling="mean_padded")).double().eval()
    manual.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(short), manual(F.pad(short, (0, 18))))
    with pytest.raises(ValueError, match="length 30 > pad_to=24"):
        model(torch.ones(1, 30, dtype=torch.long))


def test_attention_dropout_and_errors():
    model = SequenceClassifier(_cfg(attention="leap", attention_dropout=0.0))
    layer = model.encoder.encoder.layers[0]
    assert layer.self_attn.attention.dropout == 0.0 and layer.sub_attn.dropout.p == 0.1
    assert SequenceClassifier(_cfg(attention="leap")).encoder.encoder.layers[0] \
        .self_attn.attention.dropout == 0.1
    for kw, match in (({"pooling": "max"}, "pooling must be one of"),
                      ({"pad_to": 64}, "pad_to must be <= max_length"),
                      ({"head_hidden": 0}, "head_hidden must be None or a positive int"),
                      ({"init_std": -1.0}, "init_std must be None or > 0"),
                      ({"activation": "tanh"}, "activation must be one of")):
        with pytest.raises(ValueError, match=match):
            _cfg(**kw)
