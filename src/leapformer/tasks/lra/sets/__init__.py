"""The five LRA tasks, one module each (docs/math.md §5.1).

Every task module exposes

- ``PROFILES``: ``{"paper": LRAProfile, "lite": LRAProfile}``; the ``paper`` one
  made by :func:`paper_data` from the task's data sizes alone (its training and
  model settings are the official recipe's, held in :mod:`leapformer.tasks.lra.profile`);
- ``PAIRED``: whether an example is two sequences (Retrieval's dual encoder);
- ``load(profile, data_dir, seed, progress) -> TaskData``: the official files
  from ``data_dir`` when given, otherwise the generated or embedded stand-in.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from leapformer.tasks.lra.batching import Split
from leapformer.tasks.lra.profile import OFFICIAL_RECIPE, PAPER_TASK_SETTINGS, LRAProfile

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


def paper_data(task: str, **data) -> LRAProfile:
    """The ``paper`` profile of ``task`` from its data settings ``data`` (``max_length``,
    the stand-in sets' sizes and lengths): batch, learning rate, warm-up, steps,
    evaluation period and every other training and model setting come from the official
    recipe (:data:`~leapformer.tasks.lra.profile.OFFICIAL_RECIPE`,
    :data:`~leapformer.tasks.lra.profile.PAPER_TASK_SETTINGS`), so each value lives in
    one place."""
    return LRAProfile(**data, **OFFICIAL_RECIPE, **PAPER_TASK_SETTINGS[task])


def get_task(name: str) -> ModuleType:
    if name not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {name!r}")
    return importlib.import_module(f"leapformer.tasks.lra.sets.{name}")
