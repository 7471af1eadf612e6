"""``LeapformerForCausalLM``: a ``transformers`` model around :class:`~leapformer.models.CausalLM`.

``forward(input_ids, attention_mask=None, cache=None, use_cache=None,
labels=None, logits_to_keep=0)`` follows the ``transformers`` conventions
(``past_key_values=`` is the same argument under its name before
``transformers`` 5.24; the output's cache field takes the installed version's name):
``attention_mask`` is 1 for real tokens and 0 for padding (it may cover the
cached slots too: its last ``T`` columns are used), ``labels`` are the inputs
with ``-100`` where no loss is wanted (shifted inside), and the output is a
``CausalLMOutputWithPast``. Positions are the model's own (per item, counting
real tokens only), so ``position_ids`` are not taken.

Decoding goes through :class:`~leapformer.hf.LeapformerCache`, made by the
first forward with ``use_cache`` (``generate`` does so); it holds the
constant-size states of linear-family layers and the keys and values of
softmax layers. With a cache, cosFormer layers use the training length
(``max_position_embeddings``) as their ``L``, as
:func:`leapformer.models.generate.generate` does by default, so greedy
``model.generate`` gives the tokens of the project's own generation. A
left-padded batch decodes each item as if alone (``attention_mask`` marks the
padding).

The weights are the ``CausalLM``'s own (under ``model.``), initialised by it:
``save_pretrained`` / ``from_pretrained`` write and read them as safetensors.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from leapformer.hf.cache import LeapformerCache
from leapformer.hf.config import LeapformerConfig
from leapformer.models import CausalLM
from leapformer.models.generate import cosformer_length_mode

logger = logging.getLogger(__name__)

_UNSUPPORTED = ("inputs_embeds", "output_attentions", "output_hidden_states")
# transformers 5.24 renamed the cache argument and output field ``past_key_values`` -> ``cache``.
CACHE_ARGUMENT = ("cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {})
                  else "past_key_values")
"""The installed ``transformers``' name for the cache (argument of ``forward`` and
``generate``, field of the output): ``"cache"`` from 5.24, ``"past_key_values"`` before."""


class LeapformerForCausalLM(PreTrainedModel, GenerationMixin):
    """A :class:`~leapformer.models.CausalLM` (``self.model``) as a ``transformers``
    causal LM (see the module docstring)."""

    config_class = LeapformerConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["DecoderLayer"]
    supports_gradient_checkpointing = False

    def __init__(self, config: LeapformerConfig):
        super().__init__(config)
        self.model = CausalLM(config.to_lm_config())
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Nothing: ``CausalLM`` and its mechanisms initialise their own parameters."""

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # the forward makes its own LeapformerCache; a DynamicCache could not hold the states
        return False

    @classmethod
    def from_causal_lm(cls, lm: CausalLM, **config_kwargs) -> LeapformerForCausalLM:
        """Wrap an existing (e.g. trained) ``CausalLM``: its weights are copied (same
        dtype and device); ``config_kwargs`` go to the config (e.g. ``eos_token_id``)."""
        if not isinstance(lm, CausalLM):
            raise TypeError(f"lm must be a CausalLM, got {type(lm).__name__}")
        model = cls(LeapformerConfig.from_lm_config(lm.cfg, **config_kwargs))
        model = model.to(device=lm.embed.weight.device, dtype=lm.embed.weight.dtype)
        model.model.load_state_dict(lm.state_dict())
        return model.train(lm.training)

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.model.embed

    def set_input_embeddings(self, value: torch.nn.Embedding) -> None:
        self.model.embed = value

    def get_output_embeddings(self) -> torch.nn.Linear | None:
        return self.model.output

    def new_cache(self, batch_size: int, *, max_length: int | None = None) -> LeapformerCache:
        """An empty :class:`~leapformer.hf.LeapformerCache` for ``batch_size`` sequences."""
        return LeapformerCache(self, batch_size, max_length=max_length)

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                cache: LeapformerCache | None = None, use_cache: bool | None = None,
                labels: Tensor | None = None, logits_to_keep: int | Tensor = 0,
                return_dict: bool | None = None, past_key_values: LeapformerCache | None = None,
                **kwargs) -> CausalLMOutputWithPast | tuple:
        """Next-token logits of ``input_ids [B, T]`` (see the module docstring)."""
        if past_key_values is not None:
            if cache is not None:
                raise ValueError("give the cache once: cache or past_key_values, not both")
            cache = past_key_values
        for name in _UNSUPPORTED:
            if kwargs.get(name) not in (None, False):
                raise ValueError(f"{name} is not supported by LeapformerForCausalLM")
        if input_ids is None:
            raise ValueError("input_ids must be given")
        B, T = input_ids.shape if input_ids.dim() == 2 else (None, None)
        mask = self._padding_mask(attention_mask, input_ids)
        if use_cache is None:
            use_cache = self.config.use_cache and labels is None and not self.training
        if use_cache and cache is None:
            cache = LeapformerCache(self, input_ids.shape[0])
        if cache is None:
            hidden = self.model.hidden_states(input_ids, key_padding_mask=mask)
        else:
            if not isinstance(cache, LeapformerCache):
                raise TypeError(f"cache (past_key_values) must be a LeapformerCache, got "
                                f"{type(cache).__name__}")
            with cosformer_length_mode(self.model, "given"):
                hidden = self.model.hidden_states(
                    input_ids, key_padding_mask=mask, cache=cache.lm_cache,
                    target_length=self.model.cfg.context_length)
        if isinstance(logits_to_keep, int):
            kept = hidden[:, -logits_to_keep:] if logits_to_keep > 0 else hidden
        else:
            kept = hidden[:, logits_to_keep]
        logits = self.model.project(kept)
        loss = None
        if labels is not None:
            if labels.shape != (B, T):
                raise ValueError(f"labels must have the shape of input_ids {[B, T]}, got "
                                 f"{list(labels.shape)}")
            full = logits if kept.shape[1] == T else self.model.project(hidden)
            pred = full[:, :-1]
            if pred.dtype not in (torch.float32, torch.float64):
                pred = pred.float()  # half-precision logits: the softmax in float32
            loss = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        out = CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_ARGUMENT: cache})
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return out if return_dict else out.to_tuple()

    @staticmethod
    def _padding_mask(attention_mask: Tensor | None, input_ids: Tensor) -> Tensor | None:
        """``attention_mask`` (1 = real, 0 = padding; its last ``T`` columns) as the model's
        ``key_padding_mask [B, T]`` (True = padding), None without padding."""
        if attention_mask is None:
            return None
        if input_ids.dim() != 2:
            return None  # CausalLM raises its own error on the ids
        B, T = input_ids.shape
        if attention_mask.dim() != 2 or attention_mask.shape[0] != B or \
                attention_mask.shape[1] < T:
            raise ValueError(f"attention_mask must be [batch, >= {T}] for input_ids "
                             f"{list(input_ids.shape)}, got {list(attention_mask.shape)}")
        mask = attention_mask[:, -T:] == 0
        return mask if bool(mask.any()) else None
