"""The LRA ListOps tokenizer (parentheses stripped) and padded batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from leapformer.data.listops.expression import (
    DIGITS,
    END,
    OPERATORS,
    PAD,
    PARENS,
    _check_int,
    _short,
    format_source,
)


class ListOpsBatch(NamedTuple):
    """``ids``: LongTensor ``[B, L]`` padded with ``pad_id`` (0); ``lengths``:
    LongTensor ``[B]``, tokens before the padding."""

    ids: Tensor
    lengths: Tensor

    def padding_mask(self) -> Tensor:
        """Bool ``[B, L]``, True = padding (the ``key_padding_mask`` convention)."""
        positions = torch.arange(self.ids.shape[1], device=self.ids.device)
        return positions[None, :] >= self.lengths[:, None]


class ListOpsTokenizer:
    """The LRA ListOps vocabulary with parentheses stripped.

    ids: ``0`` pad, ``1-4`` ``[MIN [MAX [MED [SM``, ``5`` ``]``, ``6-15`` digits 0-9
    (``vocab_size`` 16).
    """

    pad_id = 0
    tokens = (PAD,) + OPERATORS + (END,) + DIGITS

    def __init__(self):
        self._ids = {tok: i for i, tok in enumerate(self.tokens)}
        del self._ids[PAD]

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, source: str) -> list[int]:
        """Ids of the tokens of ``source`` (official layout or bare), parentheses dropped."""
        if not isinstance(source, str):
            raise TypeError(f"source must be a str, got {type(source).__name__}")
        ids = self._ids
        try:
            return [ids[tok] for tok in source.split() if tok not in PARENS]
        except KeyError as err:
            raise ValueError(f"unknown token {err.args[0]!r} in source {_short(source)}") from None

    def decode(self, ids: Sequence[int] | Tensor, *, official: bool = False) -> str:
        """Tokens of ``ids`` (1-D) joined by spaces, pad ids skipped: ``"[MAX 2 9 ]"``.

        ``official=True`` rebuilds the LRA layout ``"( ( ( [MAX 2 ) 9 ) ] )"`` (the
        ids must then form one complete expression, else ``ValueError``).
        """
        if isinstance(ids, Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids must be 1-D, got shape {list(ids.shape)}")
            ids = ids.tolist()
        words = []
        for i in ids:
            if not isinstance(i, (int, np.integer)) or not 0 <= i < len(self.tokens):
                raise ValueError(f"ids holds {i!r}, not an id in [0, {len(self.tokens) - 1}]")
            if i != self.pad_id:
                words.append(self.tokens[i])
        return format_source(words) if official else " ".join(words)

    def batch_encode(self, sources: Sequence[str], *, max_length: int | None = None,
                     truncate: bool = False, pad_to: int | str | None = None) -> ListOpsBatch:
        """Encode and pad a batch: ``ids [B, L]`` and ``lengths [B]`` (LongTensors).

        ``max_length``: longest allowed sequence; a longer one raises ``ValueError``
        unless ``truncate=True``, which keeps its first ``max_length`` ids (as LRA
        does). ``L`` is the longest sequence, rounded up by ``pad_to``: an int
        ``m`` (a multiple of ``m``), ``"pow2"`` (a power of two, LRA's 2000 -> 2048)
        or ``"max_length"`` (exactly ``max_length``, then rounded by nothing else).
        """
        if isinstance(sources, str) or not isinstance(sources, Sequence):
            raise TypeError(f"sources must be a sequence of str, got {type(sources).__name__}")
        if len(sources) == 0:
            raise ValueError("sources is empty")
        if max_length is not None:
            _check_int("max_length", max_length, 1)
        if truncate and max_length is None:
            raise ValueError("truncate=True needs max_length")
        encoded = [self.encode(s) for s in sources]
        for b, seq in enumerate(encoded):
            if max_length is not None and len(seq) > max_length:
                if not truncate:
                    raise ValueError(f"sources[{b}] has {len(seq)} tokens > max_length="
                                     f"{max_length} (pass truncate=True to cut it)")
                encoded[b] = seq[:max_length]
        longest = max(len(seq) for seq in encoded)
        if pad_to is None:
            width = longest
        elif pad_to == "pow2":
            width = 1 << max(0, longest - 1).bit_length()
        elif pad_to == "max_length":
            if max_length is None:
                raise ValueError("pad_to='max_length' needs max_length")
            width = max_length
        elif isinstance(pad_to, int) and not isinstance(pad_to, bool):
            if pad_to < 1:
                raise ValueError(f"pad_to must be >= 1, got {pad_to}")
            width = -(-longest // pad_to) * pad_to
        else:
            raise ValueError(f"pad_to must be None, a positive int, 'pow2' or 'max_length', "
                             f"got {pad_to!r}")
        ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        for b, seq in enumerate(encoded):
            if seq:
                ids[b, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        lengths = torch.tensor([len(seq) for seq in encoded], dtype=torch.long)
        return ListOpsBatch(ids, lengths)
