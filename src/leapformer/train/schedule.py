"""Learning-rate schedules as multipliers of the peak rate (``LambdaLR``)."""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("constant", "linear", "cosine", "inverse_sqrt")


def lr_lambda(schedule: str, *, warmup_steps: int, total_steps: int,
              min_ratio: float = 0.0) -> Callable[[int], float]:
    """Multiplier for step ``s`` (0-based): linear warm-up over ``warmup_steps``,
    then ``constant``, ``linear`` or ``cosine`` decay to ``min_ratio`` at
    ``total_steps``, or ``inverse_sqrt`` (fairseq: ``sqrt(warmup / s)``)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if warmup_steps < 0 or total_steps < 1:
        raise ValueError(f"need warmup_steps >= 0 and total_steps >= 1, got {warmup_steps}, "
                         f"{total_steps}")

    def f(step: int) -> float:
        s = step + 1
        if s <= warmup_steps:
            return s / warmup_steps
        if schedule == "constant":
            return 1.0
        if schedule == "inverse_sqrt":
            return math.sqrt(max(warmup_steps, 1) / s)
        span = max(total_steps - warmup_steps, 1)
        t = min(max(s - warmup_steps, 0) / span, 1.0)
        decay = 1.0 - t if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))
        return min_ratio + (1.0 - min_ratio) * decay

    return f
