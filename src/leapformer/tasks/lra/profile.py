"""Data sizes and optimisation settings of one LRA task under one profile."""

from __future__ import annotations

from dataclasses import dataclass

from leapformer.models.classifier import lra_mechanism_options  # noqa: F401 (re-export)


@dataclass(frozen=True)
class LRAProfile:
    """``paper`` profiles hold the published settings (docs/math.md §5.1); ``lite`` ones
    the same model on shorter inputs and fewer steps, for a 2-core CPU."""

    max_length: int
    batch_size: int
    lr: float
    steps: int
    eval_every: int
    warmup_steps: int = 0
    n_train: int = 96_000  # sizes of generated / embedded stand-in sets
    n_valid: int = 2_000
    n_test: int = 2_000
    min_len: int = 500  # generated ListOps lengths
    max_len: int = 2_000
    image_size: int = 32
    weight_decay: float = 0.01
