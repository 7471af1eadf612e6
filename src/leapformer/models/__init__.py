"""Models assembled from :mod:`leapformer.nn`: sequence classifiers (LRA) and a
decoder-only language model with batched generation."""

from leapformer.models.classifier import ClassifierConfig, DualEncoderClassifier, SequenceClassifier
from leapformer.models.generate import choose_next, cosformer_length_mode, generate
from leapformer.models.lm import (
    LM_PRESETS,
    CausalLM,
    LMCache,
    LMConfig,
    count_parameters,
    next_token_loss,
)

__all__ = [
    "LM_PRESETS", "CausalLM", "ClassifierConfig", "DualEncoderClassifier", "LMCache", "LMConfig",
    "SequenceClassifier", "choose_next", "cosformer_length_mode", "count_parameters", "generate",
    "next_token_loss",
]
