"""Other libraries' CPU linear attention, as optional rows of the ops benchmark.

A user choosing a CPU linear-attention implementation compares against these;
each computes causal linear attention with the ELU+1 feature map
(Katharopoulos et al., 2020) on the ``elu`` row's inputs, so the rows are
comparable one to one. The denominators are guarded differently (``+ 1e-10``
here, ``max(den, 0.1)`` in the ``elu`` row's default ``normalize="clamp"``); with
ELU+1 features the denominator is a sum of positive terms far above either guard.

- ``fla-naive``: ``fla.ops.linear_attn.naive.naive_chunk_linear_attn`` of
  flash-linear-attention (the ``[fla]`` extra): its pure-PyTorch chunked
  reference (chunks of 64; lengths must be a multiple of 64), normalised.
- ``fast-transformers``: ``fast_transformers.causal_product.causal_dot_product``,
  the C++ CPU kernel of fast-transformers (Katharopoulos et al.). It has no
  wheel for this Python/torch; build it from source when wanted::

      CUDA_HOME= PATH=<PATH without nvcc> pip install --no-build-isolation pytorch-fast-transformers

  The numerator comes from the kernel; the denominator ``phi(q_i) . sum_{j<=i}
  phi(k_j)`` is a cumulative sum, as in fast-transformers' own
  ``CausalLinearAttention``.

A peer is used when its module imports (:func:`available_peers`); the rows are
causal only (``causal_fwd`` and ``causal_fwd_bwd``). Both take ``[B, H, N, D]``
inputs here and return ``[B, H, N, D]``; :func:`peer_attention` is checked against
``leapformer.ops.linear_attention(feature_map="elu", normalize="eps")`` in the tests.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

EPS = 1e-10  # FLA's naive reference adds 1e-10 to the denominator; the same is used for both
PEERS = {
    "fla-naive": "fla.ops.linear_attn.naive.naive_chunk_linear_attn",
    "fast-transformers": "fast_transformers.causal_product.causal_dot_product",
}
"""Peer name -> the function its rows time (the rows' ``impl``)."""
PEER_SCENARIOS = ("causal_fwd", "causal_fwd_bwd")
FLA_CHUNK = 64


def _load(name: str) -> Callable | None:
    module, _, attr = PEERS[name].rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except Exception as err:  # ImportError, or a build for another torch failing at import
        logger.debug("peer %s unavailable: %s", name, err)
        return None


def available_peers() -> tuple[str, ...]:
    """The peers whose module imports here, in :data:`PEERS` order."""
    return tuple(name for name in PEERS if _load(name) is not None)


def check_peers(names) -> tuple[str, ...]:
    """``names`` validated against :data:`PEERS` (a one-line error naming the bad one)."""
    names = tuple(names)
    for name in names:
        if name not in PEERS:
            raise ValueError(f"unknown peer {name!r}; expected one of {tuple(PEERS)}")
    return names


def peer_skip_reason(name: str, length: int) -> str | None:
    """Why ``name`` cannot run at ``length`` (None when it can)."""
    if _load(name) is None:
        return "not installed"
    if name == "fla-naive" and length % FLA_CHUNK:
        return f"length not a multiple of {FLA_CHUNK}"
    return None


def _elu1(x: Tensor) -> Tensor:
    return F.elu(x) + 1.0


def peer_attention(name: str, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal ELU+1 linear attention of ``q, k, v [B, H, N, D]`` by the peer ``name``."""
    fn = _load(check_peers([name])[0])
    if fn is None:
        raise RuntimeError(f"peer {name!r} is not installed ({PEERS[name]} does not import)")
    if name == "fla-naive":
        # FLA's layout is [B, N, H, D]; scale 1: the normalisation makes the scale cancel.
        qt, kt, vt = _elu1(q).transpose(1, 2), _elu1(k).transpose(1, 2), v.transpose(1, 2)
        o = fn(qt, kt, vt, scale=1.0, normalize=True)
        return o.transpose(1, 2)
    fq, fk = _elu1(q), _elu1(k)
    num = fn(fq.contiguous(), fk.contiguous(), v.contiguous())
    den = (fq * fk.cumsum(2)).sum(-1, keepdim=True)
    return num / (den + EPS)


def peer_cases(names, scenario: str, q: Tensor, k: Tensor, v: Tensor, *, backward: bool,
               leaves) -> dict[str, Callable[[], object]]:
    """Zero-argument calls for the peers that can run ``scenario`` at ``q``'s length."""
    if scenario not in PEER_SCENARIOS:
        return {}

    def case(name):
        def call():
            if not backward:
                with torch.no_grad():
                    return peer_attention(name, q, k, v)
            for t in leaves:
                t.grad = None
            o = peer_attention(name, q, k, v)
            o.sum().backward()
            return o
        return call

    return {name: case(name) for name in names if peer_skip_reason(name, q.shape[2]) is None}
