"""Linearising pretrained ``transformers`` causal LMs into LeaP (or ReLU) linear
attention: :func:`linearize` swaps the attention (:mod:`.swap`, :mod:`.core`),
:func:`attention_transfer` and :func:`finetune_lora` are the two training stages
(:mod:`.stages`), :func:`save_linearized` / :func:`load_linearized` store the result
(:mod:`.store`), :func:`linear_cache` decodes with a constant-size state (:mod:`.cache`).
Needs the ``[hf]`` extra (``transformers``, ``peft``, ``safetensors``), imported when
used."""

from leapformer.linearize.cache import linear_cache, state_bytes
from leapformer.linearize.core import FEATURE_MAPS, MECHANISMS, HedgehogMap, LinearCore
from leapformer.linearize.stages import (
    attention_transfer,
    finetune_lora,
    lora_targets,
    next_token_loss,
)
from leapformer.linearize.store import is_linearized, load_linearized, save_linearized
from leapformer.linearize.swap import (
    attention_modules,
    layer_mse,
    linear_cores,
    linearize,
    new_parameters,
    softmax_mode,
    transfer_mode,
)

__all__ = [
    "FEATURE_MAPS", "MECHANISMS", "HedgehogMap", "LinearCore", "attention_modules",
    "attention_transfer", "finetune_lora", "is_linearized", "layer_mse", "linear_cores",
    "linear_cache", "linearize", "load_linearized", "lora_targets", "new_parameters",
    "next_token_loss", "save_linearized", "softmax_mode", "state_bytes", "transfer_mode",
]
