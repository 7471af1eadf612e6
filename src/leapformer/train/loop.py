"""The training loop shared by every task.

A task supplies three functions: ``get_batch(i)`` returns micro-batch ``i``
(``i = step * grad_accum + micro``; deterministic in ``i``, which is what makes
resuming exact), ``loss_fn(model, batch) -> (loss, counts)`` with optional
counts ``{"examples": n, "tokens": n}`` for throughput, and optionally
``evaluate(model) -> metrics``. The loop adds AdamW or Nesterov SGD, warm-up and
decay schedules (one-cycle with momentum cycling too: :mod:`leapformer.train.schedule`),
gradient clipping by norm or by value, accumulation, bfloat16 autocast,
atomic ``last.pt``/``best.pt`` checkpoints (model, optimizer, schedule, step,
RNG states), ``--resume`` that continues exactly where the last checkpoint
stopped, ``metrics.jsonl``, and a tqdm progress bar.

``last.pt`` is written at every evaluation, every ``checkpoint_every`` steps,
every ``checkpoint_seconds`` of training (default 60 s) and at the end. SIGINT
(Ctrl-C) or SIGTERM during :meth:`Trainer.fit` finishes the current step,
writes ``last.pt`` and raises :class:`TrainingInterrupted` (a
``KeyboardInterrupt`` naming the step and the checkpoint); a second signal
stops at once. On resume, ``metrics.jsonl`` records after the checkpoint's step
are dropped, so an interrupted run never records a step twice.

Under ``torchrun`` (``dist=init_distributed()``, see
:mod:`leapformer.train.distributed`) the model is wrapped in DDP, every rank
takes its slice of each global batch from ``get_batch``, logged losses and
throughput counts are reduced over ranks, and only rank 0 writes files and
shows the bar. ``evaluate`` gets the unwrapped model on every rank; it may
shard its data and all-reduce its sums (as the LRA harness does) — rank 0's
metrics are broadcast so all ranks take the same best-checkpoint decisions.
Checkpoints hold the unwrapped model's ``state_dict`` (no ``module.``
prefix), so a run can resume on a different number of processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from leapformer._io import atomic_write_text
from leapformer.train import distributed as ddp
from leapformer.train.checkpoint import load_checkpoint, save_checkpoint
from leapformer.train.schedule import check_schedule, make_scheduler

log = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "nag")


@dataclass
class TrainConfig:
    """Optimisation settings (the task presets fill these)."""

    steps: int
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8  # AdamW's epsilon
    optimizer: str = "adamw"
    momentum: float = 0.99  # nag only
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    grad_clip_mode: str = "norm"  # "norm": total norm <= grad_clip; "value": |g| <= it
    schedule_options: dict = field(default_factory=dict)  # see leapformer.train.schedule
    grad_accum: int = 1
    eval_every: int = 0  # 0: evaluate only at the end
    checkpoint_every: int = 0  # 0: at every evaluation and at the end
    checkpoint_seconds: float = 60.0  # also last.pt after this much time (0: never)
    log_every: int = 50
    seed: int = 0
    amp: bool = False  # bfloat16 autocast
    metric: str = "loss"  # evaluation metric that selects best.pt
    mode: str = "min"  # "min" or "max" for ``metric``

    def __post_init__(self):
        if self.steps < 1 or self.grad_accum < 1:
            raise ValueError(f"steps and grad_accum must be positive, got {self.steps}, "
                             f"{self.grad_accum}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")
        if not self.checkpoint_seconds >= 0:
            raise ValueError(f"checkpoint_seconds must be >= 0, got {self.checkpoint_seconds!r}")
        if self.grad_clip_mode not in ("norm", "value"):
            raise ValueError(f"grad_clip_mode must be 'norm' or 'value', got "
                             f"{self.grad_clip_mode!r}")
        check_schedule(self.schedule, warmup_steps=self.warmup_steps, total_steps=self.steps,
                       options=self.schedule_options)


@dataclass
class TrainResult:
    steps: int
    train_loss: float
    best: dict | None
    last_eval: dict | None
    wall_s: float
    steps_per_s: float
    examples_per_s: float | None
    tokens_per_s: float | None
    parameters: int
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped :meth:`Trainer.fit` at ``step`` of ``steps``; ``checkpoint``
    is the ``last.pt`` written then (None without ``out_dir``)."""

    def __init__(self, step: int, steps: int, checkpoint: Path | None, signum: int):
        saved = f"saved {checkpoint}" if checkpoint else "nothing saved (no out_dir)"
        super().__init__(f"interrupted at step {step}/{steps}; {saved}")
        self.step, self.steps, self.checkpoint, self.signum = step, steps, checkpoint, signum


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": np.random.get_state()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


class Trainer:
    """Runs :class:`TrainConfig` on ``model``; writes into ``out_dir`` if given."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, *, get_batch: Callable[[int], Any],
                 loss_fn: Callable[[nn.Module, Any], tuple[Tensor, dict]],
                 evaluate: Callable[[nn.Module], dict] | None = None,
                 out_dir: str | Path | None = None, progress: bool = True,
                 meta: dict | None = None, dist: ddp.DistInfo | None = None):
        self.model, self.cfg = model, cfg
        self.dist = dist or ddp.DistInfo()
        self._train_model = ddp.wrap_model(model, self.dist)  # ``model`` itself in one process
        self.get_batch, self.loss_fn, self.evaluate = get_batch, loss_fn, evaluate
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.progress = progress
        self.meta = meta or {}
        params = [p for p in model.parameters() if p.requires_grad]
        if cfg.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                               weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                             nesterov=True, weight_decay=cfg.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, cfg.schedule,
                                        warmup_steps=cfg.warmup_steps, total_steps=cfg.steps,
                                        min_ratio=cfg.min_lr_ratio, options=cfg.schedule_options)
        self.step = 0
        self.best: dict | None = None
        self.history: list[dict] = []
        self._stop_signal: int | None = None
        self._saved_at = time.monotonic()

    # -- checkpoints -------------------------------------------------------------
    def _state(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "step": self.step, "best": self.best,
                 "rng": _rng_state(), "config": asdict(self.cfg), "meta": self.meta,
                 "history": self.history}
        if self.dist.enabled:  # every rank's RNG (dropout differs by rank); "rng" is rank 0's
            state["rng_ranks"] = ddp.all_gather_object(state["rng"], self.dist)
            state["world_size"] = self.dist.world_size
        return state

    def _save(self, name: str) -> None:
        """Called on every rank at the same steps; rank 0 writes."""
        if self.out_dir is not None:
            state = self._state()
            if self.dist.is_main:
                save_checkpoint(state, self.out_dir / name)
            if name == "last.pt":
                self._saved_at = time.monotonic()

    def resume(self) -> None:
        """Load ``out_dir/last.pt``: model, optimizer, schedule, step, RNG, history."""
        if self.out_dir is None:
            raise ValueError("resume needs out_dir")
        ck = load_checkpoint(self.out_dir / "last.pt")
        if ck["step"] > self.cfg.steps:
            raise ValueError(f"cannot resume {self.out_dir / 'last.pt'}: it is at step "
                             f"{ck['step']}, beyond steps={self.cfg.steps}")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self._apply_schedule()
        self.step, self.best, self.history = ck["step"], ck["best"], ck.get("history", [])
        ranks = ck.get("rng_ranks") or [ck["rng"]]
        if len(ranks) == self.dist.world_size:  # same number of processes: exact resume
            _set_rng_state(ranks[self.dist.rank])
        elif self.dist.is_main:  # another number of processes: rank 0 continues the
            _set_rng_state(ranks[0])  # saved stream, the other ranks start fresh ones
        else:
            _seed_all(self.cfg.seed + self.dist.rank + 1_000_003 * self.step)
        if self.dist.is_main:
            self._truncate_metrics()
        log.info("resumed from %s at step %d", self.out_dir / "last.pt", self.step)

    def _apply_schedule(self) -> None:
        """Set the optimizer's rates (and OneCycle's momentum) to this run's schedule at the
        loaded step. The checkpoint holds the rates of the schedule it was trained with;
        a run resumed with more ``steps`` follows the new, longer schedule from here on
        (same steps: the same rates, to the bit)."""
        with warnings.catch_warnings():  # get_lr outside step() warns; here it is meant
            warnings.simplefilter("ignore", UserWarning)
            lrs = self.scheduler.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self.scheduler._last_lr = list(lrs)

    def _truncate_metrics(self) -> None:
        """Drop JSONL records written after the checkpoint (an interrupted run)."""
        path = self.out_dir / "metrics.jsonl"
        if not path.is_file():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # empty, or cut short by the interruption
                continue
            if rec.get("step", 0) <= self.step:
                kept.append(line)
        atomic_write_text(path, "".join(line + "\n" for line in kept))

    def _record(self, rec: dict) -> None:
        self.history.append(rec)
        if self.out_dir is not None and self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        old = self.best[self.cfg.metric]
        return value < old if self.cfg.mode == "min" else value > old

    # -- training ----------------------------------------------------------------
    def _autocast(self):
        if not self.cfg.amp:
            return contextlib.nullcontext()
        device = next(self.model.parameters()).device.type
        return torch.autocast(device_type=device, dtype=torch.bfloat16)

    def _run_eval(self) -> dict:
        self.model.eval()
        with torch.no_grad():
            metrics = dict(self.evaluate(self.model))
        metrics = ddp.broadcast_object(metrics, self.dist)  # one best.pt decision on all ranks
        if self.cfg.metric not in metrics:
            raise ValueError(f"evaluate() returned {sorted(metrics)}, missing the selection "
                             f"metric {self.cfg.metric!r}")
        rec = {"step": self.step, "kind": "eval", **metrics}
        self._record(rec)
        if self._better(metrics[self.cfg.metric]):
            self.best = rec
            self._save("best.pt")
        return rec

    def _get_shard(self, i: int):
        """Micro-batch ``i``: the whole batch, or this rank's slice of the global batch."""
        batch = self.get_batch(i)
        if not self.dist.enabled:
            return batch
        n = ddp.batch_len(batch)
        if n < self.dist.world_size:
            raise ValueError(f"a global batch of {n} examples cannot be split over "
                             f"{self.dist.world_size} processes")
        return ddp.shard_batch(batch, self.dist.rank, self.dist.world_size)

    @contextlib.contextmanager
    def _stop_on_signals(self):
        """SIGINT/SIGTERM set a flag the loop reads after each step; a second one stops
        at once. Handlers can only be set in the main thread: elsewhere, none."""
        self._stop_signal = None
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signum

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, signal.SIG_DFL if h is None else h)

    def _stop_or_due(self) -> tuple[bool, bool]:
        """``(stop, checkpoint due)`` after a step: a signal came, or ``checkpoint_seconds``
        passed since the last ``last.pt``; one decision on every rank."""
        stop = self._stop_signal is not None
        due = bool(self.out_dir is not None and self.cfg.checkpoint_seconds
                   and time.monotonic() - self._saved_at >= self.cfg.checkpoint_seconds)
        if self.dist.enabled:  # a signal may reach one rank only; rank 0's clock decides
            s, d = ddp.all_reduce_sum([float(stop), float(due and self.dist.is_main)],
                                      self.dist)
            stop, due = s > 0, d > 0
        return stop, due

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train to ``cfg.steps`` (from ``last.pt`` with ``resume``); see the module
        docstring for checkpoints and interruptions."""
        with self._stop_on_signals():
            return self._fit(resume)

    def _fit(self, resume: bool) -> TrainResult:
        cfg = self.cfg
        self._saved_at = time.monotonic()
        if resume:
            self.resume()
        else:
            _seed_all(cfg.seed + self.dist.rank)
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step",
                   disable=not (self.progress and self.dist.is_main), dynamic_ncols=True)
        start_step, t0 = self.step, time.perf_counter()
        counts = {"examples": 0, "tokens": 0}
        last_loss, last_eval, window = math.nan, None, []
        while self.step < cfg.steps:
            self._train_model.train()
            self.optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for micro in range(cfg.grad_accum):
                batch = self._get_shard(self.step * cfg.grad_accum + micro)
                last_micro = micro == cfg.grad_accum - 1
                with (contextlib.nullcontext() if last_micro else ddp.no_sync(self._train_model)):
                    with self._autocast():
                        loss, c = self.loss_fn(self._train_model, batch)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"loss is {loss.item()} at step {self.step}")
                    (loss / cfg.grad_accum).backward()
                total += loss.item() / cfg.grad_accum
                for key in counts:
                    counts[key] += int(c.get(key, 0))
            total = ddp.all_reduce_mean(total, self.dist)
            if cfg.grad_clip and cfg.grad_clip_mode == "value":
                nn.utils.clip_grad_value_(self.model.parameters(), cfg.grad_clip)
            elif cfg.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            last_loss = total
            window.append(total)
            bar.update(1)
            bar.set_postfix(loss=f"{total:.4f}")
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                self._record({"step": self.step, "kind": "train",
                              "loss": sum(window) / len(window),
                              "lr": self.scheduler.get_last_lr()[0],
                              "elapsed_s": time.perf_counter() - t0})
                window = []
            at_eval = self.evaluate is not None and (
                (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps)
            if at_eval:
                last_eval = self._run_eval()
                bar.set_postfix({"loss": f"{total:.4f}", f"eval_{cfg.metric}": last_eval[cfg.metric]})
            stop, due = self._stop_or_due()
            if at_eval or self.step == cfg.steps or stop or due or (
                    cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
                self._save("last.pt")
            if stop:
                bar.close()
                raise TrainingInterrupted(
                    self.step, cfg.steps, None if self.out_dir is None else
                    self.out_dir / "last.pt", self._stop_signal or signal.SIGINT)
        bar.close()
        if self.dist.enabled:  # throughput of the whole job; files on disk for every rank
            counts = dict(zip(counts, map(int, ddp.all_reduce_sum(list(counts.values()), self.dist))))
            ddp.barrier(self.dist)
        wall = time.perf_counter() - t0
        done = self.step - start_step
        rate = (lambda n: n / wall if n and wall > 0 else None)
        return TrainResult(
            steps=self.step, train_loss=last_loss, best=self.best, last_eval=last_eval,
            wall_s=wall, steps_per_s=done / wall if wall > 0 else 0.0,
            examples_per_s=rate(counts["examples"]), tokens_per_s=rate(counts["tokens"]),
            parameters=sum(p.numel() for p in self.model.parameters()), history=self.history)
