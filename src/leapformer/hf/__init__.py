"""Hugging Face ``transformers`` integration (optional extra ``[hf]``).

``LeapformerConfig`` / ``LeapformerForCausalLM`` wrap the project's
:class:`~leapformer.models.CausalLM` (any per-layer mix of mechanisms, e.g.
all LeaP or a softmax + LeaP hybrid) as a ``transformers`` causal LM, and
``LeapformerCache`` holds its decoding state for ``generate``. Importing this
package registers the model type ``"leapformer"`` with ``AutoConfig`` and
``AutoModelForCausalLM``::

    import leapformer.hf  # registers the model type
    model = AutoModelForCausalLM.from_config(LeapformerConfig(attention="leap"))
    model.save_pretrained(path); AutoModelForCausalLM.from_pretrained(path).generate(ids)

``transformers`` (the ``[hf]`` extra) is needed by this package and also by
:mod:`leapformer.linearize` and the Hugging Face paths of ``leapformer lm``
(``--hf*`` options); ``import leapformer`` works without it.
"""

try:
    import transformers  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("leapformer.hf needs transformers and safetensors: "
                      "pip install 'leapformer[hf]'") from err

from transformers import AutoConfig, AutoModelForCausalLM

from leapformer.hf.cache import KVLayer, LeapformerCache, StateLayer
from leapformer.hf.config import MODEL_TYPE, LeapformerConfig
from leapformer.hf.model import CACHE_ARGUMENT, LeapformerForCausalLM

AutoConfig.register(MODEL_TYPE, LeapformerConfig, exist_ok=True)
AutoModelForCausalLM.register(LeapformerConfig, LeapformerForCausalLM, exist_ok=True)

__all__ = ["CACHE_ARGUMENT", "KVLayer", "LeapformerCache", "LeapformerConfig", "LeapformerForCausalLM",
           "StateLayer"]
