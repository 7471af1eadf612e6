"""The one-token decoding step of a :class:`~leapformer.models.CausalLM` as a pure function.

:class:`DecodeStep` wraps a causal LM of the linear family (``linear``,
``elu``, ``performer``, ``cosformer``, ``leap``, ``gla``, ``gated-leap``, or a
per-layer mix of them: constant-size state, see :mod:`leapformer.nn.cache`) so
that the decoding state is explicit data::

    logits [B, V], state_0', .., state_{L-1}' = step(token [B], position [B],
                                                      state_0, .., state_{L-1})

``token``: the new token of each sequence (int64); ``position``: its 1-based
position (the count of tokens the state already holds, plus one; per item, so
the sequences of a batch may be at different positions); ``state_l``: layer
``l``'s fused running sums ``s [B, H, G, F, P]``
(:class:`~leapformer.ops.LinearAttentionState`: ``G = 1``, or 2 for the sin/cos
halves of cosFormer and LeaP), zeros before the first token. The returned
logits predict the next token; the returned states replace the given ones.
The inputs are not modified, so the module can be traced by ``torch.export``
and run as an ONNX graph.

The step calls the model's public decoding path
(``CausalLM.new_cache`` / ``hidden_states(..., cache=)`` / ``project``): its
caches are filled from the inputs, so the exported step computes exactly what
:func:`leapformer.models.generate` computes token by token. cosFormer decodes
with the fixed length ``L = context_length`` (``cosformer_length="train"`` of
:func:`~leapformer.models.generate`); its ``stepping`` mode keeps every past
key and cannot be a constant-size step. Softmax attention is refused (in any
layer): its state (keys and values) grows with the length.
"""

from __future__ import annotations

from torch import Tensor, nn

from leapformer.models.lm import CausalLM
from leapformer.nn import MECHANISMS
from leapformer.nn.mechanisms.base import LinearMechanism


def exportable_mechanisms() -> list[str]:
    """Names of the causal mechanisms whose decoding state has a constant size."""
    return sorted(n for n, cls in MECHANISMS.items()
                  if cls.full and issubclass(cls, LinearMechanism))


def check_exportable(model: object) -> CausalLM:
    """``model`` if its decoding step can be exported; TypeError/ValueError (one line) if not."""
    if not isinstance(model, CausalLM):
        raise TypeError(f"model must be a leapformer CausalLM, got {type(model).__name__}")
    names = model.cfg.layer_attention  # a per-layer list: every layer must qualify
    allowed = exportable_mechanisms()
    for layer, name in enumerate(names):
        if name in allowed:
            continue
        why = ("its decoding cache (keys and values) grows with the length"
               if name == "softmax" else "it has no constant-size decoding state")
        where = f" (layer {layer})" if isinstance(model.cfg.attention, list) else ""
        raise ValueError(f"cannot export the decoding step of attention {name!r}{where}: "
                         f"{why}; export needs one of {allowed} in every layer")
    return model


def state_shapes(model: CausalLM) -> list[tuple[int, ...]]:
    """Shape of each layer's state for one sequence (``[H, G, F, P]``; batch first in use)."""
    cache = check_exportable(model).new_cache(1)
    return [tuple(layer.self_attn.tensors["s"].shape[1:]) for layer in cache.decoder.layers]


def initial_states(model: CausalLM, batch_size: int) -> list[Tensor]:
    """Zero states (before the first token) for ``batch_size`` sequences, one per layer."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    cache = check_exportable(model).new_cache(batch_size)
    return [layer.self_attn.tensors["s"] for layer in cache.decoder.layers]


class DecodeStep(nn.Module):
    """``(token [B], position [B], *states) -> (logits [B, V], *new_states)`` (module docstring).

    The wrapped model should be in eval mode (dropout off) and, for
    cosFormer, in ``length_mode="given"`` (what
    :func:`leapformer.models.generate.cosformer_length_mode` sets).
    """

    def __init__(self, model: CausalLM):
        super().__init__()
        self.model = check_exportable(model)
        self.num_states = model.cfg.num_layers

    def forward(self, token: Tensor, position: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        if len(states) != self.num_states:
            raise ValueError(f"expected {self.num_states} states (one per layer), got "
                             f"{len(states)}")
        model = self.model
        cache = model.new_cache(token.shape[0])
        before = position - 1  # tokens each sequence's state already holds
        for layer, s in zip(cache.decoder.layers, states, strict=True):
            attn = layer.self_attn
            attn.tensors["s"] = s.clone()  # the step updates it in place
            attn.real_length = before  # per-item positions inside the mechanisms
        cache.lengths = before  # per-item positions of the embedding
        hidden = model.hidden_states(token[:, None], target_length=model.cfg.context_length,
                                     cache=cache)
        logits = model.project(hidden[:, -1])
        return (logits, *(layer.self_attn.tensors["s"] for layer in cache.decoder.layers))
