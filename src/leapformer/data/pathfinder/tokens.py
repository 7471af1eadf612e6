"""Pathfinder pixel tokens.

**Tokens** (:func:`pathfinder_tokens`): the pixels in raster order, values
0-255 used directly as ids (vocabulary 256), as in LRA.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

def pathfinder_tokens(images: np.ndarray | Tensor) -> Tensor:
    """LRA's input: the pixels of each image in raster order as ids 0-255.

    ``images``: ``[n, height, width]`` uint8 (or another integer type holding
    values 0-255), numpy or torch. Returns a LongTensor ``[n, height * width]``
    (``[n, 1024]`` for Pathfinder-32); the vocabulary is :data:`PIXEL_VOCAB_SIZE`.
    """
    if isinstance(images, Tensor):
        arr = images.detach().cpu()
        if arr.dtype.is_floating_point or arr.dtype.is_complex or arr.dtype == torch.bool:
            raise TypeError(f"images must hold integers (pixel values), got {arr.dtype}")
        arr = arr.numpy()
    elif isinstance(images, np.ndarray):
        arr = images
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"images must hold integers (pixel values), got {arr.dtype}")
    else:
        raise TypeError("images must be a numpy array or a torch tensor, "
                        f"got {type(images).__name__}")
    if arr.ndim != 3:
        raise ValueError(f"images must be [n, height, width], got shape {list(arr.shape)}")
    if arr.dtype != np.uint8 and arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"pixel values must be in [0, 255], got [{arr.min()}, {arr.max()}]")
    return torch.from_numpy(arr.reshape(arr.shape[0], -1).astype(np.int64))
