"""Long-Range Arena: task data (:mod:`.sets`), profiles, one run, grids, reports and figures."""

from leapformer.tasks.lra.profile import LRAProfile, lra_mechanism_options
from leapformer.tasks.lra.run import PROFILES, evaluate, get_profile, load_splits, run_lra
from leapformer.tasks.lra.sets import TASKS, TaskData, get_task

__all__ = ["PROFILES", "TASKS", "LRAProfile", "TaskData", "evaluate", "get_profile", "get_task",
           "load_splits", "lra_mechanism_options", "run_lra"]
