"""LRA Image: sequential greyscale CIFAR-10 (or IDX files), else generated shapes.

Each image is read as its 1,024 pixels (32x32, raster order); a token is the
pixel value + 1 (ids 1-256, 0 stays the padding id: vocabulary 257); 10 classes.

``data_dir`` may be ``cifar-10-batches-py/`` (the official python release),
the folder that contains it, or a folder of MNIST-style IDX files (e.g.
``/usr/share/datasets/fashion-mnist`` from Debian's ``dataset-fashion-mnist``;
28x28 images are zero-padded, centred, to 32x32). See
:mod:`leapformer.data.image`.

Splits of official data, as LRA's input pipeline (``train[:90%]``,
``train[90%:]``, ``test``): train = the first 90% of the official training
set, valid = its last 10%, test = the official test set; for CIFAR-10 that is
45,000 / 5,000 / 10,000 (valid = the second half of ``data_batch_5``). LRA's
tfds copy of CIFAR-10 stores the training set in a shuffled order, so its 5,000
validation images are a different (same-size) subset. The profile's
``n_train`` / ``n_valid`` / ``n_test`` and ``image_size`` shape only the
generated stand-in; official data is used whole, at 32x32.

Profiles: ``paper`` = the published settings (length 1024, batch 256, lr 1e-4,
30k steps), the stand-in at 32x32 sized as CIFAR-10's splits. ``lite``
generates 16x16 images (256 tokens), as the Pathfinder ``lite`` profile does,
in the ``"plain"`` style (``stand_in``: one white shape on black, no clutter,
noise or random contrast; docs/lra.md, "Tuning the lite profile"), so that
softmax learns it in minutes on one CPU thread; with ``data_dir`` it reads the
official 32x32 images (1024 tokens).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leapformer.tasks.lra.batching import Split
from leapformer.tasks.lra.profile import LRAProfile
from leapformer.tasks.lra.sets import TaskData, paper_data

PAIRED = False
VOCAB_SIZE = 257   # pixel values 0-255 as ids 1-256, 0 = padding
NUM_CLASSES = 10
VALID_FRACTION = 0.1
PROFILES = {
    # length 1024 (32 x 32); stand-in sized as CIFAR-10's splits
    "paper": paper_data("image", max_length=1024, n_train=45_000, n_valid=5_000,
                        n_test=10_000),
    # generated 16x16 shapes (256 tokens) so softmax trains in minutes on 2 CPU cores;
    # official 32x32 data given with data_dir keeps its 1024 tokens
    # plain white-on-black shapes, larger; 600 steps at lr 2e-3 (docs/lra.md, "Tuning the
    # lite profile")
    "lite": LRAProfile(max_length=1024, batch_size=32, lr=2e-3, steps=600, eval_every=100,
                       warmup_steps=50, n_train=20_000, n_valid=1_000, n_test=1_000,
                       image_size=16, stand_in="plain"),
}


def image_tokens(images: np.ndarray) -> list[list[int]]:
    """Raster-order pixel values + 1 of ``uint8 [n, h, w]`` images, one list per image."""
    return (images.reshape(len(images), -1).astype(np.int64) + 1).tolist()


def load(p: LRAProfile, data_dir: Path | None, seed: int, progress: bool = False) -> TaskData:
    from leapformer.data.image import (
        detect_layout,
        generate_shapes,
        load_cifar10_batches,
        load_idx_folder,
    )

    if data_dir is not None:
        kind, folder = detect_layout(data_dir)
        loader = load_cifar10_batches if kind == "cifar10" else load_idx_folder
        (train_x, train_y), test = loader(folder)
        if len(train_y) < 2:
            raise ValueError(f"{folder}: at least 2 training images are needed "
                             f"(to split off a validation set), found {len(train_y)}")
        cut = len(train_y) - max(1, round(VALID_FRACTION * len(train_y)))
        raw = {"train": (train_x[:cut], train_y[:cut]),
               "valid": (train_x[cut:], train_y[cut:]), "test": test}
        name = "CIFAR-10 python batches" if kind == "cifar10" else "IDX files"
        source = f"{folder} ({name}, greyscale 32x32)"
    else:
        sizes = {"train": p.n_train, "valid": p.n_valid, "test": p.n_test}
        style = p.stand_in or "cluttered"  # lite: "plain" (docs/lra.md)
        raw = {k: generate_shapes(n, seed=seed * 3 + i, size=p.image_size, style=style)
               for i, (k, n) in enumerate(sizes.items())}
        source = ("generated shapes (stand-in)" if style == "cluttered"
                  else f"generated {style} shapes (stand-in)")
    splits = {k: Split(image_tokens(x), y.tolist()) for k, (x, y) in raw.items()}
    return TaskData(splits, VOCAB_SIZE, NUM_CLASSES, source)
