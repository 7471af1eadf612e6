"""Multi-query associative recall (Zoology, Arora et al. 2023; docs/math.md §5.4): one run
(:mod:`.run`), a resumable grid over mechanisms, widths, cells, learning rates and
seeds (:mod:`.grid`), and the report with the accuracy-vs-width figure (:mod:`.report`)."""

from leapformer.report.names import mechanism_label
from leapformer.tasks.mqar.run import (
    DEFAULTS,
    RUN_FORMAT,
    batch_for,
    evaluate_recall,
    run_mqar,
    split_seeds,
)

__all__ = ["DEFAULTS", "RUN_FORMAT", "batch_for", "evaluate_recall", "mechanism_label",
           "run_mqar", "split_seeds"]
