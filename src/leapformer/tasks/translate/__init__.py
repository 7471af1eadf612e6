"""Text translation, offline and simultaneous wait-k: data, one run, evaluation, reports."""

from leapformer.tasks.translate.evaluate import run_translate_eval, run_translate_simul
from leapformer.tasks.translate.run import (
    EVAL_LENGTHS,
    TRANSLATE_PRESETS,
    TranslatePreset,
    load_translate_run,
    run_translate_train,
)

__all__ = ["EVAL_LENGTHS", "TRANSLATE_PRESETS", "TranslatePreset", "load_translate_run",
           "run_translate_eval", "run_translate_simul", "run_translate_train"]
