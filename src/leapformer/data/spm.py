"""SentencePiece subword tokenizers for translation (trained in memory).

:func:`train_spm` trains a unigram (default) or BPE model from an iterable of
sentences entirely in memory (``sentence_iterator`` in, ``model_writer`` out:
no file is written anywhere, nothing is left in the working folder) and
returns a :class:`SpmTokenizer`. The trainer's own log is switched off
(``minloglevel=2``, and its stderr goes to ``os.devnull``); this module logs a
summary with :mod:`logging` instead.

Special ids are fixed for every model this module trains, so a model built on
one tokenizer can be fed by another of the same vocabulary size:

=====  ==========  ==================================================
id     piece       use
=====  ==========  ==================================================
0      ``<pad>``   padding (:data:`PAD_ID`); never produced by encode
1      ``<unk>``   unknown (:data:`UNK_ID`)
2      ``<s>``     beginning of sentence (:data:`BOS_ID`)
3      ``</s>``    end of sentence (:data:`EOS_ID`)
=====  ==========  ==================================================

Translation uses **separate** source and target vocabularies (one model per
language): English and Japanese share almost no characters (Latin script vs
kana/kanji), so a joint model would split its vocabulary between two disjoint
symbol sets and gain nothing from sharing, while each side's embedding table
would carry the other side's unused rows. Train one model per side with
:func:`train_spm` (for Japanese, a ``character_coverage`` below 1, e.g. the
default 0.9995, maps rare kanji to ``<unk>`` as SentencePiece recommends;
English can use 1.0).

Training is deterministic for a given input and options (``num_threads=1``
by default; SentencePiece's unigram trainer also gives identical models with
more threads for the inputs tested here).
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from leapformer._io import atomic_open

logger = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MODEL_TYPES = ("unigram", "bpe")

__all__ = ["BOS_ID", "EOS_ID", "MODEL_TYPES", "PAD_ID", "UNK_ID", "SpmTokenizer", "train_spm"]


def _spm():
    try:
        import sentencepiece
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError("leapformer.data.spm needs the 'sentencepiece' package "
                          "(pip install sentencepiece)") from err
    return sentencepiece


class SpmTokenizer:
    """A SentencePiece model: ``encode`` text to ids, ``decode`` ids to text.

    Built from the serialized model (``model_proto`` bytes); ``save``/``load``
    write and read the standard ``.model`` file (readable by any SentencePiece
    tool). Two tokenizers are equal when their serialized models are.
    """

    def __init__(self, model_proto: bytes):
        if not isinstance(model_proto, (bytes, bytearray)) or not model_proto:
            raise TypeError("model_proto must be the non-empty bytes of a SentencePiece model, "
                            f"got {type(model_proto).__name__}")
        self._proto = bytes(model_proto)
        sp = _spm().SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(self._proto)
        except (RuntimeError, OSError) as err:
            raise ValueError(f"model_proto is not a SentencePiece model: {err}") from None
        self._sp = sp
        ids = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(f"a SentencePiece model with pad/unk/bos/eos ids "
                             f"{(PAD_ID, UNK_ID, BOS_ID, EOS_ID)} is required, got {ids}")

    # -- files ---------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> SpmTokenizer:
        """Read a ``.model`` file written by :meth:`save` (or ``spm_train`` with these ids)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no SentencePiece model at {path}")
        data = path.read_bytes()
        if not data:
            raise ValueError(f"{path}: empty file, not a SentencePiece model")
        try:
            return cls(data)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def save(self, path: str | Path) -> Path:
        """Write the model to ``path`` atomically (its folder is created); returns the path."""
        with atomic_open(path) as fh:
            fh.write(self._proto)
        return Path(path)

    @property
    def model_proto(self) -> bytes:
        """The serialized model."""
        return self._proto

    # -- vocabulary ----------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __len__(self) -> int:
        return self.vocab_size

    def id_to_piece(self, i: int) -> str:
        self._check_ids([i])
        return self._sp.id_to_piece(i)

    def piece_to_id(self, piece: str) -> int:
        """The id of ``piece`` (``UNK_ID`` if it is not in the vocabulary)."""
        return self._sp.piece_to_id(piece)

    def __eq__(self, other) -> bool:
        return isinstance(other, SpmTokenizer) and other._proto == self._proto

    def __hash__(self) -> int:
        return hash(self._proto)

    def __repr__(self) -> str:
        return f"SpmTokenizer(vocab_size={self.vocab_size})"

    # -- encode / decode -----------------------------------------------------
    def encode(self, text: str | Sequence[str], *, add_bos: bool = False,
               add_eos: bool = False) -> list[int] | list[list[int]]:
        """Ids of ``text`` (a string -> ``list[int]``; a list of strings -> one list each)."""
        if isinstance(text, str):
            return self._sp.encode(text, add_bos=add_bos, add_eos=add_eos)
        if not isinstance(text, Sequence) or isinstance(text, (bytes, bytearray)):
            raise TypeError(f"text must be a str or a list of str, got {type(text).__name__}")
        for i, t in enumerate(text):
            if not isinstance(t, str):
                raise TypeError(f"text[{i}] must be a str, got {type(t).__name__}")
        return self._sp.encode(list(text), add_bos=add_bos, add_eos=add_eos)

    def encode_pieces(self, text: str) -> list[str]:
        """The subword pieces of ``text`` (for inspection)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._sp.encode(text, out_type=str)

    def _check_ids(self, ids: Sequence[int]) -> None:
        V = self.vocab_size
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < V:
                raise ValueError(f"token id {i!r} is not an int in [0, vocab_size={V})")

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (a list of ints or a 1-D tensor). ``<pad>``, ``<s>`` and
        ``</s>`` are dropped; decoding stops at nothing (cut hypotheses at EOS
        before decoding if the ids run past it)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise TypeError(f"ids must be a list of token ids, got {type(ids).__name__}")
        ids = list(ids)
        self._check_ids(ids)
        return self._sp.decode([i for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)])

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]


def train_spm(texts: Iterable[str], vocab_size: int, model_type: str = "unigram", *,
              character_coverage: float = 0.9995, max_sentence_length: int = 4192,
              num_threads: int = 1, byte_fallback: bool = False,
              hard_vocab_limit: bool = True, **options) -> SpmTokenizer:
    """Train a SentencePiece model on ``texts`` (one sentence each) in memory.

    ``vocab_size`` counts the four special pieces (ids 0-3, see the module
    docstring). ``model_type``: ``"unigram"`` or ``"bpe"``. With
    ``hard_vocab_limit=False`` the vocabulary may come out smaller when the
    text is too small for ``vocab_size`` (otherwise that is a ``ValueError``).
    Other keyword ``options`` go to ``SentencePieceTrainer`` unchanged (its
    TrainerSpec field names); the special-piece ids cannot be overridden.
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be an iterable of sentences (str), not a single string")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 5:
        raise ValueError(f"vocab_size must be an int >= 5 (4 special pieces + 1), "
                         f"got {vocab_size!r}")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    if not 0 < character_coverage <= 1:
        raise ValueError(f"character_coverage must be in (0, 1], got {character_coverage}")
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive int, got {num_threads!r}")
    fixed = {"pad_id", "unk_id", "bos_id", "eos_id", "model_prefix", "input",
             "sentence_iterator", "model_writer"}
    clash = sorted(fixed & set(options))
    if clash:
        raise ValueError(f"train_spm sets {clash} itself; remove them from the options")
    sentences = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        if "\n" in t or "\r" in t:
            raise ValueError(f"texts[{i}] holds a line break; give one sentence per item")
        if t.strip():
            sentences.append(t)
    if not sentences:
        raise ValueError("texts holds no non-empty sentence to train on")
    options.setdefault("minloglevel", 2)  # the trainer's own INFO/WARNING lines: off
    out = io.BytesIO()
    spm = _spm()
    try:
        sys.stderr.fileno()
        redirect = True
    except (AttributeError, OSError, ValueError):  # e.g. pytest's capsys: no descriptor
        redirect = False  # sentencepiece's log redirect needs one; minloglevel still quiets it
    try:
        with open(os.devnull, "w") as quiet:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=out,
                **({"logstream": quiet} if redirect else {}),
                vocab_size=vocab_size, model_type=model_type,
                character_coverage=character_coverage,
                max_sentence_length=max_sentence_length, num_threads=num_threads,
                byte_fallback=byte_fallback, hard_vocab_limit=hard_vocab_limit,
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                pad_piece="<pad>", unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
                **options)
    except RuntimeError as err:
        raise ValueError(f"SentencePiece training failed (vocab_size={vocab_size}, "
                         f"model_type={model_type!r}, {len(sentences)} sentences): {err}") from None
    tok = SpmTokenizer(out.getvalue())
    logger.info("trained a %s SentencePiece model: %d pieces from %d sentences", model_type,
                tok.vocab_size, len(sentences))
    return tok
