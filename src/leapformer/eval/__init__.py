"""Evaluation metrics. Latency of simultaneous translation with SimulEval's
semantics (:mod:`leapformer.eval.latency`) and SimulEval-compatible output
files (:mod:`leapformer.eval.simuleval_log`, its latency unit and
``config.yaml`` in :mod:`leapformer.eval.simuleval_config`); corpus BLEU with
sacreBLEU (:mod:`leapformer.eval.bleu`); mel-cepstral distortion of speech
(:mod:`leapformer.eval.mcd`)."""

from leapformer.eval.bleu import (
    BleuResult,
    bleu_from_stats,
    bleu_tokenizer,
    check_bleu_stats,
    corpus_bleu,
    sentence_bleu_stats,
    writes_without_spaces,
)
from leapformer.eval.latency import (
    computation_aware_scores,
    corpus_latency,
    latency_scores,
)
from leapformer.eval.mcd import mcd
from leapformer.eval.simuleval_config import (
    LATENCY_UNITS,
    count_reference,
    read_config,
    simuleval_command,
    write_config,
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
    "LATENCY_UNITS",
    "BleuResult",
    "InstanceRecord",
    "bleu_from_stats",
    "bleu_tokenizer",
    "check_bleu_stats",
    "computation_aware_scores",
    "compute_scores",
    "corpus_bleu",
    "corpus_latency",
    "count_reference",
    "latency_scores",
    "mcd",
    "read_config",
    "read_instances",
    "scores_from_log",
    "sentence_bleu_stats",
    "writes_without_spaces",
    "simuleval_command",
    "write_config",
    "write_instances",
    "write_scores",
]
