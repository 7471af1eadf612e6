"""One training loop for every task: schedules, clipping, accumulation,
atomic best/last checkpoints, exact resume, JSONL metrics, progress bar;
multi-process data parallelism under torchrun (:mod:`leapformer.train.distributed`)."""

from leapformer.train.checkpoint import load_checkpoint, save_checkpoint
from leapformer.train.distributed import DistInfo, cleanup, init_distributed
from leapformer.train.loop import TrainConfig, Trainer, TrainResult
from leapformer.train.schedule import lr_lambda

__all__ = ["DistInfo", "TrainConfig", "TrainResult", "Trainer", "cleanup", "init_distributed",
           "load_checkpoint", "lr_lambda", "save_checkpoint"]
