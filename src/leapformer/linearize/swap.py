"""Swap the softmax self-attention of a ``transformers`` causal LM for linear attention.

``transformers`` models (GPT-2, Llama, Mistral, Qwen2, ...) compute their queries,
keys and values in their own attention modules (GPT-2's fused ``c_attn`` and learned
positions, Llama's rotary embedding and grouped key/value heads) and then call an
attention function chosen by name from ``transformers.AttentionInterface``.
:func:`linearize` registers one more such function (``"leapformer_linear"``, with
``transformers``' SDPA mask) and attaches a :class:`~leapformer.linearize.core.LinearCore`
as ``linear_core`` to each chosen layer's attention module. The function runs that
core on the module's own ``q``/``k``/``v``; layers without a core (or with
``core.enabled = False``) run the architecture's softmax (SDPA). So every weight,
position scheme and head-sharing rule of the architecture is kept as it is, and the
only new parameters are the cores'.

The mask the function receives is read as key padding only (the last query's row):
causal order is the linear attention's own, and a sliding window (Mistral) is not
applied to linearised layers.

Stage 1 (:func:`transfer_mode`): each core also computes the softmax output of its
layer (no gradient), records the mean squared error between the two, and returns the
softmax output, so every layer sees the frozen teacher's hidden states (LoLCATs).

Decoding: with ``transformers``' default cache the core receives every key so far and
sums the prefix again; with :func:`leapformer.linearize.linear_cache` a forward
pre-hook lends the core its layer of that cache, which holds the running state, and
the core receives only the new keys.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from leapformer.linearize.core import FEATURE_MAPS, MECHANISMS, LinearCore

log = logging.getLogger(__name__)

ATTENTION_NAME = "leapformer_linear"
CORE = "linear_core"
#: Architectures whose attention layout the tests cover (others work when their
#: attention modules dispatch through ``transformers.AttentionInterface``; checked).
TESTED_ARCHITECTURES = ("gpt2", "llama")


def require_transformers():
    """Import ``transformers`` or say which extra to install."""
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - the extra is installed in the tests
        raise ImportError("leapformer.linearize needs transformers and peft: "
                          "pip install 'leapformer[hf]'") from err
    return transformers


def _key_padding(mask: Tensor | None, n_keys: int) -> Tensor | None:
    """``[B, N]`` True = padding, from a ``[B, 1|H, M, >= N]`` mask (bool True = attend, or
    additive float), read at the last query, its last ``N`` columns (a constant-size
    cache hands on only the new keys); None when nothing is padded."""
    if mask is None:
        return None
    if mask.dim() != 4 or mask.shape[-1] < n_keys:
        raise ValueError(f"linearised attention expects a [batch, heads, queries, >= {n_keys}] "
                         f"mask, got {list(mask.shape)}")
    row = mask[:, 0, -1, mask.shape[-1] - n_keys:]
    pad = ~row if row.dtype == torch.bool else row != 0
    return pad if bool(pad.any()) else None


def _dispatch(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
              attention_mask: Tensor | None, scaling: float | None = None,
              dropout: float = 0.0, **kwargs):
    """The registered attention function: ``(output [B, M, H, Dv], None)``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    core = getattr(module, CORE, None)
    transfer = None if core is None else core.transfer
    if core is None or (not core.enabled and transfer is None):
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      scaling=scaling, dropout=dropout, **kwargs)
    pad = _key_padding(attention_mask, key.shape[2])
    layer = core.cache_layer
    if layer is not None:  # a constant-size cache (leapformer.linearize.cache)
        out, layer.state = core(query, key, value, pad, initial_state=layer.state,
                                output_final_state=True)
        out = out.transpose(1, 2)
    else:
        out = core(query, key, value, pad).transpose(1, 2)
    if transfer is None:
        return out.contiguous(), None
    with torch.no_grad():
        teacher, _ = sdpa_attention_forward(module, query, key, value, attention_mask,
                                            scaling=scaling, dropout=0.0, **kwargs)
    err = (out.float() - teacher.float()).pow(2)
    if pad is not None:  # padded queries (their own key is padded) are not scored
        keep = ~pad[:, -out.shape[1]:]
        err = err[keep]
    transfer.append(err.mean())
    return teacher, None


def _lend_cache(module: nn.Module, args, kwargs) -> None:
    """Forward pre-hook: lend the module's layer of a constant-size cache to its core."""
    cache = kwargs.get("cache", kwargs.get("past_key_values"))  # renamed in transformers 5.24
    cache = getattr(cache, "self_attention_cache", cache)  # encoder-decoder caches
    layers = getattr(cache, "layers", None)
    layer = None
    if layers is not None and module.layer_idx < len(layers):
        layer = layers[module.layer_idx]
    getattr(module, CORE).cache_layer = \
        layer if getattr(layer, "leapformer_linear_state", False) else None


def _take_back_cache(module: nn.Module, args, kwargs, output) -> None:
    getattr(module, CORE).cache_layer = None


def _register() -> None:
    require_transformers()
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, _dispatch)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The causal self-attention module of each layer, in layer order (modules with
    ``layer_idx`` and ``is_causal``, not cross-attention)."""
    found = {}
    for _, m in model.named_modules():
        if (getattr(m, "is_causal", False) and isinstance(getattr(m, "layer_idx", None), int)
                and not getattr(m, "is_cross_attention", False)
                and type(m).__name__.endswith("Attention")):
            found.setdefault(m.layer_idx, m)
    return [found[i] for i in sorted(found)]


def linear_cores(model: nn.Module) -> dict[int, LinearCore]:
    """Layer index -> the :class:`LinearCore` of each linearised layer."""
    return {m.layer_idx: getattr(m, CORE) for m in attention_modules(model)
            if isinstance(getattr(m, CORE, None), LinearCore)}


def _check_layers(layers, count: int) -> list[int]:
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all' or a list of layer indices, got {layers!r}")
        return list(range(count))
    if not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"layers must be 'all' or a non-empty list of layer indices, got "
                         f"{layers!r}")
    out = []
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < count:
            raise ValueError(f"layers holds {i!r}; the model has layers 0..{count - 1}")
        if i in out:
            raise ValueError(f"layers names layer {i} twice")
        out.append(i)
    return sorted(out)


def linearize(model: nn.Module, mechanism: str = "leap", layers: str | Sequence[int] = "all",
              feature_map: str = "relu", *, step_down: int = 4, hidden: int | None = None,
              eps: float = 0.1) -> nn.Module:
    """Replace the softmax self-attention of ``layers`` of a ``transformers`` causal LM
    (in place; returned) by ``mechanism`` (``"leap"`` or ``"linear"``) with
    ``feature_map`` (``"relu"`` or ``"hedgehog"``, learnable); see the module docstring.

    The new parameters (LeaP networks, Hedgehog maps) are created on the model's
    device and dtype and are trainable; nothing else changes. ``step_down`` /
    ``hidden``: LeaP sizes; ``eps``: the denominator clamp. The settings are kept in
    ``model.leapformer_linearize``.
    """
    transformers = require_transformers()
    if not isinstance(model, transformers.PreTrainedModel):
        raise TypeError(f"model must be a transformers PreTrainedModel, got "
                        f"{type(model).__name__}")
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    if feature_map not in FEATURE_MAPS:
        raise ValueError(f"feature_map must be one of {FEATURE_MAPS}, got {feature_map!r}")
    if getattr(model, "leapformer_linearize", None) is not None:
        raise ValueError("model is already linearised")
    modules = attention_modules(model)
    config = model.config
    n_layers = getattr(config, "num_hidden_layers", None)
    if not modules or (n_layers is not None and len(modules) != n_layers):
        raise ValueError(f"found {len(modules)} causal self-attention modules in "
                         f"{type(model).__name__} (config: {n_layers} layers); linearize "
                         f"supports {', '.join(TESTED_ARCHITECTURES)}-style layouts")
    chosen = _check_layers(layers, len(modules))
    param = next(model.parameters())
    heads = config.num_attention_heads
    _register()
    before = getattr(config, "_attn_implementation", None)
    hooks = []
    try:
        for i in chosen:
            m = modules[i]
            core = LinearCore(heads, m.head_dim, mechanism=mechanism, feature_map=feature_map,
                              step_down=step_down, hidden=hidden, eps=eps)
            m.add_module(CORE, core.to(device=param.device, dtype=param.dtype))
            hooks.append(m.register_forward_pre_hook(_lend_cache, with_kwargs=True))
            hooks.append(m.register_forward_hook(_take_back_cache, with_kwargs=True,
                                                 always_call=True))
        model.set_attn_implementation(ATTENTION_NAME)
        model.leapformer_linearize = {"mechanism": mechanism, "layers": chosen,
                                      "feature_map": feature_map, "step_down": step_down,
                                      "hidden": hidden, "eps": eps}
        _probe(model, modules, chosen)
    except BaseException:  # leave the model as it was given
        _undo(model, modules, hooks, before)
        raise
    if config.model_type not in TESTED_ARCHITECTURES:
        log.warning("linearize: %s is not among the tested architectures %s",
                    config.model_type, TESTED_ARCHITECTURES)
    log.info("linearised layers %s of %s with %s (%s features): %d new parameters", chosen,
             config.model_type, mechanism, feature_map,
             sum(p.numel() for p in new_parameters(model)))
    return model


def _undo(model: nn.Module, modules: list[nn.Module], hooks: list, attn: str | None) -> None:
    """Take back what a failed :func:`linearize` did: hooks, cores, the settings
    attribute and the attention implementation."""
    for h in hooks:
        h.remove()
    for m in modules:
        if CORE in m._modules:
            delattr(m, CORE)
    if "leapformer_linearize" in vars(model):
        del model.leapformer_linearize
    if attn is not None and getattr(model.config, "_attn_implementation", None) != attn:
        model.set_attn_implementation(attn)


def _probe(model: nn.Module, modules: list[nn.Module], chosen: list[int]) -> None:
    """One 2-token forward: every core must be reached through the attention interface."""
    calls = []
    for i in chosen:
        core = getattr(modules[i], CORE)
        core.transfer = calls
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            device = next(model.parameters()).device
            model(input_ids=torch.zeros(1, 2, dtype=torch.long, device=device), use_cache=False)
    finally:
        model.train(was)
        for i in chosen:
            getattr(modules[i], CORE).transfer = None
    if len(calls) != len(chosen):
        raise ValueError(f"{type(model).__name__} did not call the linear attention of "
                         f"{len(chosen) - len(calls)} of {len(chosen)} layers: its attention "
                         "does not dispatch through transformers' AttentionInterface")


def new_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters :func:`linearize` added (LeaP networks, feature maps)."""
    return [p for core in linear_cores(model).values() for p in core.parameters()]


@contextlib.contextmanager
def transfer_mode(model: nn.Module) -> Iterator[list[Tensor]]:
    """Stage-1 forward passes: yields a list that each linearised layer appends its
    MSE to (one scalar per layer per forward); layers return the softmax output."""
    cores = list(linear_cores(model).values())
    if not cores:
        raise ValueError("model has no linearised layers (call linearize first)")
    losses: list[Tensor] = []
    for core in cores:
        core.transfer = losses
    try:
        yield losses
    finally:
        for core in cores:
            core.transfer = None


@contextlib.contextmanager
def softmax_mode(model: nn.Module) -> Iterator[None]:
    """Run the linearised layers with the original softmax attention (the teacher)."""
    cores = list(linear_cores(model).values())
    for core in cores:
        core.enabled = False
    try:
        yield
    finally:
        for core in cores:
            core.enabled = True


def layer_mse(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None
              ) -> list[float]:
    """Per-layer MSE between linear and softmax attention outputs on one batch (no
    gradient, eval mode: no dropout)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), transfer_mode(model) as losses:
            model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                             use_cache=False)
    finally:
        model.train(was)
    return [float(x) for x in losses]


__all__ = ["ATTENTION_NAME", "CORE", "TESTED_ARCHITECTURES", "attention_modules", "layer_mse",
           "linear_cores", "linearize", "new_parameters", "require_transformers",
           "softmax_mode", "transfer_mode"]
