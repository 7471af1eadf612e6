"""Performer: FAVOR+ positive random features (Choromanski et al. 2020)."""

from __future__ import annotations

import torch
from torch import Tensor

from leapformer.nn.mechanisms.base import LinearMechanism, check_option
from leapformer.nn.mechanisms.registry import register_mechanism
from leapformer.ops import FavorPlus, draw_projection


@register_mechanism
class Performer(LinearMechanism):
    """Linear attention on FAVOR+ features, ``num_features`` random features
    (default: the head size) drawn orthogonally; :meth:`redraw` draws anew.

    Keys are not stabilised by their global maximum (the constant would differ
    between a full call and token-by-token decoding); queries are, per row.
    """

    name = "performer"

    def __init__(self, num_heads, head_dim, *, num_features: int | None = None,
                 orthogonal: bool = True, seed: int | None = None, **options):
        super().__init__(num_heads, head_dim, feature_map=self._favor, **options)
        check_option("num_features", num_features, "int", optional=True)
        check_option("orthogonal", orthogonal, "bool")
        check_option("seed", seed, "int", optional=True)
        if num_features is not None and num_features < 1:
            raise ValueError(f"num_features must be positive, got {num_features}")
        self.num_features = num_features or head_dim
        self.orthogonal = orthogonal
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        self.register_buffer("projection", draw_projection(
            self.num_features, head_dim, orthogonal=orthogonal, generator=gen))

    @property
    def feature_dim(self) -> int:
        return self.num_features

    def _favor(self, x: Tensor, is_query: bool) -> Tensor:
        return FavorPlus(self.projection, stabilize_keys=False)(x, is_query)

    @torch.no_grad()
    def redraw(self, generator: torch.Generator | None = None) -> None:
        """Draw a new random projection in place (Performer's periodic redraw)."""
        self.projection.copy_(draw_projection(self.num_features, self.head_dim,
                                              orthogonal=self.orthogonal, generator=generator))
