"""MLA spec strings."""

import pytest

from leapformer.nn import AttentionSpec


def test_single_name_sets_every_block():
    spec = AttentionSpec.parse("leap")
    assert (spec.enc, spec.dec, spec.cross) == ("leap", "leap", "leap")


def test_blocks_and_layers():
    spec = AttentionSpec.parse(" enc=cosformer, dec=linear ,cross=cosformer,dec.0=softmax ")
    assert spec.mechanism("enc", 3) == "cosformer"
    assert spec.mechanism("dec", 0) == "softmax"
    assert spec.mechanism("dec", 1) == "linear"
    assert spec.mechanism("decoder", 1) == "linear"
    assert spec.mechanism("cross") == "cosformer"
    assert AttentionSpec.parse(str(spec)) == spec


def test_unmentioned_blocks_default_to_softmax():
    spec = AttentionSpec.parse("encoder=leap")
    assert (spec.enc, spec.dec, spec.cross) == ("leap", "softmax", "softmax")


@pytest.mark.parametrize("text,match", [
    ("flash", "unknown attention mechanism 'flash'"),
    ("enc=leap,middle=linear", "unknown attention block 'middle'"),
    ("enc=leap,dec", "bad attention spec entry 'dec'"),
    ("enc=", "bad attention spec entry"),
    ("dec.x=linear", "bad layer index 'x'"),
    ("enc=leap,cross=relu", "unknown attention mechanism 'relu'"),
    ("", "non-empty"),
])
def test_errors(text, match):
    with pytest.raises(ValueError, match=match):
        AttentionSpec.parse(text)


def test_direct_construction_is_validated():
    with pytest.raises(ValueError, match="unknown attention block"):
        AttentionSpec(layers={("ffn", 0): "leap"})
    with pytest.raises(ValueError, match="unknown attention block"):
        AttentionSpec().mechanism("ffn")


def test_layer_overrides_must_exist():
    from leapformer.models import Seq2Seq, Seq2SeqConfig
    from leapformer.nn import BlockConfig, Decoder, Encoder

    cfg = BlockConfig(d_model=16, nhead=2, dim_feedforward=32)
    with pytest.raises(ValueError, match=r"names dec.99 but the decoder has 2 layers \(layers "
                       r"0-1\)"):
        Decoder(2, cfg, "enc=leap,dec=leap,cross=leap,dec.99=softmax")
    with pytest.raises(ValueError, match="names cross.2 but the decoder has 2 layers"):
        Decoder(2, cfg, "dec=leap,cross.2=linear")
    Decoder(2, cfg, "dec=leap,cross.2=linear", cross=False)  # no cross-attention there
    with pytest.raises(ValueError, match="names enc.3 but the encoder has 3 layers"):
        Encoder(3, cfg, "enc=leap,enc.3=softmax")
    Encoder(3, cfg, "enc=leap,enc.2=softmax,dec.9=linear")  # dec.* is the decoder's business
    s2s = Seq2SeqConfig.preset("lite", 30, 30, num_encoder_layers=1, num_decoder_layers=2,
                               d_model=16, nhead=2, dim_feedforward=32)
    with pytest.raises(ValueError, match="names dec.99"):
        Seq2Seq(s2s, "enc=leap,dec=leap,cross=leap,dec.99=softmax")


def test_partial_spec_logs_the_default(caplog):
    with caplog.at_level("WARNING", logger="leapformer.nn.spec"):
        AttentionSpec.parse("enc=leap,enc.0=linear")
    assert "names no mechanism for dec, cross: using softmax (the default)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="leapformer.nn.spec"):
        AttentionSpec.parse("enc=leap,dec=leap,cross=linear")
        AttentionSpec.parse("leap")
    assert caplog.text == ""
