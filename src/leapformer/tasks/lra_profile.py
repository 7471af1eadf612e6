"""Data sizes and optimisation settings of one LRA task under one profile."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LRAProfile:
    """``paper`` profiles hold the published settings (SPEC §5.1); ``lite`` ones
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


def lra_mechanism_options(attention: str, max_length: int) -> dict:
    """Options of the LRA baselines as the Skyformer harness sets them (SPEC §5.1):
    Performer 128 random features, Linformer projections sized by the maximum
    length (k = 128, its default); Nystromformer 128 landmarks, Skyformer 128
    features, Reformer 2 hashes, BigBird 3 random blocks of 64 are the mechanisms'
    own defaults."""
    if attention == "performer":
        return {"num_features": 128}
    if attention == "linformer":
        return {"max_length": max_length}
    return {}
