"""A constant-size decoding cache for linearised ``transformers`` models.

``transformers``' default cache keeps every key and value. :func:`linear_cache`
builds a ``transformers.Cache`` whose linearised layers hold a
:class:`~leapformer.ops.LinearAttentionState` instead (the running sums
``sum_j phi(k_j) v_j^T`` and ``sum_j phi(k_j)``, with LeaP's two re-weighting groups):
their ``update`` stores nothing and hands the new keys and values straight on, and
the layer's :class:`~leapformer.linearize.core.LinearCore` reads and advances the
state. Softmax layers of a partly linearised model keep an ordinary dynamic layer.
Pass it as ``cache`` (``transformers`` >= 5.24; ``past_key_values`` before, see
:data:`leapformer.hf.CACHE_ARGUMENT`) to ``model(...)`` or ``model.generate(...)``::

    out = model.generate(ids, cache=linear_cache(model), max_new_tokens=100)

The cache reaches the attention function through a forward pre-hook that
:func:`~leapformer.linearize.linearize` puts on each linearised attention module: it
lends the module's cache layer to its core for the duration of the call. Masks are
sized as for a dynamic cache (all positions so far), so positions and padding work as
they do for softmax; a linear layer reads the padding of its new keys from the mask's
last columns.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from leapformer.linearize.swap import linear_cores, require_transformers
from leapformer.ops import LinearAttentionState


@functools.cache
def layer_class():
    """The cache-layer class (made on first use: ``transformers`` is optional)."""
    require_transformers()
    from transformers.cache_utils import CacheLayerMixin

    class LinearStateLayer(CacheLayerMixin):
        """One linearised layer's cache: a constant-size state and a token count."""

        is_sliding = False
        is_croppable = False
        leapformer_linear_state = True  # what swap's pre-hook looks for
        supports_early_init = False

        def __init__(self):
            super().__init__()
            self.seen = 0
            self.state: LinearAttentionState | None = None

        def lazy_initialization(self, key_states, value_states) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self.seen += key_states.shape[-2]
            return key_states, value_states

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.seen + query_length, 0

        def get_seq_length(self) -> int:
            return self.seen

        def get_max_length(self) -> int:
            return -1

        def offload(self):
            pass

        def prefetch(self):
            pass

        def reset(self) -> None:
            self.seen = 0
            self.state = None

        def crop(self, tokens_to_remove: int) -> None:
            raise ValueError("a linear-attention state cannot be cropped (its tokens are summed)")

        def _map(self, fn) -> None:
            if self.state is not None:
                self.state = LinearAttentionState(fn(self.state.s), self.state.value_dim)

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self._map(lambda s: s.index_select(0, beam_idx.to(s.device)))

        def batch_repeat_interleave(self, repeats: int) -> None:
            self._map(lambda s: s.repeat_interleave(repeats, dim=0))

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self._map(lambda s: s[indices])

        @property
        def nbytes(self) -> int:
            """Bytes the state holds (constant in the sequence length)."""
            return 0 if self.state is None else self.state.s.numel() * self.state.s.element_size()

    return LinearStateLayer


def linear_cache(model: nn.Module):
    """A ``transformers.Cache`` for ``model`` (see the module docstring)."""
    require_transformers()
    from transformers.cache_utils import Cache, DynamicLayer

    cores = linear_cores(model)
    if not cores:
        raise ValueError("model has no linearised layers (call linearize first)")
    n_layers = model.config.num_hidden_layers
    layers = [layer_class()() if i in cores else DynamicLayer() for i in range(n_layers)]
    return Cache(layers=layers)


def state_bytes(cache) -> int:
    """Bytes held by the linear layers' states of a :func:`linear_cache`."""
    cls = layer_class()
    return sum(layer.nbytes for layer in cache.layers if isinstance(layer, cls))
