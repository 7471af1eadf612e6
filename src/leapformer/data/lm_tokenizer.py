"""Tokenizers for language modelling: byte-level BPE, and words (WikiText).

Both kinds share one interface (:class:`LMTokenizer`), so the trainer and the
evaluator never ask which one they hold:

- ``encode(text) -> list[int]``, ``decode(ids) -> str``;
- ``vocab_size``, ``pad_id`` = 0, ``eos_id`` = 1, ``unk_id`` = 2
  (symbols ``<pad>``, ``</s>``, ``<unk>``);
- ``save(path)`` / ``LMTokenizer.load(path)``: one JSON file (written
  atomically), and ``to_dict()`` / ``LMTokenizer.from_dict()`` for keeping the
  tokenizer inside a checkpoint.

**``</s>`` is the line break.** As in fairseq, where every line of a corpus
ends with ``</s>`` (``fairseq-preprocess`` appends it to each line, after BPE
when there is one), ``encode`` turns each ``"\\n"`` into ``</s>`` and encodes the
text between line breaks on its own; ``decode`` turns ``</s>`` back into
``"\\n"``. A text ending with a line break ends with ``</s>``; a prompt
without one does not (so a model continues the line). A blank line is a lone
``</s>``.

- :func:`train_bpe` / :class:`BPETokenizer`: byte-level BPE (GPT-2 style, the
  HuggingFace ``tokenizers`` library): the 256 bytes are all in the vocabulary,
  so every text encodes without ``<unk>`` and ``decode(encode(text)) == text``
  exactly, for any Unicode (no normalisation, no added prefix space). A literal
  ``"</s>"`` inside the text is ordinary text here (encoded as bytes), so even
  it round-trips. ``<pad>`` ids are dropped by ``decode``.
- :class:`WordTokenizer`: a :class:`~leapformer.data.wikitext.WordVocab` behind
  the same interface, fairseq's word-level reading of a text: ``\\r\\n`` and a
  lone ``\\r`` are line breaks too (Python's universal newlines, which fairseq
  reads files with), each line is split on whitespace, unknown words become
  ``<unk>``, and a ``"</s>"`` word is ``</s>``. For a text ending with a line
  break (as the WikiText files do), ``encode(text)`` equals
  ``vocab.encode(read_wikitext_file(path)[0])``. ``decode`` joins words with one
  space (whitespace is not kept).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from leapformer._io import atomic_write_text
from leapformer.data.wikitext import EOS, PAD, SPECIALS, UNK, WordVocab

logger = logging.getLogger(__name__)

FORMAT = "leapformer-lm-tokenizer"
N_BYTES = 256
_ENCODE_CHUNK = 8192  # lines per encode_batch call


def _text_lines(texts: str | Iterable[str]) -> Iterator[str]:
    """The non-empty lines of one text or of several."""
    if isinstance(texts, str):
        texts = (texts,)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
        for line in text.split("\n"):
            if line:
                yield line


def _as_id_list(ids, vocab_size: int) -> list[int]:
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"decode takes ids, got {type(ids).__name__}")
    arr = np.asarray(ids)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.ndim > 1:
        raise ValueError(f"decode takes one sequence of ids (1-D), got shape {tuple(arr.shape)}")
    out = arr.astype(np.int64).reshape(-1).tolist()
    bad = [i for i in out if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"ids {bad[:5]} are outside the vocabulary (size {vocab_size})")
    return out


def _split_at(ids: list[int], sep: int) -> list[list[int]]:
    pieces, current = [], []
    for i in ids:
        if i == sep:
            pieces.append(current)
            current = []
        else:
            current.append(i)
    pieces.append(current)
    return pieces


class LMTokenizer(ABC):
    """Text <-> ids for language modelling; ``</s>`` stands for ``"\\n"``.

    Subclasses: :class:`BPETokenizer`, :class:`WordTokenizer`. Use
    :meth:`load` / :meth:`from_dict` to get back whichever was saved.
    """

    kind: ClassVar[str] = ""
    pad_id: ClassVar[int] = 0
    eos_id: ClassVar[int] = 1
    unk_id: ClassVar[int] = 2

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of token ids."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""

    @abstractmethod
    def decode(self, ids) -> str:
        """Text of token ids."""

    def encode_array(self, text: str) -> np.ndarray:
        """``encode(text)`` as a 1-D ``int64`` array (a token stream)."""
        return np.asarray(self.encode(text), dtype=np.int64)

    @abstractmethod
    def _payload(self) -> dict:
        """The subclass's part of :meth:`to_dict`."""

    def to_dict(self) -> dict:
        """A JSON-able description (``LMTokenizer.from_dict`` rebuilds it)."""
        return {"format": FORMAT, "version": 1, "kind": self.kind, **self._payload()}

    @staticmethod
    def from_dict(data: dict, where: str = "tokenizer") -> LMTokenizer:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{where}: not a {FORMAT} object")
        if data.get("version") != 1:
            raise ValueError(f"{where}: unsupported version {data.get('version')!r} (known: 1)")
        kinds = {cls.kind: cls for cls in (BPETokenizer, WordTokenizer)}
        cls = kinds.get(data.get("kind"))
        if cls is None:
            raise ValueError(f"{where}: unknown tokenizer kind {data.get('kind')!r} "
                             f"(known: {', '.join(kinds)})")
        return cls._from_payload(data, where)

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as one JSON file, atomically."""
        return atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False) + "\n")

    @staticmethod
    def load(path: str | Path) -> LMTokenizer:
        """The tokenizer saved at ``path`` (a :class:`BPETokenizer` or :class:`WordTokenizer`)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"tokenizer file {path} not found") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a JSON file ({err})") from None
        return LMTokenizer.from_dict(data, str(path))


# --------------------------------------------------------------------------- BPE


def _require_tokenizers():
    try:
        import tokenizers
    except ModuleNotFoundError:
        raise ModuleNotFoundError("byte-level BPE needs the PyPI package 'tokenizers' "
                                  "(pip install 'tokenizers>=0.20')") from None
    return tokenizers


class BPETokenizer(LMTokenizer):
    """Byte-level BPE (a ``tokenizers.Tokenizer``); make one with :func:`train_bpe`."""

    kind = "bpe"

    def __init__(self, tokenizer):
        for i, s in enumerate(SPECIALS):
            if tokenizer.token_to_id(s) != i:
                raise ValueError(f"the BPE tokenizer must have {s!r} as id {i}, "
                                 f"has {tokenizer.token_to_id(s)!r}")
        # special-token strings inside a text are plain text: any text round-trips
        tokenizer.encode_special_tokens = True
        self._tok = tokenizer
        self._size = tokenizer.get_vocab_size()

    @property
    def tokenizer(self):
        """The wrapped ``tokenizers.Tokenizer``."""
        return self._tok

    @property
    def vocab_size(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"

    def _encode_lines(self, lines: list[str]) -> list[list[int]]:
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        out: list[list[int]] = []
        for a in range(0, len(lines), _ENCODE_CHUNK):
            out.extend(e.ids for e in encode(lines[a:a + _ENCODE_CHUNK],
                                             add_special_tokens=False))
        return out

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        lines = text.split("\n")
        ids: list[int] = []
        for k, piece in enumerate(self._encode_lines(lines)):
            if k:
                ids.append(self.eos_id)
            ids.extend(piece)
        return ids

    def decode(self, ids) -> str:
        ids = [i for i in _as_id_list(ids, self._size) if i != self.pad_id]
        return "\n".join(self._tok.decode(piece, skip_special_tokens=False) if piece else ""
                         for piece in _split_at(ids, self.eos_id))

    def _payload(self) -> dict:
        return {"tokenizer": json.loads(self._tok.to_str())}

    @classmethod
    def _from_payload(cls, data: dict, where: str) -> BPETokenizer:
        tokenizers = _require_tokenizers()
        try:
            tok = tokenizers.Tokenizer.from_str(json.dumps(data["tokenizer"]))
        except KeyError:
            raise ValueError(f"{where}: a 'bpe' tokenizer needs a 'tokenizer' entry") from None
        except Exception as err:  # noqa: BLE001 - tokenizers raises plain Exception
            raise ValueError(f"{where}: unreadable tokenizers JSON ({err})") from None
        try:
            return cls(tok)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None


def train_bpe(texts: str | Iterable[str], vocab_size: int, *, min_frequency: int = 2,
              show_progress: bool = False) -> BPETokenizer:
    """Train a byte-level BPE tokenizer on ``texts`` (one str or several).

    The vocabulary: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, the 256 bytes,
    then merges (pairs seen at least ``min_frequency`` times) up to
    ``vocab_size`` symbols in all (fewer when the text has no more pairs to
    merge). Texts are cut at line breaks, and pieces never cross one (as
    :meth:`BPETokenizer.encode` sees them). Deterministic for a given input.
    """
    tokenizers = _require_tokenizers()
    from tokenizers import decoders, models, pre_tokenizers, trainers

    smallest = len(SPECIALS) + N_BYTES
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < smallest:
        raise ValueError(f"vocab_size must be an int >= {smallest} (3 specials + 256 bytes), "
                         f"got {vocab_size!r}")
    if not isinstance(min_frequency, int) or min_frequency < 1:
        raise ValueError(f"min_frequency must be an int >= 1, got {min_frequency!r}")
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=show_progress)
    n_lines = 0

    def lines():
        nonlocal n_lines
        for line in _text_lines(texts):
            n_lines += 1
            yield line

    tok.train_from_iterator(lines(), trainer=trainer)
    if n_lines == 0:
        raise ValueError("train_bpe: the texts hold no characters to train on")
    out = BPETokenizer(tok)
    logger.info("trained byte-level BPE on %d lines: %d symbols (asked for %d)", n_lines,
                out.vocab_size, vocab_size)
    return out


# --------------------------------------------------------------------------- words


class WordTokenizer(LMTokenizer):
    """A :class:`WordVocab` behind the :class:`LMTokenizer` interface."""

    kind = "word"

    def __init__(self, vocab: WordVocab):
        if not isinstance(vocab, WordVocab):
            raise TypeError(f"WordTokenizer wraps a WordVocab, got {type(vocab).__name__}")
        self.vocab = vocab

    @classmethod
    def build(cls, texts: str | Iterable[str], min_count: int = 1,
              max_size: int | None = None) -> WordTokenizer:
        """A word vocabulary from ``texts`` (every line break counts as one ``</s>``)."""
        if isinstance(texts, str):
            texts = (texts,)

        def tokens():
            for text in texts:
                for k, line in enumerate(_normalise_newlines(text).split("\n")):
                    if k:
                        yield EOS
                    yield from line.split()
        return cls(WordVocab.build(tokens(), min_count=min_count, max_size=max_size))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={self.vocab_size})"

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        index = self.vocab.index
        ids: list[int] = []
        for k, line in enumerate(_normalise_newlines(text).split("\n")):
            if k:
                ids.append(self.eos_id)
            ids.extend(index(w) for w in line.split())
        return ids

    def decode(self, ids) -> str:
        symbols = self.vocab.symbols
        ids = [i for i in _as_id_list(ids, len(symbols)) if i != self.pad_id]
        return "\n".join(" ".join(symbols[i] for i in piece)
                         for piece in _split_at(ids, self.eos_id))

    def _payload(self) -> dict:
        return {"vocab": self.vocab.to_dict()}

    @classmethod
    def _from_payload(cls, data: dict, where: str) -> WordTokenizer:
        if "vocab" not in data:
            raise ValueError(f"{where}: a 'word' tokenizer needs a 'vocab' entry")
        return cls(WordVocab.from_dict(data["vocab"], where))


def _normalise_newlines(text: str) -> str:
    """Python's universal newlines (what fairseq reads files with): ``\\r\\n`` and ``\\r`` -> ``\\n``."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


__all__ = ["EOS", "PAD", "UNK", "BPETokenizer", "LMTokenizer", "WordTokenizer", "train_bpe"]
