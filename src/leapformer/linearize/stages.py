"""The two training stages of linearisation (LoLCATs, Zhang et al. 2024).

- :func:`attention_transfer` (stage 1): only the parameters :func:`linearize` added
  are trained, so that each linearised layer's attention output (before the output
  projection) matches the frozen softmax layer's, by mean squared error summed over
  the layers. Every layer reads the teacher's hidden states
  (:func:`~leapformer.linearize.swap.transfer_mode`), so the layers learn
  independently of each other, layer by layer, in one forward pass per batch.
- :func:`finetune_lora` (stage 2): LoRA adapters (``peft``) on the query, key, value
  and output projections of the linearised layers, trained on the next-token loss;
  everything else is frozen. The adapters are merged into the weights at the end.

Batches are ``(inputs [B, T], targets [B, T])`` token ids (targets = inputs shifted by
one), as :class:`leapformer.data.lm_corpus.StreamBatcher` gives them; ``batches`` is
a callable ``i -> batch`` for step ``i``. ``progress``: optional callable
``(step, loss)`` after each step. Both stages use AdamW with a cosine decay to a
tenth of ``lr`` after ``warmup`` steps of linear warm-up.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.linearize.swap import (
    CORE,
    attention_modules,
    linear_cores,
    new_parameters,
    transfer_mode,
)

log = logging.getLogger(__name__)

Batch = tuple[Tensor, Tensor]


def _update(loss, optimizer, scheduler, params, grad_clip, losses, step, progress, *,
            stage: int) -> None:
    """One optimiser step on ``loss`` (clipped), its value appended to ``losses`` (a
    non-finite loss stops the stage) and reported to ``progress``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    scheduler.step()
    losses.append(float(loss.detach()))
    if not math.isfinite(losses[-1]):
        raise FloatingPointError(f"stage {stage} loss is {losses[-1]} at step {step}")
    if progress is not None:
        progress(step, losses[-1])


def _check_steps(steps, lr) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")


def _schedule(optimizer, steps: int, warmup: int):
    warmup = min(warmup, max(steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        t = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def attention_transfer(model: nn.Module, batches: Callable[[int], Batch], steps: int, *,
                       lr: float = 1e-3, warmup: int = 0, grad_clip: float | None = 1.0,
                       progress: Callable[[int, float], None] | None = None) -> dict:
    """Stage 1 (see the module docstring). Returns ``{"steps", "losses"}`` (the summed
    MSE at each step). Trains in eval mode (no dropout in the teacher); the other
    parameters' ``requires_grad`` is restored afterwards."""
    _check_steps(steps, lr)
    params = new_parameters(model)
    if not linear_cores(model):
        raise ValueError("model has no linearised layers (call linearize first)")
    if not params:
        log.info("stage 1 skipped: the linearised layers have no parameters to train "
                 "(ReLU features without LeaP)")
        return {"steps": 0, "losses": []}
    if steps == 0:
        return {"steps": 0, "losses": []}
    keep = {p: p.requires_grad for p in model.parameters()}
    ids = {id(p) for p in params}
    was = model.training
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = _schedule(optimizer, steps, warmup)
    device = _device(model)
    losses = []
    try:
        model.eval()
        for step in range(steps):
            inputs, _ = batches(step)
            with transfer_mode(model) as layer_losses:
                model.base_model(input_ids=inputs.to(device), use_cache=False)
            loss = torch.stack(layer_losses).sum()
            _update(loss, optimizer, scheduler, params, grad_clip, losses, step, progress,
                    stage=1)
    finally:
        model.train(was)
        for p, flag in keep.items():
            p.requires_grad_(flag)
    log.info("stage 1: %d steps, attention MSE %.4g -> %.4g", steps, losses[0], losses[-1])
    return {"steps": steps, "losses": losses}


def lora_targets(model: nn.Module) -> list[str]:
    """Full names of the query/key/value/output projections (``nn.Linear`` or GPT-2's
    ``Conv1D``) of the linearised layers."""
    names = {id(m): n for n, m in model.named_modules()}
    out = []
    for m in attention_modules(model):
        if not hasattr(m, CORE):
            continue
        for child_name, child in m.named_children():
            if child_name != CORE and (isinstance(child, nn.Linear)
                                       or type(child).__name__ == "Conv1D"):
                out.append(f"{names[id(m)]}.{child_name}")
    return out


def next_token_loss(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of ``targets`` under a causal LM's logits for ``inputs``."""
    logits = model(input_ids=inputs, use_cache=False).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


def finetune_lora(model: nn.Module, batches: Callable[[int], Batch], steps: int, *,
                  lr: float = 1e-3, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                  warmup: int = 0, grad_clip: float | None = 1.0, merge: bool = True,
                  progress: Callable[[int, float], None] | None = None
                  ) -> tuple[nn.Module, dict]:
    """Stage 2 (see the module docstring): returns ``(model, {"steps", "losses",
    "trainable"})`` where ``model`` has the adapters merged (``merge=True``) or is the
    ``peft`` model (``merge=False``); ``trainable`` counts the LoRA parameters."""
    _check_steps(steps, lr)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive int, got {rank!r}")
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:  # pragma: no cover - installed with the [hf] extra
        raise ImportError("stage 2 needs peft: pip install 'leapformer[hf]'") from err
    targets = lora_targets(model)
    if not targets:
        raise ValueError("model has no linearised layers (call linearize first)")
    conv1d = any(type(model.get_submodule(t)).__name__ == "Conv1D" for t in targets)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        fan_in_fan_out=conv1d, bias="none")
    with warnings.catch_warnings():  # peft asks a deprecated transformers property
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        peft_model = get_peft_model(model, config)
    params = [p for n, p in peft_model.named_parameters() if p.requires_grad]
    if any("lora_" not in n for n, p in peft_model.named_parameters() if p.requires_grad):
        raise RuntimeError("peft left non-LoRA parameters trainable")
    trainable = sum(p.numel() for p in params)
    losses = []
    if steps:
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        scheduler = _schedule(optimizer, steps, warmup)
        device = _device(peft_model)
        peft_model.train()
        for step in range(steps):
            inputs, targets_ = batches(step)
            loss = next_token_loss(peft_model, inputs.to(device), targets_.to(device))
            _update(loss, optimizer, scheduler, params, grad_clip, losses, step, progress,
                    stage=2)
        log.info("stage 2: %d steps, %d LoRA parameters, loss %.4g -> %.4g", steps, trainable,
                 losses[0], losses[-1])
    peft_model.eval()
    result = {"steps": steps, "losses": losses, "trainable": trainable}
    if not merge:
        return peft_model, result
    merged = peft_model.merge_and_unload()
    for p in merged.parameters():
        p.requires_grad_(True)
    return merged, result
