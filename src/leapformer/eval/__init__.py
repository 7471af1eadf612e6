"""Evaluation metrics. Latency of simultaneous translation with SimulEval's
semantics (:mod:`leapformer.eval.latency`) and SimulEval-compatible output
files (:mod:`leapformer.eval.simuleval_log`); corpus BLEU with sacreBLEU
(:mod:`leapformer.eval.bleu`)."""

from leapformer.eval.bleu import BleuResult, bleu_tokenizer, corpus_bleu
from leapformer.eval.latency import (
    computation_aware_scores,
    corpus_latency,
    latency_scores,
)
from leapformer.eval.simuleval_log import (
    InstanceRecord,
    compute_scores,
    read_instances,
    scores_from_log,
    write_instances,
    write_scores,
)

__all__ = [
    "BleuResult",
    "InstanceRecord",
    "bleu_tokenizer",
    "computation_aware_scores",
    "compute_scores",
    "corpus_bleu",
    "corpus_latency",
    "latency_scores",
    "read_instances",
    "scores_from_log",
    "write_instances",
    "write_scores",
]
