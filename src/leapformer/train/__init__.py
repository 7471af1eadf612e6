"""One training loop for every task: schedules, clipping, accumulation,
atomic best/last checkpoints, exact resume, JSONL metrics, progress bar."""

from leapformer.train.checkpoint import load_checkpoint, save_checkpoint
from leapformer.train.loop import TrainConfig, TrainResult, Trainer
from leapformer.train.schedule import lr_lambda

__all__ = ["TrainConfig", "TrainResult", "Trainer", "load_checkpoint", "lr_lambda",
           "save_checkpoint"]
