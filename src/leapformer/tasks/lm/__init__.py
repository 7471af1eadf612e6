"""Causal language modelling: one run (:mod:`.run`), perplexity, reports."""

from leapformer.tasks.lm.run import (
    CORPORA,
    LM_TRAIN_PRESETS,
    RUN_FORMAT,
    LMTrainPreset,
    get_preset,
    load_data,
    load_lm_run,
    prepare_data,
    run_lm_train,
)

__all__ = ["CORPORA", "LM_TRAIN_PRESETS", "RUN_FORMAT", "LMTrainPreset", "get_preset", "load_data",
           "load_lm_run", "prepare_data", "run_lm_train"]
