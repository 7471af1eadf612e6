"""Linear attention without re-weighting: ReLU ("simple ReLU" of the MLA paper)
and ELU+1 (Katharopoulos et al. 2020)."""

from __future__ import annotations

from leapformer.nn.mechanisms.base import LinearMechanism
from leapformer.nn.mechanisms.registry import register_mechanism


@register_mechanism
class ReluLinear(LinearMechanism):
    """``phi = relu``: the MLA paper's "simple ReLU"."""

    name = "linear"

    def __init__(self, num_heads, head_dim, **options):
        super().__init__(num_heads, head_dim, feature_map="relu", **options)


@register_mechanism
class EluLinear(LinearMechanism):
    """``phi = elu + 1`` (Katharopoulos et al. 2020)."""

    name = "elu"

    def __init__(self, num_heads, head_dim, **options):
        super().__init__(num_heads, head_dim, feature_map="elu", **options)
