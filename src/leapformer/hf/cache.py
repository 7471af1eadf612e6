"""``LeapformerCache``: a ``transformers`` :class:`~transformers.Cache` holding the
decoding state of a :class:`~leapformer.models.CausalLM`.

It wraps the model's own :class:`~leapformer.models.LMCache` (which the
model's attention layers fill and read inside the forward) and shows it to
``transformers`` as one cache layer per decoder layer:

- :class:`StateLayer` (a ``LinearAttentionCacheLayerMixin``) for the linear
  family (LeaP, cosFormer, ReLU/ELU linear, Performer): constant-size running
  sums, whatever the length;
- :class:`KVLayer` (a ``CacheLayerMixin``) for softmax layers: keys and values,
  which grow with the length.

``transformers`` never writes into it (``update`` is not used: the project's
attention updates its state itself); ``generate`` only passes it from one
forward to the next, reorders it for beam search and selects or repeats batch
rows. Rolling back (``crop``), offloading and static shapes are not supported.

The cache also keeps the per-item count of real tokens, so a left-padded batch
of prompts decodes each item as if alone (see :mod:`leapformer.models.lm`).
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers.cache_utils import Cache, CacheLayerMixin, LinearAttentionCacheLayerMixin

from leapformer.models import CausalLM, LMCache
from leapformer.models.generate import cosformer_length_mode
from leapformer.nn import AttentionCache
from leapformer.nn.mechanisms import LinearMechanism

_NO_UPDATE = ("a Leapformer cache is filled by the model's own attention layers inside the "
              "forward; transformers' update methods are not used")
_NO_CROP = "a Leapformer cache cannot be rolled back (crop), so assisted decoding is not supported"


def _select_rows(cache: AttentionCache, index: Tensor) -> None:
    for name, t in list(cache.tensors.items()):
        cache.tensors[name] = t.index_select(0, index.to(t.device))
    if cache.real_length is not None:
        cache.real_length = cache.real_length.index_select(0, index.to(cache.real_length.device))
    cache.batch_size = index.numel()


def _repeat_rows(cache: AttentionCache, repeats: int) -> None:
    for name, t in list(cache.tensors.items()):
        cache.tensors[name] = t.repeat_interleave(repeats, dim=0)
    if cache.real_length is not None:
        cache.real_length = cache.real_length.repeat_interleave(repeats, dim=0)
    cache.batch_size *= repeats


class _ProjectLayer:
    """What both layer kinds share: they view one :class:`~leapformer.nn.AttentionCache`,
    made by ``module`` (the layer's :class:`~leapformer.nn.MultiheadAttention`)."""

    is_compileable = False
    supports_early_init = False
    is_sliding = False

    def __init__(self, attn: AttentionCache, module: torch.nn.Module):
        self.attn = attn
        self.module = module
        weight = module.out_proj.weight
        self.device, self.dtype = weight.device, weight.dtype

    def __repr__(self):
        return f"{type(self).__name__}(length={self.attn.length}, nbytes={self.nbytes})"

    @property
    def nbytes(self) -> int:
        """Memory held by this layer's state."""
        return self.attn.nbytes

    @property
    def batch_size(self) -> int:
        return self.attn.batch_size

    @property
    def is_croppable(self) -> bool:
        return False

    def get_seq_length(self) -> int:
        """Slots consumed so far (left padding included)."""
        return self.attn.length

    def reset(self) -> None:
        """Back to the empty state (the mechanism makes its tensors anew)."""
        self.attn.tensors.clear()
        self.attn.length = self.attn.queries = 0
        self.attn.real_length = None
        with cosformer_length_mode(self.module, "given"):
            self.module.attention.init_cache(self.attn, device=self.device, dtype=self.dtype)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        _select_rows(self.attn, beam_idx)

    def batch_select_indices(self, indices: Tensor) -> None:
        _select_rows(self.attn, indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        _repeat_rows(self.attn, repeats)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove != 0:
            raise NotImplementedError(_NO_CROP)

    def activate_past_recording(self) -> None:
        raise NotImplementedError(_NO_CROP)

    def offload(self) -> None:
        """Nothing to do: the state stays where the model is."""

    def prefetch(self) -> None:
        """Nothing to do: the state stays where the model is."""


class KVLayer(_ProjectLayer, CacheLayerMixin):
    """Keys and values of one softmax layer (they grow with the length)."""

    def __init__(self, attn: AttentionCache, module: torch.nn.Module):
        _ProjectLayer.__init__(self, attn, module)

    @property
    def is_initialized(self) -> bool:
        return "k" in self.attn.tensors

    @property
    def keys(self) -> Tensor | None:
        """The cached keys ``[B, H, length, D]`` (None before the first token)."""
        k = self.attn.tensors.get("k")
        return None if k is None else k[:, :, :self.attn.length]

    @property
    def values(self) -> Tensor | None:
        """The cached values ``[B, H, length, D]`` (None before the first token)."""
        v = self.attn.tensors.get("v")
        return None if v is None else v[:, :, :self.attn.length]

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        raise NotImplementedError(_NO_UPDATE)

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs):
        raise NotImplementedError(_NO_UPDATE)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.attn.length + query_length, 0

    def get_max_length(self) -> int:
        return -1 if self.attn.max_length is None else self.attn.max_length


class StateLayer(_ProjectLayer, LinearAttentionCacheLayerMixin):
    """The constant-size running sums of one linear-family layer."""

    number_of_states = 1
    conv_kernel_size = {0: None}
    record_past = False

    def __init__(self, attn: AttentionCache, module: torch.nn.Module):
        _ProjectLayer.__init__(self, attn, module)

    @property
    def recurrent_states(self) -> dict[int, Tensor | None]:
        """``{0: s}``: the running sums (None before the first token)."""
        return {0: self.attn.tensors.get("s")}

    @property
    def conv_states(self) -> dict[int, None]:
        return {0: None}

    @property
    def is_recurrent_states_initialized(self) -> dict[int, bool]:
        return {0: "s" in self.attn.tensors}

    @property
    def is_conv_states_initialized(self) -> dict[int, bool]:
        return {0: False}

    @property
    def has_previous_state(self) -> dict[int, bool]:
        return {0: self.attn.length > 0}

    def lazy_initialization(self, conv_states=None, recurrent_states=None, state_idx: int = 0):
        raise NotImplementedError(_NO_UPDATE)

    def update_conv_state(self, conv_states: Tensor, state_idx: int = 0) -> Tensor:
        raise NotImplementedError(_NO_UPDATE)

    def update_recurrent_state(self, recurrent_states: Tensor, state_idx: int = 0) -> Tensor:
        raise NotImplementedError(_NO_UPDATE)

    def get_max_length(self) -> int:
        return -1


class LeapformerCache(Cache):
    """Decoding state of a :class:`~leapformer.models.CausalLM` (or of the
    ``LeapformerForCausalLM`` around it) for ``batch_size`` sequences.

    ``max_length`` (optional): slots to preallocate for softmax layers, and the
    most the cache may take. ``lm_cache`` is the model's own
    :class:`~leapformer.models.LMCache`; ``layers`` shows it layer by layer.
    """

    def __init__(self, model: torch.nn.Module, batch_size: int, *,
                 max_length: int | None = None):
        lm = getattr(model, "model", model)
        if not isinstance(lm, CausalLM):
            raise TypeError(f"model must be a CausalLM or a LeapformerForCausalLM, got "
                            f"{type(model).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        with cosformer_length_mode(lm, "given"):  # as the forward decodes (constant state)
            self.lm_cache: LMCache = lm.new_cache(batch_size, max_length=max_length)
        layers = []
        for layer, lc in zip(lm.decoder.layers, self.lm_cache.decoder.layers, strict=True):
            linear = isinstance(layer.self_attn.attention, LinearMechanism)
            layers.append((StateLayer if linear else KVLayer)(lc.self_attn, layer.self_attn))
        super().__init__(layers=layers)

    @property
    def nbytes(self) -> int:
        """Memory held by all layers' states."""
        return self.lm_cache.nbytes

    def layer_nbytes(self) -> list[int]:
        """Memory held by each layer's state."""
        return [layer.nbytes for layer in self.layers]

    @property
    def batch_size(self) -> int:
        return self.lm_cache.batch_size

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Slots consumed so far (left padding included), the same in every layer."""
        return self.lm_cache.length

    def get_mask_sizes(self, query_length: int, layer_idx: int) -> tuple[int, int]:
        return self.lm_cache.length + query_length, 0

    def reset(self) -> None:
        super().reset()
        self.lm_cache.lengths = torch.zeros_like(self.lm_cache.lengths)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self.lm_cache.lengths = self.lm_cache.lengths.index_select(
            0, beam_idx.to(self.lm_cache.lengths.device))

    def batch_select_indices(self, indices: Tensor) -> None:
        super().batch_select_indices(indices)
        self.lm_cache.lengths = self.lm_cache.lengths.index_select(
            0, indices.to(self.lm_cache.lengths.device))

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self.lm_cache.lengths = self.lm_cache.lengths.repeat_interleave(repeats, dim=0)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove != 0:
            raise NotImplementedError(_NO_CROP)
