"""Classification splits held as token lists, batched deterministically.

A :class:`Split` keeps each example's token ids (variable length) and label;
:func:`batch_fn` returns ``get_batch(i)`` for the training loop: micro-batch
``i`` is drawn from a permutation seeded by ``(seed, epoch)``, so batch ``i``
is the same whether a run is resumed or not. Batches are padded to their
longest sequence (pad id 0), not to the task maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Split:
    """Token id lists and integer labels of one split."""

    tokens: list[list[int]]
    labels: list[int]

    def __post_init__(self):
        if len(self.tokens) != len(self.labels):
            raise ValueError(f"{len(self.tokens)} token sequences but {len(self.labels)} labels")
        if not self.tokens:
            raise ValueError("a split needs at least one example")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def mean_length(self) -> float:
        return sum(map(len, self.tokens)) / len(self.tokens)


def pad(seqs: Sequence[Sequence[int]], max_length: int, pad_id: int = 0) -> Tensor:
    """``[B, L]`` LongTensor, each sequence truncated to ``max_length`` and right-padded."""
    L = min(max(map(len, seqs)), max_length)
    out = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        s = s[:L]
        out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def batch_fn(split: Split, batch_size: int, max_length: int, seed: int
             ) -> Callable[[int], tuple[Tensor, Tensor]]:
    """``get_batch(i) -> (tokens [B, L], labels [B])`` for micro-batch ``i``."""
    n = len(split)
    cache: dict[int, Tensor] = {}

    def perm(epoch: int) -> Tensor:
        if epoch not in cache:
            cache.clear()
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            cache[epoch] = torch.randperm(n, generator=g)
        return cache[epoch]

    def get(i: int):
        idx = []
        start = i * batch_size
        for pos in range(start, start + batch_size):
            idx.append(int(perm(pos // n)[pos % n]))
        return (pad([split.tokens[j] for j in idx], max_length),
                torch.tensor([split.labels[j] for j in idx], dtype=torch.long))

    return get


def eval_batches(split: Split, batch_size: int, max_length: int):
    """Every example once, in order (sorted by length within the split is left to the caller)."""
    for start in range(0, len(split), batch_size):
        sl = slice(start, start + batch_size)
        yield pad(split.tokens[sl], max_length), torch.tensor(split.labels[sl], dtype=torch.long)
