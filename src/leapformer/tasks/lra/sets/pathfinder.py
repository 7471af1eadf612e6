"""LRA Pathfinder-32: the official release folder or the project's generator.

The ``lite`` profile generates 16x16 images (256 tokens; contours of 4
paddles, seeds 4 px apart, one distractor) redrawn in three grey levels
(:func:`three_levels`: background, stroke, marker) so that a run takes minutes
on one CPU thread (official 32x32 files given with ``data_dir`` keep their 1024
tokens and grey levels); ``paper`` is LRA's 32x32 ``curv_contour_length_14``.
With the background as tokens, every mechanism sat at chance in the ``lite``
budget: ~220 identical background tokens drown the ~30 that matter, and a
randomly drawn position table cannot say which pixels are near. The ``lite``
profile therefore makes the background padding (``stand_in="three-level-masked"``),
starts the positions at a 2-D sin/cos code (``positions="sincos2d"``) and drops
dropout; each change alone left softmax at chance (docs/lra.md, "Tuning the lite
profile").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from leapformer.tasks.lra.batching import Split
from leapformer.tasks.lra.profile import LRAProfile
from leapformer.tasks.lra.sets import TaskData, paper_data

PAIRED = False
PROFILES = {
    "paper": paper_data("pathfinder", max_length=1024, n_train=160_000, n_valid=20_000,
                        n_test=20_000),
    # 16x16, contour of 4 paddles, 1 distractor, three grey levels (docs/lra.md, "Tuning
    # the lite profile"): the background is padding, positions start at a 2-D
    # sin/cos code, no dropout, CLS pooling (cosFormer normalises by the tensor length,
    # as the padding now sits inside the sequence)
    "lite": LRAProfile(max_length=1024, batch_size=32, lr=2e-3, steps=1_000, eval_every=100,
                       warmup_steps=50, n_train=25_000, n_valid=1_000, n_test=1_000,
                       image_size=16, stand_in="three-level-masked", positions="sincos2d",
                       dropout=0.0, pooling="cls", cosformer_length="padded"),
}
#: generator settings per image side (:func:`~leapformer.data.pathfinder.generate_pathfinder`);
#: 16 (``lite``): shorter contours and fewer distractors (docs/lra.md, "Tuning the lite profile")
GEOMETRY = {32: {"contour_length": 14, "seed_distance": 7.0},
            16: {"contour_length": 4, "seed_distance": 4.0, "num_distractors": 1}}
#: "three-level": redrawn by :func:`three_levels`; "three-level-masked": the same with
#: the background as the padding id 0 (masked in attention and pooling), so that only
#: the ~30 stroke and marker pixels are tokens
STAND_INS = (None, "three-level", "three-level-masked")
MARKER_LEVEL = 128


def three_levels(images: np.ndarray, markers: np.ndarray, radius: float = 1.5) -> np.ndarray:
    """Strokes (pixels >= 128, so a snake stays 8-connected) 255, pixels within
    ``radius`` of a marker centre (``markers [n, 2, (row, col)]``) :data:`MARKER_LEVEL`,
    the rest 0: three tokens instead of ~250 anti-aliased grey levels."""
    out = np.where(images >= 128, 255, 0).astype(np.uint8)
    rows, cols = np.indices(images.shape[1:])
    for k in range(markers.shape[1]):
        d = np.hypot(rows - markers[:, k, 0, None, None], cols - markers[:, k, 1, None, None])
        out[d <= radius] = MARKER_LEVEL
    return out


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
        if p.stand_in not in STAND_INS:
            raise ValueError(f"stand_in must be one of {STAND_INS} for Pathfinder, got "
                             f"{p.stand_in!r}")
        if p.image_size not in GEOMETRY:
            raise ValueError(f"image_size must be one of {sorted(GEOMETRY)} for generated "
                             f"Pathfinder, got {p.image_size}")
        sizes = {"train": p.n_train, "valid": p.n_valid, "test": p.n_test}
        raw = {k: generate_pathfinder(n, seed=seed * 3 + i, size=p.image_size,
                                      return_info=True, **GEOMETRY[p.image_size])
               for i, (k, n) in enumerate(sizes.items())}
        raw = {k: (three_levels(ims, info.markers) if p.stand_in else ims, y)
               for k, (ims, y, info) in raw.items()}
        source = "generated"
    # pixel values 0..255 become ids 1..256 so that 0 stays the padding id (the masked
    # stand-in keeps the background at 0: padding)
    masked = data_dir is None and p.stand_in == "three-level-masked"

    def ids(im) -> list[int]:
        px = torch.as_tensor(im).flatten().long()
        return (torch.where(px == 0, 0, px + 1) if masked else px + 1).tolist()

    splits = {k: Split([ids(im) for im in ims], [int(y) for y in labels])
              for k, (ims, labels) in raw.items()}
    return TaskData(splits, 257, 2, source)
