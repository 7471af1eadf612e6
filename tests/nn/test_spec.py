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
