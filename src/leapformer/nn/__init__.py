"""Modules: the LeaP network, multi-head attention with a mechanism registry,
decoding caches, transformer blocks with a mechanism per block (MLA), and
target-length predictors."""

from leapformer.nn.attention import MultiheadAttention
from leapformer.nn.blocks import BlockConfig, Decoder, DecoderLayer, Encoder, EncoderLayer
from leapformer.nn.cache import AttentionCache, DecoderCache, LayerCache
from leapformer.nn.leap import LeaP
from leapformer.nn.length import (
    ConvLength,
    LookupLength,
    RatioLength,
    build_length_predictor,
    length_loss,
)
from leapformer.nn.mechanisms import MECHANISMS, Mechanism, build_mechanism, register_mechanism
from leapformer.nn.spec import AttentionSpec

__all__ = [
    "MECHANISMS", "AttentionCache", "AttentionSpec", "BlockConfig", "ConvLength", "Decoder",
    "DecoderCache", "DecoderLayer", "Encoder", "EncoderLayer", "LayerCache", "LeaP",
    "LookupLength", "Mechanism", "MultiheadAttention", "RatioLength", "build_length_predictor",
    "build_mechanism", "length_loss", "register_mechanism",
]
