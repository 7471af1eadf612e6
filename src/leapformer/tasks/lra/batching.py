"""Classification splits held as token lists, batched deterministically.

A :class:`Split` keeps each example's token ids (variable length) and label,
and for paired tasks (LRA Retrieval) a second sequence per example.
Batches are ``(inputs, labels)`` where ``inputs`` is a tuple of one (or two)
``[B, L]`` token tensors, so a model is called as ``model(*inputs)``.
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
    tokens2: list[list[int]] | None = None  # second sequence of paired examples

    def __post_init__(self):
        if len(self.tokens) != len(self.labels):
            raise ValueError(f"{len(self.tokens)} token sequences but {len(self.labels)} labels")
        if self.tokens2 is not None and len(self.tokens2) != len(self.labels):
            raise ValueError(f"{len(self.tokens2)} second sequences but {len(self.labels)} labels")
        if not self.tokens:
            raise ValueError("a split needs at least one example")

    @property
    def paired(self) -> bool:
        return self.tokens2 is not None

    def inputs(self, idx: Sequence[int], max_length: int) -> tuple[Tensor, ...]:
        """The padded token tensor(s) of examples ``idx``."""
        first = pad([self.tokens[j] for j in idx], max_length)
        if self.tokens2 is None:
            return (first,)
        return first, pad([self.tokens2[j] for j in idx], max_length)

    def __len__(self) -> int:
        return len(self.labels)

    def count_longer(self, max_length: int) -> int:
        """Examples with a sequence longer than ``max_length`` (cut when batched)."""
        seqs = zip(self.tokens, self.tokens2 or self.tokens)
        return sum(1 for a, b in seqs if len(a) > max_length or len(b) > max_length)

    @property
    def mean_length(self) -> float:
        n = sum(map(len, self.tokens)) + sum(map(len, self.tokens2 or ()))
        return n / (len(self.tokens) * (2 if self.paired else 1))


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
    """``get_batch(i) -> (inputs, labels [B])`` for micro-batch ``i``."""
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
        return (split.inputs(idx, max_length),
                torch.tensor([split.labels[j] for j in idx], dtype=torch.long))

    return get


def eval_batches(split: Split, batch_size: int, max_length: int):
    """Every example once, in order (sorted by length within the split is left to the caller)."""
    for start in range(0, len(split), batch_size):
        idx = range(start, min(start + batch_size, len(split)))
        yield (split.inputs(idx, max_length),
               torch.tensor([split.labels[j] for j in idx], dtype=torch.long))
