"""IMDB movie reviews (LRA Text) from the official ``aclImdb`` folder, byte-level.

**Layout** (the ``aclImdb_v1.tar.gz`` release of Maas et al., 2011)::

    aclImdb/train/pos/*.txt   aclImdb/train/neg/*.txt
    aclImdb/test/pos/*.txt    aclImdb/test/neg/*.txt

one review per UTF-8 file (other files and folders, e.g. ``train/unsup`` and
the ``*.feat`` files, are ignored). ``root`` may be the ``aclImdb`` folder or
the folder that holds it. Labels: ``neg`` = 0, ``pos`` = 1. Files are read in
sorted name order, so the result does not depend on the file system.

**Tokens**: LRA's byte-level encoding (:mod:`leapformer.data.bytes`): the UTF-8
bytes of a review, id = byte + 1, 0 = padding, the first ``max_length`` bytes
kept. The text is used as it is (LRA keeps the ``<br />`` tags too).

Missing or empty folders and files that are not UTF-8 raise errors that name
the path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from leapformer.data.bytes import encode_bytes

logger = logging.getLogger(__name__)

LABELS = ("neg", "pos")
SPLITS = ("train", "test")


def imdb_root(root: str | Path) -> Path:
    """The ``aclImdb`` folder: ``root`` itself or ``root/aclImdb``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"IMDB folder {root} does not exist")
    if not (root / "train").is_dir() and (root / "aclImdb").is_dir():
        root = root / "aclImdb"
    return root


def read_imdb_split(root: str | Path, split: str) -> tuple[list[bytes], list[int]]:
    """Raw UTF-8 bytes and labels (neg 0, pos 1) of ``split`` (``train`` or ``test``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = imdb_root(root)
    texts: list[bytes] = []
    labels: list[int] = []
    for label, name in enumerate(LABELS):
        folder = root / split / name
        if not folder.is_dir():
            raise FileNotFoundError(f"IMDB folder {folder} is missing (expected the aclImdb "
                                    f"layout {split}/pos, {split}/neg with one review per .txt)")
        files = sorted(folder.glob("*.txt"))
        if not files:
            raise ValueError(f"IMDB folder {folder} holds no .txt review")
        for f in files:
            raw = f.read_bytes()
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{f}: not UTF-8 text (byte {err.start})") from None
            texts.append(raw)
            labels.append(label)
    logger.info("read %d IMDB %s reviews from %s", len(texts), split, root)
    return texts, labels


def load_imdb(root: str | Path, max_length: int
              ) -> dict[str, tuple[list[np.ndarray], list[int]]]:
    """``{"train": (ids, labels), "test": (ids, labels)}``, byte ids cut to ``max_length``."""
    out = {}
    for split in SPLITS:
        texts, labels = read_imdb_split(root, split)
        out[split] = ([encode_bytes(t, max_length) for t in texts], labels)
    return out
