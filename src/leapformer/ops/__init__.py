"""Pure tensor functions on ``[batch, heads, length, head_dim]``: feature maps,
proportion re-weighting, linear attention in parallel / chunk / recurrent
forms, prefix-constrained (wait-k) cross-attention, and the softmax reference."""

from leapformer.ops.attention import (
    cosformer_attention,
    leap_attention,
    linear_attention,
)
from leapformer.ops.feature_maps import (
    FavorPlus,
    draw_projection,
    elu_plus_one,
    get_feature_map,
    identity,
    relu,
)
from leapformer.ops.gated import (
    gated_leap_attention,
    gated_linear_attention,
    gated_step_,
    gla_log_decay,
)
from leapformer.ops.linear_step import step_ as decode_step_
from leapformer.ops.prefix_cross import (
    prefix_cross_attention,
    prefix_cross_attention_parallel,
    prefix_softmax_attention,
    waitk_prefix,
)
from leapformer.ops.proportions import (
    cosformer_proportions,
    cross_proportions,
    reweighting,
)
from leapformer.ops.softmax import softmax_attention
from leapformer.ops.state import LinearAttentionState

__all__ = [
    "FavorPlus",
    "LinearAttentionState",
    "cosformer_attention",
    "cosformer_proportions",
    "cross_proportions",
    "decode_step_",
    "draw_projection",
    "elu_plus_one",
    "gated_leap_attention",
    "gated_linear_attention",
    "gated_step_",
    "get_feature_map",
    "gla_log_decay",
    "identity",
    "leap_attention",
    "linear_attention",
    "prefix_cross_attention",
    "prefix_cross_attention_parallel",
    "prefix_softmax_attention",
    "relu",
    "reweighting",
    "softmax_attention",
    "waitk_prefix",
]
