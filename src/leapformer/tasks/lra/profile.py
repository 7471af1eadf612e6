"""Data sizes, model options and optimisation settings of one LRA task under one profile.

Each task module (:mod:`leapformer.tasks.lra.sets`) holds its ``lite`` and
``paper`` profiles' data sizes; :func:`paper_profile` lays the official
training recipe over the ``paper`` one (:data:`OFFICIAL_RECIPE` for every task,
:data:`PAPER_TASK_SETTINGS` per task). Sources: the LeaPformer repository's
``pytorch-lra`` harness (``src/main.py``, ``src/config.py``, ``src/models/``),
adapted from Skyformer's; docs/lra.md ("Settings") lists every setting, the
official value, ours and why any difference remains.
"""

from __future__ import annotations

import json
import random
from dataclasses import MISSING, dataclass, fields, replace

from leapformer.models.classifier import lra_mechanism_options
from leapformer.tasks.lra.batching import Split

COSFORMER_LENGTHS = ("item", "padded")


@dataclass(frozen=True)
class LRAProfile:
    """``paper`` profiles hold the published settings (docs/lra.md); ``lite`` ones
    the same model on shorter inputs and fewer steps, for a 2-core CPU.

    Optimisation: AdamW (``beta1``, ``beta2``, ``adam_eps``, ``weight_decay``), ``schedule``
    (None: linear decay after ``warmup_steps`` of warm-up, or constant without
    warm-up; ``"onecycle"``: PyTorch's OneCycleLR, ``pct_start = warmup_steps /
    steps``, with beta1 cycling), gradient clipping at ``grad_clip`` by
    ``grad_clip_mode`` ("norm" or "value"). Validation on ``eval_examples``
    examples of the validation split (a seeded random subset; None: all).

    ``stand_in``: which variant of the task's generated or embedded stand-in (each task
    module names its own, e.g. Image ``"plain"``; None: the standard one); official
    data ignores it.

    Model (:class:`~leapformer.models.ClassifierConfig`): ``activation``,
    ``pooling``, ``head_hidden``, ``init_std``, ``pad_to`` (inputs right-padded
    to this fixed length; the position table is ``max(max_length, pad_to)``),
    ``leap_hidden`` (LeaP hidden size; None: the mechanism's step-down 4),
    ``cosformer_length`` ("item": each item's unpadded length; "padded": the
    tensor length), ``linear_attention_dropout`` (cosFormer's and LeaP's
    attention dropout; None: the model dropout), ``pair_features`` (Retrieval:
    ``"official"`` or ``"normalized"``, see :class:`~leapformer.models.ClassifierConfig`),
    ``positions`` (``"learned"``, or ``"sincos2d"`` for the image tasks: a 2-D
    sinusoidal start of the position table, ``image_size`` pixels a row) and
    ``dropout`` (the model dropout; None: the classifier's 0.1).
    """

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
    stand_in: str | None = None  # variant of the generated / embedded stand-in (lite)
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    adam_eps: float = 1e-8
    schedule: str | None = None
    grad_clip: float = 1.0
    grad_clip_mode: str = "norm"
    eval_examples: int | None = None
    activation: str = "relu"
    pooling: str = "mean"
    head_hidden: int | None = None
    init_std: float | None = None
    pad_to: int | None = None
    leap_hidden: int | None = None
    cosformer_length: str = "item"
    linear_attention_dropout: float | None = None
    pair_features: str = "official"  # Retrieval's comparison features (ClassifierConfig)
    positions: str = "learned"  # or "sincos2d" (image tasks; ClassifierConfig)
    dropout: float | None = None  # the model dropout; None: ClassifierConfig's default

    def __post_init__(self):
        if self.cosformer_length not in COSFORMER_LENGTHS:
            raise ValueError(f"cosformer_length must be one of {COSFORMER_LENGTHS}, got "
                             f"{self.cosformer_length!r}")
        if self.positions not in ("learned", "sincos2d"):
            raise ValueError(f"positions must be 'learned' or 'sincos2d', got "
                             f"{self.positions!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be None or in [0, 1), got {self.dropout!r}")
        for name in ("leap_hidden", "pad_to", "eval_examples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{name} must be None or a positive int, got {value!r}")


#: The official harness's recipe, common to all five tasks (``main.py``, ``config.py``,
#: ``model_LRA.py``, ``attention_cosformer.py``): AdamW betas (0.9, 0.999), eps 1e-6,
#: no weight decay; OneCycleLR (linear anneal, PyTorch's defaults otherwise); clipping
#: by value at 1; GELU FFN; embeddings N(0, 0.02^2); mean over the padded length; head
#: width 128; LeaP hidden size 16 (``--learned-numer-inter-size``); cosFormer's
#: normaliser the padded length; no attention dropout in cosFormer / LeaP.
OFFICIAL_RECIPE: dict = {
    "beta1": 0.9, "beta2": 0.999, "adam_eps": 1e-6, "weight_decay": 0.0, "schedule": "onecycle",
    "grad_clip": 1.0, "grad_clip_mode": "value", "activation": "gelu",
    "pooling": "mean_padded", "head_hidden": 128, "init_std": 0.02, "leap_hidden": 16,
    "cosformer_length": "padded", "linear_attention_dropout": 0.0,
}

#: Per task (``config.py``): batch, lr, warm-up, steps, evaluation period,
#: validation examples (``num_eval_steps x batch``), tensor length.
PAPER_TASK_SETTINGS: dict[str, dict] = {
    "listops": {"batch_size": 32, "lr": 1e-4, "warmup_steps": 1000, "steps": 20_000,
                "eval_every": 250, "eval_examples": 62 * 32, "pad_to": 2048},
    "text": {"batch_size": 32, "lr": 1e-4, "warmup_steps": 80, "steps": 20_000,
             "eval_every": 250, "eval_examples": 200 * 32, "pad_to": 4096},
    "retrieval": {"batch_size": 16, "lr": 2e-4, "warmup_steps": 800, "steps": 50_000,
                  "eval_every": 1000, "eval_examples": 300 * 16, "pad_to": 4096},
    "image": {"batch_size": 256, "lr": 1e-4, "warmup_steps": 175, "steps": 30_000,
              "eval_every": 50, "eval_examples": 20 * 256, "pad_to": 1024},
    "pathfinder": {"batch_size": 128, "lr": 2e-4, "warmup_steps": 312, "steps": 50_000,
                   "eval_every": 500, "eval_examples": 156 * 128, "pad_to": 1024},
}


def field_defaults(cls) -> dict:
    """A dataclass's fields that have a default, with it (JSON-shaped): what a saved
    run that does not record a field (written before the field existed) ran with."""
    return json.loads(json.dumps({f.name: f.default for f in fields(cls)
                                  if f.default is not MISSING}))


def paper_profile(task: str, base: LRAProfile) -> LRAProfile:
    """``base`` (the task's ``paper`` data sizes) with the official recipe laid over it."""
    if task not in PAPER_TASK_SETTINGS:
        raise ValueError(f"task must be one of {tuple(PAPER_TASK_SETTINGS)}, got {task!r}")
    return replace(base, **OFFICIAL_RECIPE, **PAPER_TASK_SETTINGS[task])


def model_length(p: LRAProfile) -> int:
    """Size of the position table: the longest input the model sees."""
    return max(p.max_length, p.pad_to or 0)


def mechanism_options(attention: str, p: LRAProfile, extra: dict | None = None) -> dict:
    """The mechanism's options under profile ``p``; ``extra`` (explicit options) wins."""
    options = dict(lra_mechanism_options(attention, model_length(p)))
    if attention == "leap" and p.leap_hidden is not None:
        options["hidden"] = p.leap_hidden
    if attention == "cosformer" and p.cosformer_length != "item":
        options["length"] = p.cosformer_length
    return {**options, **(extra or {})}


def classifier_options(attention: str, p: LRAProfile, extra: dict | None = None) -> dict:
    """:class:`~leapformer.models.ClassifierConfig` keyword arguments under ``p``
    (all but the vocabulary and class counts); fields at their defaults are left
    out, so a ``lite`` model's configuration is what it was before these options."""
    kw = {"max_length": model_length(p), "attention": attention,
          "mechanism_options": mechanism_options(attention, p, extra)}
    dropout = p.linear_attention_dropout if attention in ("cosformer", "leap") else None
    for key, value, default in (("activation", p.activation, "relu"),
                                ("pooling", p.pooling, "mean"),
                                ("head_hidden", p.head_hidden, None),
                                ("init_std", p.init_std, None),
                                ("pad_to", p.pad_to, None),
                                ("attention_dropout", dropout, None),
                                ("pair_features", p.pair_features, "official"),
                                ("positions", p.positions, "learned"),
                                ("dropout", p.dropout, None)):
        if value != default:
            kw[key] = value
    if p.positions != "learned":
        kw["grid_width"] = p.image_size
    return kw


def train_options(p: LRAProfile) -> dict:
    """:class:`~leapformer.train.TrainConfig` optimisation keyword arguments under ``p``."""
    schedule = p.schedule or ("linear" if p.warmup_steps else "constant")
    return {"steps": p.steps, "lr": p.lr, "weight_decay": p.weight_decay,
            "betas": (p.beta1, p.beta2), "eps": p.adam_eps, "schedule": schedule,
            "warmup_steps": p.warmup_steps,
            "grad_clip": p.grad_clip, "grad_clip_mode": p.grad_clip_mode,
            "eval_every": p.eval_every}


def eval_subset(split: Split, n: int | None, seed: int) -> Split:
    """``n`` examples of ``split`` drawn at random (seeded), in split order; all if
    ``n`` is None or at least the split's size. (The official harness draws
    ``num_eval_steps`` batches from a reshuffled loader at every evaluation.)"""
    if n is None or n >= len(split):
        return split
    idx = sorted(random.Random(seed).sample(range(len(split)), n))
    return Split([split.tokens[i] for i in idx], [split.labels[i] for i in idx],
                 None if split.tokens2 is None else [split.tokens2[i] for i in idx])
