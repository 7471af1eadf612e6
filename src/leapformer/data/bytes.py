"""Byte-level tokens of the LRA text tasks (Text, Retrieval).

LRA encodes text with ``tfds.deprecated.text.ByteTextEncoder``: the UTF-8
bytes of the text, id = byte + 1, so that 0 stays the padding id (vocabulary
257). Sequences are held as ``int16`` NumPy arrays (2 bytes per id instead of
a Python list's 8), which :class:`~leapformer.tasks.lra.batching.Split` pads like
lists; the official AAN files hold ~1.2 billion bytes of documents after
truncation to 4000 bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAD_ID = 0
VOCAB_SIZE = 257


def encode_bytes(text: str | bytes, max_length: int | None = None) -> np.ndarray:
    """Ids (``int16``, 1-256) of the UTF-8 bytes of ``text``, the first ``max_length`` kept."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if max_length is not None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        data = data[:max_length]
    return np.frombuffer(data, dtype=np.uint8).astype(np.int16) + 1


def decode_bytes(ids: Sequence[int] | np.ndarray) -> str:
    """Text of byte ids (pad ids skipped; an incomplete UTF-8 character is replaced)."""
    arr = np.asarray(ids, dtype=np.int64)
    if arr.ndim != 1 or (arr.size and (arr.min() < 0 or arr.max() >= VOCAB_SIZE)):
        raise ValueError(f"ids must be a 1-D sequence of ids in [0, {VOCAB_SIZE - 1}]")
    arr = arr[arr != PAD_ID] - 1
    return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


def cut_utf8(text: str, n_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding has at most ``n_bytes`` bytes."""
    return text.encode("utf-8")[:n_bytes].decode("utf-8", errors="ignore")
