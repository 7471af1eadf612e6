"""Text-to-speech (TransformerTTS with MLA specs): data and front-end (:mod:`.data`),
one training run (:mod:`.run`), synthesis, evaluation and report (:mod:`.evaluate`).
docs/tts.md has the commands."""

from leapformer.tasks.tts.evaluate import run_tts_eval, run_tts_report, run_tts_synth
from leapformer.tasks.tts.run import RUN_FORMAT, TTS_DEFAULTS, load_tts_run, run_tts_train

__all__ = ["RUN_FORMAT", "TTS_DEFAULTS", "load_tts_run", "run_tts_eval", "run_tts_report",
           "run_tts_synth", "run_tts_train"]
