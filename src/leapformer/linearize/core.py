"""The linear attention that replaces one softmax self-attention layer.

:class:`LinearCore` holds a layer's new parameters (the LeaP proportion networks of
:class:`~leapformer.nn.LeaP`, and optionally a learnable Hedgehog feature map) and
computes causal linear attention from the layer's own queries, keys and values, as
the ``transformers`` attention functions receive them (``q [B, H, M, D]``,
``k``/``v [B, Hkv, N, D]`` after rotary embedding and the key/value cache; GQA key
heads are shared by ``H / Hkv`` query heads). The arithmetic is
:func:`leapformer.ops.leap_attention` (mechanism ``"leap"``, docs/math.md §1.3) or
:func:`leapformer.ops.linear_attention` with ReLU features (``"linear"``).

When there are more keys than queries (``N > M``: decoding through ``transformers``'
default key/value cache), the first ``N - M`` keys are summed into a
:class:`~leapformer.ops.LinearAttentionState` and the last ``M`` attend causally from
it: exact, but the prefix is summed again at every step. The constant-size cache of
:mod:`leapformer.linearize.cache` passes the state itself (``initial_state``) instead.

The Hedgehog map (Zhang et al. 2024, "The Hedgehog & the Porcupine") is, per head,
``phi(x) = [softmax(x W + b), softmax(-(x W + b))]`` over the feature axis, with
``W`` initialised to the identity; queries and keys have their own map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.nn import LeaP
from leapformer.ops import LinearAttentionState, leap_attention, linear_attention, reweighting

MECHANISMS = ("leap", "linear")
FEATURE_MAPS = ("relu", "hedgehog")


class HedgehogMap(nn.Module):
    """Learnable per-head feature map ``[B, H, L, D] -> [B, H, L, 2D]`` (see the module
    docstring); identity-initialised weights ``[H, D, D]`` and zero biases ``[H, D]``."""

    def __init__(self, num_heads: int, head_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.eye(head_dim).repeat(num_heads, 1, 1))
        self.bias = nn.Parameter(torch.zeros(num_heads, head_dim))

    def forward(self, x: Tensor) -> Tensor:
        heads, dim = self.weight.shape[0], self.weight.shape[-1]
        if x.dim() != 4 or x.shape[1] != heads or x.shape[-1] != dim:
            raise ValueError(f"HedgehogMap expects [batch, {heads}, length, {dim}] inputs, "
                             f"got {list(x.shape)}")
        w = self.weight.to(x.dtype)
        z = torch.einsum("bhld,hde->bhle", x, w) + self.bias.to(x.dtype)[None, :, None, :]
        return torch.cat((z.softmax(-1), (-z).softmax(-1)), dim=-1)


class _PairMap:
    """``phi(x, is_query)`` of :mod:`leapformer.ops` from a query map and a key map."""

    def __init__(self, q_map: HedgehogMap, k_map: HedgehogMap):
        self.q_map, self.k_map = q_map, k_map

    def __call__(self, x: Tensor, is_query: bool) -> Tensor:
        return self.q_map(x) if is_query else self.k_map(x)


class LinearCore(nn.Module):
    """New parameters and causal linear attention of one linearised layer.

    ``mechanism``: ``"leap"`` (ReLU features re-weighted by ``cos(pi/2 (P_q - P_k))``,
    proportions from one LeaP network for queries and one for keys, shared by the
    heads) or ``"linear"`` (ReLU features, no proportions). ``feature_map``:
    ``"relu"`` or ``"hedgehog"`` (learnable, see :class:`HedgehogMap`). ``step_down`` /
    ``hidden``: the LeaP networks' size (:class:`~leapformer.nn.LeaP`). The
    denominator is clamped at ``eps`` (0.1, the official LeaPformer code's
    ``normalize="clamp"``). ``enabled=False`` makes the layer fall back to the
    architecture's softmax attention (used for the teacher in stage 1).
    """

    def __init__(self, num_heads: int, head_dim: int, *, mechanism: str = "leap",
                 feature_map: str = "relu", step_down: int = 4, hidden: int | None = None,
                 eps: float = 0.1):
        super().__init__()
        if mechanism not in MECHANISMS:
            raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
        if feature_map not in FEATURE_MAPS:
            raise ValueError(f"feature_map must be one of {FEATURE_MAPS}, got {feature_map!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        self.num_heads, self.head_dim = num_heads, head_dim
        self.mechanism, self.feature_map_name, self.eps = mechanism, feature_map, float(eps)
        if mechanism == "leap":
            self.leap_q = LeaP(head_dim, step_down=step_down, hidden=hidden)
            self.leap_k = LeaP(head_dim, step_down=step_down, hidden=hidden)
        if feature_map == "hedgehog":
            self.phi_q = HedgehogMap(num_heads, head_dim)
            self.phi_k = HedgehogMap(num_heads, head_dim)
        self.enabled = True
        self.transfer: list | None = None  # stage 1: where the MSE goes (swap.transfer_mode)
        self.cache_layer = None  # lent by swap's pre-hook while a constant-size cache is used

    @property
    def feature_dim(self) -> int:
        return 2 * self.head_dim if self.feature_map_name == "hedgehog" else self.head_dim

    def phi(self):
        """The feature map as :mod:`leapformer.ops` takes it (a name or a callable)."""
        if self.feature_map_name == "hedgehog":
            return _PairMap(self.phi_q, self.phi_k)
        return "relu"

    def proportions(self, q: Tensor, k: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """``(q_prop [B,H,M], k_prop [B,H,N])`` in ``(0, 1)``, or ``(None, None)``."""
        if self.mechanism != "leap":
            return None, None
        return self.leap_q(F.relu(q)), self.leap_k(F.relu(k))

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None,
                initial_state: LinearAttentionState | None = None,
                output_final_state: bool = False):
        """Causal attention ``[B, H, M, Dv]`` of queries ``q [B, H, M, D]`` at the last
        ``M`` of ``N`` positions over ``k [B, Hkv, N, D]``, ``v [B, Hkv, N, Dv]``
        (``H`` a multiple of ``Hkv``); ``key_padding_mask [B, N]``, True = padding.
        ``initial_state``: the running sums of earlier keys (then ``N == M``); with
        ``output_final_state`` the state after these keys is returned too."""
        if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
            raise ValueError(f"q, k, v must be [batch, heads, length, head_dim], got "
                             f"{list(q.shape)}, {list(k.shape)}, {list(v.shape)}")
        H, Hkv = q.shape[1], k.shape[1]
        if H != self.num_heads or H % Hkv:
            raise ValueError(f"expected {self.num_heads} query heads, a multiple of the "
                             f"{Hkv} key heads, got q {list(q.shape)}, k {list(k.shape)}")
        if Hkv != H:  # GQA: each key/value head serves H / Hkv consecutive query heads
            k = k.repeat_interleave(H // Hkv, dim=1)
            v = v.repeat_interleave(H // Hkv, dim=1)
        M, N = q.shape[2], k.shape[2]
        if M > N:
            raise ValueError(f"more queries than keys: q {list(q.shape)}, k {list(k.shape)}")
        q_prop, k_prop = self.proportions(q, k)
        phi = self.phi()
        state = initial_state
        pad = key_padding_mask
        if N > M and state is not None:
            raise ValueError(f"with an initial_state, k and v hold only the new keys; got "
                             f"q {list(q.shape)}, k {list(k.shape)}")
        if N > M:
            state = self._prefix_state(k[:, :, :N - M], v[:, :, :N - M],
                                       None if k_prop is None else k_prop[:, :, :N - M],
                                       None if pad is None else pad[:, :N - M], q.dtype)
            k, v = k[:, :, N - M:], v[:, :, N - M:]
            k_prop = None if k_prop is None else k_prop[:, :, N - M:]
            pad = None if pad is None else pad[:, N - M:]
        common = dict(causal=True, key_padding_mask=pad, normalize="clamp", eps=self.eps,
                      feature_map=phi, initial_state=state,
                      output_final_state=output_final_state)
        if q_prop is None:
            return linear_attention(q, k, v, **common)
        # sigmoid outputs are in (0, 1) by construction: no range check (a device sync)
        return leap_attention(q, k, v, q_prop, k_prop, check_proportions=False, **common)

    def _prefix_state(self, k: Tensor, v: Tensor, k_prop: Tensor | None,
                      pad: Tensor | None, dtype: torch.dtype) -> LinearAttentionState:
        cdtype = torch.float64 if dtype == torch.float64 else torch.float32
        B, H = k.shape[:2]
        groups = 1 if k_prop is None else 2
        state = LinearAttentionState.zeros(B, H, groups, self.feature_dim, v.shape[-1],
                                           device=k.device, dtype=cdtype)
        fk = self.phi_k(k.to(cdtype)) if self.feature_map_name == "hedgehog" \
            else F.relu(k.to(cdtype))
        vc = v.to(cdtype)
        w = None if k_prop is None else reweighting(k_prop.to(cdtype))
        if pad is not None:
            fk = fk.masked_fill(pad[:, None, :, None], 0.0)
            vc = vc.masked_fill(pad[:, None, :, None], 0.0)
            if w is not None:
                w = w.masked_fill(pad[:, None, :, None], 0.0)
        state.extend_(fk, vc, w)  # in place on a fresh tensor: autograd follows it
        return state

    def extra_repr(self) -> str:
        return (f"mechanism={self.mechanism}, feature_map={self.feature_map_name}, "
                f"heads={self.num_heads}, head_dim={self.head_dim}")
