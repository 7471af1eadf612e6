"""Speech tasks (docs/st.md): ASR pre-training, speech translation fine-tuned from the
ASR encoder, offline WER/BLEU, and simultaneous wait-k on pre-decision chunks with
latency in ms of source audio; a SimulEval agent in
:mod:`leapformer.tasks.st.simuleval_agent` (imported on its own: it needs simuleval)."""

from leapformer.tasks.st.evaluate import run_st_eval, run_st_simul, word_error_rate
from leapformer.tasks.st.run import ST_PRESETS, init_encoder_from, load_st_run, run_st_train

__all__ = ["ST_PRESETS", "init_encoder_from", "load_st_run", "run_st_eval", "run_st_simul",
           "run_st_train", "word_error_rate"]
