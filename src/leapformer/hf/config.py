"""``LeapformerConfig``: a ``transformers`` configuration for :class:`~leapformer.models.CausalLM`.

The model sizes carry the usual ``transformers`` names and map one to one
onto :class:`~leapformer.models.LMConfig`:

| ``LeapformerConfig`` | ``LMConfig`` |
|---|---|
| ``vocab_size`` | ``vocab_size`` |
| ``hidden_size`` | ``d_model`` |
| ``num_hidden_layers`` | ``num_layers`` |
| ``num_attention_heads`` | ``nhead`` |
| ``intermediate_size`` | ``dim_feedforward`` |
| ``max_position_embeddings`` | ``context_length`` |
| ``hidden_act`` | ``activation`` |
| ``dropout`` | ``dropout`` |
| ``position_embedding_type`` | ``positions`` |
| ``tie_word_embeddings`` | ``tie_embeddings`` |
| ``pad_token_id`` | ``pad_id`` |

``attention`` is the per-layer attention spec of modular linearized
attention (MLA): one mechanism name for every layer (default ``"leap"``), or
a list with one name per layer, e.g. ``["softmax", "leap"]`` for a hybrid
that keeps a softmax layer. ``mechanism_options`` maps mechanism names to
their options (``{"leap": {"step_down": 4}}``).
"""

from __future__ import annotations

from transformers import PretrainedConfig

from leapformer.models import LMConfig

MODEL_TYPE = "leapformer"


class LeapformerConfig(PretrainedConfig):
    """Sizes and attention spec of a :class:`~leapformer.hf.LeapformerForCausalLM`
    (see the module docstring for the mapping onto ``LMConfig``)."""

    model_type = MODEL_TYPE
    keys_to_ignore_at_inference = ["cache", "past_key_values"]

    vocab_size: int = 32000
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    max_position_embeddings: int = 512
    hidden_act: str = "relu"
    dropout: float = 0.1
    position_embedding_type: str = "sinusoidal"
    scale_embedding: bool = True
    attention: str | list[str] = "leap"
    mechanism_options: dict | None = None
    use_cache: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        if isinstance(self.attention, tuple):
            self.attention = list(self.attention)
        if self.mechanism_options is None:
            self.mechanism_options = {}
        super().__post_init__(**kwargs)
        self.to_lm_config()  # validates the sizes, the spec and the options

    @property
    def layer_attention(self) -> list[str]:
        """The mechanism name of each layer."""
        if isinstance(self.attention, str):
            return [self.attention] * self.num_hidden_layers
        return list(self.attention)

    def to_lm_config(self) -> LMConfig:
        """The equivalent :class:`~leapformer.models.LMConfig` (ValueError/TypeError
        naming the field if the values do not make a model)."""
        options = self.mechanism_options or {}
        if not isinstance(options, dict) or not all(
                isinstance(k, str) and isinstance(v, dict) for k, v in options.items()):
            raise TypeError(f"mechanism_options must map mechanism names to option dicts, "
                            f"got {options!r}")
        if isinstance(self.attention, str):
            unused = sorted(set(options) - {self.attention})
            if unused:
                raise ValueError(f"mechanism_options names {unused}, which attention="
                                 f"{self.attention!r} does not use")
            attention, lm_options = self.attention, dict(options.get(self.attention, {}))
        else:  # a list of names (LMConfig checks it)
            attention, lm_options = self.attention, {k: dict(v) for k, v in options.items()}
        return LMConfig(vocab_size=self.vocab_size, context_length=self.max_position_embeddings,
                        attention=attention, num_layers=self.num_hidden_layers,
                        d_model=self.hidden_size, nhead=self.num_attention_heads,
                        dim_feedforward=self.intermediate_size, dropout=float(self.dropout),
                        activation=self.hidden_act, positions=self.position_embedding_type,
                        tie_embeddings=self.tie_word_embeddings,
                        scale_embedding=self.scale_embedding, pad_id=self.pad_token_id,
                        mechanism_options=lm_options)

    @classmethod
    def from_lm_config(cls, cfg: LMConfig, **kwargs) -> LeapformerConfig:
        """The ``LeapformerConfig`` of an existing :class:`~leapformer.models.LMConfig`
        (``kwargs``: further ``PretrainedConfig`` fields, e.g. ``eos_token_id``)."""
        if not isinstance(cfg, LMConfig):
            raise TypeError(f"cfg must be an LMConfig, got {type(cfg).__name__}")
        return cls(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
                   num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.nhead,
                   intermediate_size=cfg.dim_feedforward,
                   max_position_embeddings=cfg.context_length, hidden_act=cfg.activation,
                   dropout=cfg.dropout, position_embedding_type=cfg.positions,
                   scale_embedding=cfg.scale_embedding, attention=cfg.attention,
                   mechanism_options=cfg.options_by_mechanism(),
                   tie_word_embeddings=cfg.tie_embeddings, pad_token_id=cfg.pad_id, **kwargs)
