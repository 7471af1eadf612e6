"""Models assembled from :mod:`leapformer.nn`: sequence classifiers (LRA) and a
decoder-only language model with batched generation, and an encoder-decoder
translation model with greedy and beam search and a simultaneous wait-k agent."""

from leapformer.models.classifier import ClassifierConfig, DualEncoderClassifier, SequenceClassifier
from leapformer.models.generate import choose_next, cosformer_length_mode, generate, lm_step
from leapformer.models.lm import (
    LM_PRESETS,
    CausalLM,
    LMCache,
    LMConfig,
    count_parameters,
    next_token_loss,
)
from leapformer.models.search import Hypothesis, beam_search, greedy, max_lengths
from leapformer.models.seq2seq import (
    SEQ2SEQ_PRESETS,
    EncoderOutput,
    Seq2Seq,
    Seq2SeqCache,
    Seq2SeqConfig,
    label_smoothed_nll,
    reorder_decoder_cache,
)
from leapformer.models.fused_step import FusedDecoderStep
from leapformer.models.simul import SimulAgent, SimulResult, simultaneous_greedy
from leapformer.models.simul_batch import translate_batch

__all__ = [
    "LM_PRESETS", "SEQ2SEQ_PRESETS", "CausalLM", "ClassifierConfig", "DualEncoderClassifier",
    "EncoderOutput", "FusedDecoderStep", "Hypothesis", "LMCache", "LMConfig", "Seq2Seq", "Seq2SeqCache",
    "Seq2SeqConfig", "SequenceClassifier", "SimulAgent", "SimulResult", "beam_search",
    "choose_next", "cosformer_length_mode",
    "count_parameters", "generate", "lm_step", "greedy", "label_smoothed_nll", "max_lengths",
    "next_token_loss", "reorder_decoder_cache", "simultaneous_greedy",
    "translate_batch",
]
