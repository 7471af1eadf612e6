"""Base for mechanisms defined for bidirectional self-attention only
(the LRA baselines): causal use and decoding raise a clear ``ValueError``."""

from __future__ import annotations

from leapformer.nn.mechanisms.base import Mechanism


class BidirectionalOnly(Mechanism):
    """Encoder-only mechanism: no causal mask, no cross-attention, no cache."""

    full = False

    def _refuse(self, what: str):
        raise ValueError(f"the {self.name} mechanism supports bidirectional self-attention "
                         f"only, not {what}")

    def check_call(self, q, k, causal: bool) -> None:
        if causal:
            self._refuse("causal attention")
        if q.shape[2] != k.shape[2]:
            self._refuse(f"cross-attention ({q.shape[2]} queries, {k.shape[2]} keys)")

    def init_cache(self, cache, *, device, dtype):
        self._refuse("decoding with a cache")

    def self_step(self, q, k, v, cache, *, q_len=None, key_padding_mask=None):
        self._refuse("decoding with a cache")

    def cross_extend(self, k, v, cache, *, key_padding_mask=None):
        self._refuse("cross-attention caches")

    def cross_read(self, q, cache, *, q_len=None):
        self._refuse("cross-attention caches")
