"""The five LRA tasks, one module each (docs/math.md §5.1).

Every task module exposes

- ``PROFILES``: ``{"paper": LRAProfile, "lite": LRAProfile}``;
- ``PAIRED``: whether an example is two sequences (Retrieval's dual encoder);
- ``load(profile, data_dir, seed, progress) -> TaskData``: the official files
  from ``data_dir`` when given, otherwise the generated or embedded stand-in.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from leapformer.tasks.lra.batching import Split

TASKS = ("listops", "text", "retrieval", "image", "pathfinder")


@dataclass
class TaskData:
    """The three splits of a task with its vocabulary size and class count."""

    splits: dict[str, Split]
    vocab_size: int
    num_classes: int
    source: str  # where the data came from, e.g. "generated" or a path

    def __post_init__(self):
        missing = {"train", "valid", "test"} - set(self.splits)
        if missing:
            raise ValueError(f"task data lacks the splits {sorted(missing)}")


def get_task(name: str) -> ModuleType:
    if name not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {name!r}")
    return importlib.import_module(f"leapformer.tasks.lra.sets.{name}")
