"""LeaPformer: proportions predicted per token by small networks (docs/math.md §1.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from leapformer.nn.leap import LeaP
from leapformer.nn.mechanisms.base import LinearMechanism
from leapformer.nn.mechanisms.registry import register_mechanism


@register_mechanism
class LeaPAttention(LinearMechanism):
    """ReLU features re-weighted by ``cos(pi/2 (P_q - P_k))`` with
    ``P_q = LeaP_q(relu(q))`` and ``P_k = LeaP_k(relu(k))``, one pair of LeaP
    networks per layer shared by all heads (``step_down`` or ``hidden``, see
    :class:`~leapformer.nn.LeaP`). No length is needed: decoding and
    simultaneous use are exact.

    ``q_scale=True`` multiplies the queries by ``head_dim ** -0.5`` first, before
    the ReLU and before ``LeaP_q`` (keys unscaled), as the official fairseq
    LeaPformer attention does (``q *= self.scaling``); the official LRA code
    does not scale. The scale cancels in the ratio except through ``LeaP_q``'s
    input and the denominator's clamp."""

    name = "leap"
    reweighted = True
    # sigmoid outputs are in (0, 1) by construction (a NaN query already gives a NaN
    # row, as documented in leapformer.ops): the range check would only add a device
    # sync to every layer's forward
    check_proportions = False

    def __init__(self, num_heads, head_dim, *, step_down: int = 4, hidden: int | None = None,
                 q_scale: bool = False, **options):
        super().__init__(num_heads, head_dim, feature_map="relu", **options)
        if not isinstance(q_scale, bool):
            raise TypeError(f"q_scale must be a bool, got {type(q_scale).__name__}")
        self.leap_q = LeaP(head_dim, step_down=step_down, hidden=hidden)
        self.leap_k = LeaP(head_dim, step_down=step_down, hidden=hidden)
        self.q_scale = q_scale
        self.scaling = head_dim ** -0.5

    def _scaled(self, q):
        return q * self.scaling if self.q_scale else q

    def forward(self, q, k, v, **kwargs):
        return super().forward(self._scaled(q), k, v, **kwargs)

    def self_step(self, q, k, v, cache, **kwargs):
        return super().self_step(self._scaled(q), k, v, cache, **kwargs)

    def cross_read(self, q, cache, **kwargs):
        return super().cross_read(self._scaled(q), cache, **kwargs)

    def query_proportions(self, q, offset, q_len):
        return self.leap_q(F.relu(q))

    def key_proportions(self, k, offset, k_len):
        return self.leap_k(F.relu(k))

    def step_proportions(self, q, k, f, offset, q_len):
        """Both LeaP networks in one batched pass per linear layer (decoding is
        bound by per-operation overhead). Without gradients only: the stacked
        weights are a detached copy, remade when a parameter changes."""
        if torch.is_grad_enabled():
            return super().step_proportions(q, k, f, offset, q_len)
        layers = self._stacked_layers()
        x = f.reshape(2, -1, f.shape[-1])
        if x.dtype != layers[0][0].dtype:
            x = x.to(layers[0][0].dtype)
        for i, (w, b) in enumerate(layers):
            x = torch.baddbmm(b, x, w)
            x = x.sigmoid_() if i == len(layers) - 1 else x.relu_()
        return x.view(f.shape[:-1])

    def _stacked_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        lin_q = [m for m in self.leap_q.net if isinstance(m, nn.Linear)]
        lin_k = [m for m in self.leap_k.net if isinstance(m, nn.Linear)]
        params = [p for m in lin_q + lin_k for p in (m.weight, m.bias)]
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in params)
        if getattr(self, "_stack_key", None) != key:
            self._stack = [(torch.stack((a.weight.T, b.weight.T)).detach(),
                            torch.stack((a.bias, b.bias)).unsqueeze(1).detach())
                           for a, b in zip(lin_q, lin_k)]
            self._stack_key = key
        return self._stack
