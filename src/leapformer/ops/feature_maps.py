"""Non-negative feature maps ``phi`` for linear attention (docs/math.md §1).

A feature map is a callable ``phi(x, is_query) -> Tensor`` on ``[..., d]``
inputs; it may change the last dimension (FAVOR+ maps ``d`` to ``m``
features). Names accepted by :func:`get_feature_map`: ``"relu"``,
``"elu"`` (ELU + 1, Katharopoulos et al. 2020) and ``"identity"``.
"""

from __future__ import annotations

import math
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


class FeatureMap(Protocol):
    def __call__(self, x: Tensor, is_query: bool) -> Tensor: ...


def relu(x: Tensor, is_query: bool = True) -> Tensor:
    """``max(x, 0)``: cosFormer, LeaPformer and the MLA "simple ReLU"."""
    return F.relu(x)


def elu_plus_one(x: Tensor, is_query: bool = True) -> Tensor:
    """``elu(x) + 1`` (Katharopoulos et al. 2020); strictly positive."""
    return F.elu(x) + 1.0


def identity(x: Tensor, is_query: bool = True) -> Tensor:
    """No feature map. Similarities can be negative, so pair it with
    ``normalize="none"`` and a normalisation layer afterwards."""
    return x


_NAMED: dict[str, Callable[[Tensor, bool], Tensor]] = {
    "relu": relu,
    "elu": elu_plus_one,
    "identity": identity,
}

# Maps that act on each row (position) alone, so they may be applied block by
# block (FAVOR+ is not: its key stabiliser is a maximum over all keys).
ROW_WISE: frozenset = frozenset(_NAMED.values())


def get_feature_map(feature_map: str | FeatureMap) -> FeatureMap:
    """Resolve a name or pass a callable through."""
    if isinstance(feature_map, str):
        try:
            return _NAMED[feature_map]
        except KeyError:
            raise ValueError(
                f"feature_map must be one of {sorted(_NAMED)} or a callable, got {feature_map!r}"
            ) from None
    if not callable(feature_map):
        raise TypeError(f"feature_map must be a str or callable, got {type(feature_map).__name__}")
    return feature_map


def draw_projection(
    num_features: int,
    dim: int,
    *,
    orthogonal: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Random matrix ``[num_features, dim]`` for FAVOR+ (rows ~ N(0, I)).

    With ``orthogonal=True`` rows are orthogonal within blocks of ``dim`` and
    rescaled to chi-distributed norms, as in Performer. Call again to redraw.
    """
    if num_features < 1 or dim < 1:
        raise ValueError(f"num_features and dim must be positive, got {num_features}, {dim}")
    gauss = torch.randn(num_features, dim, generator=generator, dtype=torch.float64)
    if orthogonal:
        blocks = []
        for start in range(0, num_features, dim):
            rows = min(dim, num_features - start)
            g = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
            qmat, r = torch.linalg.qr(g)
            qmat = qmat * torch.sign(torch.diagonal(r)).unsqueeze(0)  # Haar-uniform rotation
            blocks.append(qmat.T[:rows])
        norms = gauss.norm(dim=1, keepdim=True)
        proj = torch.cat(blocks, dim=0) * norms
    else:
        proj = gauss
    return proj.to(device=device, dtype=dtype)


class FavorPlus:
    """FAVOR+ positive random features (Choromanski et al. 2020).

    ``phi(x) = exp(w_r . x' - |x'|^2 / 2 - c) / sqrt(m)`` with
    ``x' = x * d**-0.25`` (so that ``phi(q).phi(k)`` estimates
    ``exp(q.k / sqrt d)``) and rows ``w_r`` of ``projection [m, d]``. The
    stabiliser ``c`` is the per-row maximum for queries and the maximum over
    the whole key tensor for keys; both constants cancel in the attention
    ratio. ``eps`` keeps features strictly positive. ``stabilize_keys=False``
    drops the key constant, so that keys fed in several calls (decoding) get
    the same features as in one call.
    """

    def __init__(self, projection: Tensor, *, eps: float = 1e-4, stabilize: bool = True,
                 stabilize_keys: bool | None = None):
        if projection.dim() != 2:
            raise ValueError(f"projection must be [num_features, dim], got {list(projection.shape)}")
        self.projection = projection
        self.eps = eps
        self.stabilize = stabilize
        self.stabilize_keys = stabilize if stabilize_keys is None else stabilize_keys

    @property
    def num_features(self) -> int:
        return self.projection.shape[0]

    def __call__(self, x: Tensor, is_query: bool) -> Tensor:
        d = x.shape[-1]
        if d != self.projection.shape[1]:
            raise ValueError(
                f"input head_dim {d} does not match projection {list(self.projection.shape)}"
            )
        x = x * d**-0.25
        proj = self.projection.to(dtype=x.dtype, device=x.device)
        logits = x @ proj.T - 0.5 * (x * x).sum(-1, keepdim=True)
        if is_query and self.stabilize:
            logits = logits - logits.amax(-1, keepdim=True).detach()
        elif not is_query and self.stabilize_keys:
            logits = logits - logits.amax(dim=(-2, -1), keepdim=True).detach()
        return (torch.exp(logits) + self.eps) / math.sqrt(self.num_features)
