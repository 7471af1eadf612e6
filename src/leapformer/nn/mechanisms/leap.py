"""LeaPformer: proportions predicted per token by small networks (SPEC §1.3)."""

from __future__ import annotations

import torch.nn.functional as F

from leapformer.nn.leap import LeaP
from leapformer.nn.mechanisms.base import LinearMechanism


class LeaPAttention(LinearMechanism):
    """ReLU features re-weighted by ``cos(pi/2 (P_q - P_k))`` with
    ``P_q = LeaP_q(relu(q))`` and ``P_k = LeaP_k(relu(k))``, one pair of LeaP
    networks per layer shared by all heads (``step_down`` or ``hidden``, see
    :class:`~leapformer.nn.LeaP`). No length is needed: decoding and
    simultaneous use are exact."""

    name = "leap"
    reweighted = True

    def __init__(self, num_heads, head_dim, *, step_down: int = 4, hidden: int | None = None,
                 **options):
        super().__init__(num_heads, head_dim, feature_map="relu", **options)
        self.leap_q = LeaP(head_dim, step_down=step_down, hidden=hidden)
        self.leap_k = LeaP(head_dim, step_down=step_down, hidden=hidden)

    def query_proportions(self, q, offset, q_len):
        return self.leap_q(F.relu(q))

    def key_proportions(self, k, offset, k_len):
        return self.leap_k(F.relu(k))
