"""Learning-rate schedules: multipliers of the peak rate (``LambdaLR``), and
PyTorch's one-cycle policy with momentum cycling.

``make_scheduler(optimizer, schedule, ...)`` builds the scheduler the training
loop steps once per optimizer step; ``options`` (``TrainConfig.schedule_options``)
hold the settings particular to one schedule:

- ``onecycle`` (the LRA harness of LeaPformer / Skyformer, docs/lra.md):
  ``torch.optim.lr_scheduler.OneCycleLR`` with ``max_lr`` = the peak rate and
  ``pct_start = warmup_steps / total_steps``; options ``div_factor`` (25),
  ``final_div_factor`` (1e4), ``anneal_strategy`` ("linear"; PyTorch's default
  is "cos"), ``cycle_momentum`` (True: AdamW's beta1 or SGD's momentum goes
  ``max_momentum`` -> ``base_momentum`` at the peak -> ``max_momentum``),
  ``base_momentum`` (0.85), ``max_momentum`` (0.95), ``three_phase`` (False).
  A warm-up of ``total_steps`` or more is cut to ``total_steps - 1``, and one of
  1 step acts as 0 (PyTorch divides by zero on a one-step phase).
- ``fairseq_cosine`` (fairseq's ``--lr-scheduler cosine``, the LeaPformer
  WikiText-103 recipe, docs/lm.md): linear warm-up from ``warmup_init`` x peak,
  then cosine periods from the peak to ``min_ratio`` x peak; options
  ``warmup_init`` (0.0), ``period`` (updates of the first period; 0: ``total_steps
  - warmup_steps``), ``t_mult`` (1: equal periods; else each period ``t_mult``
  times the last), ``shrink`` (1.0: each period's peak and floor times ``shrink``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SCHEDULES = ("constant", "linear", "cosine", "inverse_sqrt", "onecycle", "fairseq_cosine")

ONECYCLE_DEFAULTS = {"div_factor": 25.0, "final_div_factor": 1e4, "anneal_strategy": "linear",
                     "cycle_momentum": True, "base_momentum": 0.85, "max_momentum": 0.95,
                     "three_phase": False}
FAIRSEQ_COSINE_DEFAULTS = {"warmup_init": 0.0, "period": 0, "t_mult": 1.0, "shrink": 1.0}
_OPTIONS = {"onecycle": ONECYCLE_DEFAULTS, "fairseq_cosine": FAIRSEQ_COSINE_DEFAULTS}


def check_schedule(schedule: str, *, warmup_steps: int, total_steps: int,
                   options: dict | None = None) -> dict:
    """Validate a schedule and its options; returns the options with defaults filled in."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if warmup_steps < 0 or total_steps < 1:
        raise ValueError(f"need warmup_steps >= 0 and total_steps >= 1, got {warmup_steps}, "
                         f"{total_steps}")
    options = dict(options or {})
    known = _OPTIONS.get(schedule, {})
    unknown = set(options) - set(known)
    if unknown:
        raise ValueError(f"schedule_options {sorted(unknown)} do not apply to schedule "
                         f"{schedule!r}; it takes {sorted(known) or 'none'}")
    merged = {**known, **options}
    if schedule == "onecycle":
        if merged["anneal_strategy"] not in ("linear", "cos"):
            raise ValueError(f"schedule_options anneal_strategy must be 'linear' or 'cos', got "
                             f"{merged['anneal_strategy']!r}")
        if not (merged["div_factor"] > 0 and merged["final_div_factor"] > 0):
            raise ValueError(f"schedule_options div_factor and final_div_factor must be > 0, got "
                             f"{merged['div_factor']}, {merged['final_div_factor']}")
    if schedule == "fairseq_cosine":
        if merged["period"] < 0 or merged["t_mult"] <= 0 or merged["shrink"] <= 0:
            raise ValueError(f"schedule_options need period >= 0, t_mult > 0 and shrink > 0, "
                             f"got {merged['period']}, {merged['t_mult']}, {merged['shrink']}")
        if not 0.0 <= merged["warmup_init"] <= 1.0:
            raise ValueError(f"schedule_options warmup_init must be in [0, 1], got "
                             f"{merged['warmup_init']}")
    return merged


def lr_lambda(schedule: str, *, warmup_steps: int, total_steps: int,
              min_ratio: float = 0.0, options: dict | None = None) -> Callable[[int], float]:
    """Multiplier for step ``s`` (0-based): linear warm-up over ``warmup_steps``,
    then ``constant``, ``linear`` or ``cosine`` decay to ``min_ratio`` at
    ``total_steps``, or ``inverse_sqrt`` (fairseq: ``sqrt(warmup / s)``), or
    ``fairseq_cosine`` (module docstring). ``onecycle`` also cycles the momentum,
    which a multiplier cannot: use :func:`make_scheduler`."""
    if schedule == "onecycle":
        raise ValueError("schedule 'onecycle' is not a multiplier of the peak rate; use "
                         "make_scheduler")
    opts = check_schedule(schedule, warmup_steps=warmup_steps, total_steps=total_steps,
                          options=options)
    if schedule == "fairseq_cosine":
        return _fairseq_cosine(warmup_steps, total_steps, min_ratio, **opts)

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


def _fairseq_cosine(warmup: int, total: int, min_ratio: float, *, warmup_init: float,
                    period: float, t_mult: float, shrink: float) -> Callable[[int], float]:
    """fairseq ``CosineLRSchedule.step_update(num_updates)`` divided by the peak rate;
    the rate of update ``s`` (0-based) is the one set after ``s`` updates."""
    period = period or max(total - warmup, 1)
    step_up = (1.0 - warmup_init) / warmup if warmup else 0.0

    def f(step: int) -> float:
        if step < warmup:
            return warmup_init + step * step_up
        cur = step - warmup
        if t_mult != 1:
            i = math.floor(math.log(1 - cur / period * (1 - t_mult), t_mult))
            t_i = t_mult ** i * period
            t_cur = cur - (1 - t_mult ** i) / (1 - t_mult) * period
        else:
            i = math.floor(cur / period)
            t_i = period
            t_cur = cur - period * i
        lo, hi = min_ratio * shrink ** i, shrink ** i
        return lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * t_cur / t_i))

    return f


class OneCycle(torch.optim.lr_scheduler.OneCycleLR):
    """``OneCycleLR`` whose length comes from the run's configuration on resume
    (its ``state_dict`` leaves out the total and the phases, as ``LambdaLR``'s
    leaves out its multiplier: a run resumed with more steps stretches the
    rest of the cycle instead of failing), and whose rate and momentum after the
    last step (never used for an update, but logged and checkpointed) are the
    cycle's final values instead of PyTorch's extrapolation past them."""

    def state_dict(self) -> dict:
        state = super().state_dict()
        for key in ("total_steps", "_schedule_phases"):
            state.pop(key, None)
        return state

    def get_lr(self):
        lrs = super().get_lr()
        if self.last_epoch < self.total_steps:
            return lrs
        for group in self.optimizer.param_groups:
            if self.cycle_momentum and self.use_beta1:
                group["betas"] = (group["max_momentum"], *group["betas"][1:])
            elif self.cycle_momentum:
                group["momentum"] = group["max_momentum"]
        return [group["min_lr"] for group in self.optimizer.param_groups]


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, *, warmup_steps: int,
                   total_steps: int, min_ratio: float = 0.0, options: dict | None = None
                   ) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler of ``schedule`` for ``optimizer`` (stepped once per optimizer step)."""
    opts = check_schedule(schedule, warmup_steps=warmup_steps, total_steps=total_steps,
                          options=options)
    if schedule != "onecycle":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(
            schedule, warmup_steps=warmup_steps, total_steps=total_steps, min_ratio=min_ratio,
            options=options))
    warm = min(warmup_steps, total_steps - 1)
    warm = 0 if warm < 2 else warm
    max_lr = [group["lr"] for group in optimizer.param_groups]
    return OneCycle(optimizer, max_lr=max_lr, total_steps=total_steps,
                    pct_start=warm / total_steps, **opts)
