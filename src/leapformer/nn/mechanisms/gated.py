"""Gated linear attention: ``gla`` (ReLU linear attention with GLA's decay) and
``gated-leap`` (LeaP with it): GLA, Yang et al. 2023; LeaP, docs/math.md §1.3.

Causal self-attention keeps a decayed state ``S_t = diag(a_t) S_{t-1} + phi(k_t)^T v_t``
(:func:`leapformer.ops.gated_linear_attention`, :func:`leapformer.ops.gated_leap_attention`),
with GLA's gate ``a_t = sigmoid(W x_t)^(1/tau)``, ``tau = 16`` and a low-rank ``W``
(rank 16, with a bias), one decay per head and key-feature channel. A mechanism
sees the per-head projections only, not ``x_t``: the gate reads the layer's key
projection (every head's raw key, concatenated: ``k_t = W_k x_t + b_k``), so its
logits are ``W_2 W_1 (W_k x_t + b_k) + b``, linear in ``x_t`` as GLA's are, with
``W_k`` shared with the keys (a departure from GLA, whose gate has its own input
projection).

Decoding keeps the cache of ``linear`` / ``leap`` (the fused state
``[B, H, G, F, P]`` of :class:`~leapformer.ops.LinearAttentionState`): each step
multiplies it in place by the token's decay before adding the key
(:func:`leapformer.ops.gated_step_`). A padded slot adds nothing and decays nothing.

Non-causal calls are defined as the ungated mechanism (``linear`` / ``leap``):
bidirectional self-attention, cross-attention (full forward and caches) and
wait-k prefix cross-attention. A decay runs along one causal sequence; these
calls have no such order (or, for cross-attention, no shared sequence), and the
gate's parameters take no part in them. The first such call of each layer logs a
warning, so that e.g. an LRA classifier built with ``gla`` does not pass silently
for a gated model.
"""

from __future__ import annotations

import logging
import math

from torch import Tensor, nn

from leapformer.nn.mechanisms.base import _as, check_option
from leapformer.nn.mechanisms.leap import LeaPAttention
from leapformer.nn.mechanisms.linear import ReluLinear
from leapformer.nn.mechanisms.registry import register_mechanism
from leapformer.ops import (
    LinearAttentionState,
    gated_leap_attention,
    gated_linear_attention,
    gated_step_,
    gla_log_decay,
)


class _Gate:
    """The gate and the causal paths, mixed into a linear-family mechanism (first base)."""

    def __init__(self, num_heads, head_dim, *, tau: float = 16.0, gate_rank: int = 16,
                 **options):
        super().__init__(num_heads, head_dim, **options)
        check_option("tau", tau, "number")
        if not 0 < tau < math.inf:
            raise ValueError(f"tau must be a positive finite number, got {tau!r}")
        check_option("gate_rank", gate_rank, "int")
        if gate_rank < 1:
            raise ValueError(f"gate_rank must be positive, got {gate_rank!r}")
        self.tau = float(tau)
        self.gate = nn.Sequential(nn.Linear(num_heads * head_dim, gate_rank, bias=False),
                                  nn.Linear(gate_rank, num_heads * self.feature_dim))

    def _query(self, q: Tensor) -> Tensor:
        return q

    def log_decay(self, k: Tensor) -> Tensor:
        """``log a [B,H,N,F]`` (``<= 0``) from the raw keys ``k [B,H,N,D]`` of all heads."""
        B, H, N, D = k.shape
        x = k.transpose(1, 2).reshape(B, N, H * D)
        if x.dtype != self.gate[0].weight.dtype:
            x = x.to(self.gate[0].weight.dtype)
        logits = self.gate(x).view(B, N, H, -1).transpose(1, 2)
        return gla_log_decay(logits, self.tau)

    def _gated_attend(self, q, k, v, log_decay, q_prop, k_prop, **kw):
        common = dict(normalize=self.normalize, eps=self.eps, feature_map=self.feature_map, **kw)
        if q_prop is None:
            return gated_linear_attention(q, k, v, log_decay, **common)
        return gated_leap_attention(q, k, v, log_decay, q_prop, k_prop,
                                    check_proportions=self.check_proportions, **common)

    def forward(self, q, k, v, *, causal=False, key_padding_mask=None, need_weights=False,
                q_len=None, k_len=None, prefix=None):
        if not causal or prefix is not None:  # ungated (see the module docstring)
            if not getattr(self, "_warned_ungated", False):
                self._warned_ungated = True
                logging.getLogger(__name__).warning(
                    "%s: a non-causal call runs the ungated mechanism (no decay)", self.name)
            return super().forward(q, k, v, causal=causal, key_padding_mask=key_padding_mask,
                                   need_weights=need_weights, q_len=q_len, k_len=k_len,
                                   prefix=prefix)
        q = self._query(q)
        q_prop, k_prop = self._props(q, k, 0, 0, q_len, k_len)
        res = self._gated_attend(q, k, v, self.log_decay(k), q_prop, k_prop,
                                 key_padding_mask=key_padding_mask, return_weights=need_weights)
        o, weights = res if need_weights else (res, None)
        return self._finish(o), weights

    def self_step(self, q, k, v, cache, *, q_len=None, key_padding_mask=None):
        q = self._query(q)
        s = cache.tensors["s"]
        pos = cache.new_positions(q.shape[2], key_padding_mask, device=q.device)
        offset = cache.length if pos is None else pos
        log_decay = self.log_decay(k)
        if q.shape[2] == 1 and key_padding_mask is None:
            f = _as(self.step_features(q, k), s.dtype)
            props = None
            if self.reweighted:
                props = _as(self.step_proportions(q, k, f, offset, q_len), s.dtype)
            o = gated_step_(f, v, s, log_decay, props, normalize=self.normalize, eps=self.eps)
            o = _as(o, q.dtype)
        else:  # padded slots: zero features and no decay inside the ops
            q_prop, k_prop = self._props(q, k, offset, offset, q_len, q_len)
            o, final = self._gated_attend(q, k, v, log_decay, q_prop, k_prop,
                                          key_padding_mask=key_padding_mask,
                                          initial_state=LinearAttentionState(s, v.shape[-1]),
                                          output_final_state=True)
            s.copy_(final.s)
        return self._finish(o)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau={self.tau:g}"


@register_mechanism
class GatedLinear(_Gate, ReluLinear):
    """``linear`` (ReLU features, clamped denominator) with GLA's decay in causal
    self-attention. Options: ``tau`` (16), ``gate_rank`` (16) and those of ``linear``."""

    name = "gla"


@register_mechanism
class GatedLeaP(_Gate, LeaPAttention):
    """``leap`` with GLA's decay in causal self-attention: the decay of each key-feature
    channel applies to both re-weighted halves. Options: ``tau`` (16), ``gate_rank``
    (16) and those of ``leap`` (``step_down``, ``hidden``, ``q_scale``, ...)."""

    name = "gated-leap"

    def _query(self, q: Tensor) -> Tensor:
        return self._scaled(q)
