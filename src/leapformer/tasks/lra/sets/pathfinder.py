"""LRA Pathfinder-32: the official release folder or the project's generator.

The ``lite`` profile generates 16x16 images (256 tokens; contour of 7 paddles,
markers 4 px apart: the 32x32 geometry halved) so that softmax trains in
minutes on a 2-core CPU (official 32x32 files given with ``data_dir`` keep
their 1024 tokens); ``paper`` is LRA's 32x32 ``curv_contour_length_14``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from leapformer.tasks.lra.batching import Split
from leapformer.tasks.lra.profile import LRAProfile
from leapformer.tasks.lra.sets import TaskData

PAIRED = False
PROFILES = {
    "paper": LRAProfile(max_length=1024, batch_size=128, lr=2e-4, steps=50_000,
                        eval_every=2_000, n_train=160_000, n_valid=20_000, n_test=20_000),
    "lite": LRAProfile(max_length=1024, batch_size=32, lr=1e-3, steps=600, eval_every=200,
                       warmup_steps=50, n_train=4_000, n_valid=400, n_test=400, image_size=16),
}
# generator geometry per image side: (contour_length, seed_distance)
GEOMETRY = {32: (14, 7.0), 16: (7, 4.0)}


def load(p: LRAProfile, data_dir: Path | None, seed: int, progress: bool = False) -> TaskData:
    from leapformer.data.pathfinder import generate_pathfinder, load_pathfinder_dir

    if data_dir is not None:
        images, labels = load_pathfinder_dir(data_dir)
        n = len(labels)
        cut1, cut2 = int(0.8 * n), int(0.9 * n)  # LRA splits the release 80/10/10
        parts = {"train": slice(0, cut1), "valid": slice(cut1, cut2), "test": slice(cut2, n)}
        raw = {k: (images[s], labels[s]) for k, s in parts.items()}
        source = str(data_dir)
    else:
        if p.image_size not in GEOMETRY:
            raise ValueError(f"image_size must be one of {sorted(GEOMETRY)} for generated "
                             f"Pathfinder, got {p.image_size}")
        contour, distance = GEOMETRY[p.image_size]
        sizes = {"train": p.n_train, "valid": p.n_valid, "test": p.n_test}
        raw = {k: generate_pathfinder(n, seed=seed * 3 + i, size=p.image_size,
                                      contour_length=contour, seed_distance=distance)
               for i, (k, n) in enumerate(sizes.items())}
        source = "generated"
    # pixel values 0..255 become ids 1..256 so that 0 stays the padding id
    splits = {k: Split([(torch.as_tensor(im).flatten().long() + 1).tolist() for im in ims],
                       [int(y) for y in labels]) for k, (ims, labels) in raw.items()}
    return TaskData(splits, 257, 2, source)
