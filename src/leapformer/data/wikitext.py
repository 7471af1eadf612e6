"""WikiText-103 (and WikiText-2): the word-level token files and a word vocabulary.

**Files.** The tokenised release (``wikitext-103-v1.zip``; not the ``-raw-``
one) unpacks to a folder ``wikitext-103/`` holding ``wiki.train.tokens``,
``wiki.valid.tokens`` and ``wiki.test.tokens``: UTF-8 text, one paragraph or
heading per line (``" = Valkyria Chronicles III = "``), blank lines (a single
space) between them, words separated by spaces, rare words already replaced by
``<unk>``. :func:`read_wikitext` takes the folder holding the files, or a folder
with ``wikitext-103/`` (or ``wikitext-2/``, same file names) inside it.

**Tokens, as fairseq counts them.** The experiment of docs/math.md §5.2 is fairseq's
``fairseq-preprocess --only-source`` on these files. Its ``Binarizer`` opens a
file in text mode (``encoding="utf-8"``, universal newlines: ``\\n``,
``\\r\\n`` and a lone ``\\r`` end a line; ``\\x85`` or ``\\u2028`` do not), and
for *every* line calls ``Dictionary.encode_line(line, tokenize_line,
append_eos=True)``: ``tokenize_line`` collapses ``\\s+`` to one space, strips
and splits (the same as ``str.split()``: Python's ``\\s`` and ``str.isspace``
are the same set), and ``</s>`` is appended. A blank line is therefore *not*
skipped: it yields a lone ``</s>``. A file's token count is words + lines
(fairseq's log line ``N sents, M tokens``), and fairseq's dictionary building
(``add_file_to_dictionary``) counts one ``</s>`` per line the same way. This
reader does exactly that, so ``len(read_wikitext(root)["test"])`` is the
number of tokens fairseq's ``eval-lm`` scores (break mode ``none``).

**Vocabulary.** :class:`WordVocab`: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2,
then the words of the training split by decreasing count, ties in code-point
order (fairseq's ``Dictionary.finalize`` order); ``min_count`` is fairseq's
``--thresholdsrc`` (keep words seen at least that often; the default keeps all,
as fairseq does for WikiText). WikiText's own ``<unk>`` tokens are the
``<unk>`` symbol. fairseq's ids differ (it has ``<s>`` = 0, ``<pad>`` = 1,
``</s>`` = 2, ``<unk>`` = 3, so its size, 267,744 for WikiText-103, counts one
more special); ``pad_to_multiple=8`` pads with ``madeupword0000``... as
fairseq does.

Errors name the file: a missing file (with the expected names), an empty file,
a file with no words, bytes that are not UTF-8 (``"<file>:<line>: ..."``).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import repeat
from pathlib import Path

import numpy as np

from leapformer._io import atomic_write_text

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
FILENAMES = {"train": "wiki.train.tokens", "valid": "wiki.valid.tokens",
             "test": "wiki.test.tokens"}
SUBFOLDERS = ("wikitext-103", "wikitext-2")
"""Folders looked into when ``root`` itself holds no ``wiki.*.tokens`` file."""

PAD = "<pad>"
EOS = "</s>"
UNK = "<unk>"
SPECIALS = (PAD, EOS, UNK)
VOCAB_FORMAT = "leapformer-word-vocab"


# --------------------------------------------------------------------------- files


def wikitext_dir(root: str | Path) -> Path:
    """The folder that holds the ``wiki.*.tokens`` files: ``root`` itself, else
    ``root/wikitext-103`` or ``root/wikitext-2`` (the first that exists)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"WikiText folder {root} not found (expected a folder holding "
                                f"{', '.join(FILENAMES.values())}, or {SUBFOLDERS[0]}/ with them)")
    if any((root / name).is_file() for name in FILENAMES.values()):
        return root
    for sub in SUBFOLDERS:
        if (root / sub).is_dir():
            return root / sub
    return root


def _missing(path: Path, folder: Path) -> FileNotFoundError:
    hint = ""
    if any(folder.glob("wiki.*.raw")):
        hint = (" (this folder holds the untokenised wiki.*.raw files; the word-level "
                "experiment uses the tokenised release, wikitext-103-v1)")
    return FileNotFoundError(
        f"WikiText file {path} not found: expected {', '.join(FILENAMES.values())} in "
        f"{folder} (or in {folder / SUBFOLDERS[0]}){hint}")


def _bad_utf8(path: Path) -> ValueError:
    """The error for a file that fails to decode, located by a second, binary pass."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        err = e
    else:  # pragma: no cover - the text pass failed, so the binary one does too
        return ValueError(f"{path}: not UTF-8 text")
    line = raw.count(b"\n", 0, err.start) + 1
    col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
    return ValueError(f"{path}:{line}: not UTF-8 text (byte {raw[err.start]:#04x} at column "
                      f"{col}: {err.reason})")


def read_wikitext_file(path: str | Path) -> tuple[list[str], int]:
    """``(tokens, n_lines)`` of one token file, as fairseq reads it: the words of
    every line followed by ``</s>`` (blank lines included, as a lone ``</s>``).
    Equal strings share one object, so a 100M-token list costs ~8 bytes a token."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path, path.parent)
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    tokens: list[str] = []
    canonical: dict[str, str] = {EOS: EOS}
    same = canonical.setdefault
    n_lines = 0
    try:
        # text mode with universal newlines and no BOM handling: what fairseq's
        # Binarizer reads (open(filename, "r", encoding="utf-8"); readline()).
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                words = line.split()
                if words:
                    tokens.extend(map(same, words, words))
                tokens.append(EOS)
                n_lines += 1
    except UnicodeDecodeError:
        raise _bad_utf8(path) from None
    if len(tokens) == n_lines:
        raise ValueError(f"{path}: holds no words ({n_lines} blank lines)")
    logger.info("%s: %d lines, %d tokens (with one %s per line), %d distinct words",
                path, n_lines, len(tokens), EOS, len(canonical) - 1)
    return tokens, n_lines


def read_wikitext(root: str | Path, splits: Sequence[str] = SPLITS) -> dict[str, list[str]]:
    """Split name -> word tokens (with ``</s>`` ending every line) of the WikiText
    files under ``root`` (see :func:`wikitext_dir`). ``splits``: a subset of
    ``("train", "valid", "test")``."""
    if isinstance(splits, str):
        splits = (splits,)
    for s in splits:
        if s not in FILENAMES:
            raise ValueError(f"unknown WikiText split {s!r} (known: {', '.join(SPLITS)})")
    folder = wikitext_dir(root)
    paths = {s: folder / FILENAMES[s] for s in splits}
    for path in paths.values():  # all missing files are reported before any is read
        if not path.is_file():
            raise _missing(path, folder)
    return {s: read_wikitext_file(paths[s])[0] for s in splits}


# --------------------------------------------------------------------------- vocabulary


class WordVocab:
    """Word <-> id: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, then the words.

    ``symbols`` lists every symbol in id order (the three specials first);
    ``counts`` (optional) their training counts. Build one from tokens with
    :meth:`build`; :meth:`encode` maps tokens to a 1-D ``int64`` array, unknown
    words to ``<unk>``.
    """

    pad_id = 0
    eos_id = 1
    unk_id = 2

    def __init__(self, symbols: Sequence[str], counts: Sequence[int] | None = None):
        symbols = list(symbols)
        if tuple(symbols[:3]) != SPECIALS:
            raise ValueError(f"a WordVocab starts with {list(SPECIALS)}, got {symbols[:3]}")
        for i, s in enumerate(symbols):
            if not isinstance(s, str) or not s or any(c.isspace() for c in s):
                raise ValueError(f"symbol {i} must be a non-empty string without whitespace, "
                                 f"got {s!r}")
        index = {s: i for i, s in enumerate(symbols)}
        if len(index) != len(symbols):
            dup = [s for s, c in Counter(symbols).items() if c > 1][:5]
            raise ValueError(f"a WordVocab lists each symbol once; repeated: {dup}")
        if counts is not None:
            counts = [int(c) for c in counts]
            if len(counts) != len(symbols):
                raise ValueError(f"{len(counts)} counts for {len(symbols)} symbols")
        self.symbols: list[str] = symbols
        self.counts: list[int] | None = counts
        self._index = index

    # -- construction ------------------------------------------------------

    @classmethod
    def build(cls, tokens: Iterable[str], min_count: int = 1, max_size: int | None = None,
              pad_to_multiple: int = 1) -> WordVocab:
        """The vocabulary of ``tokens`` (e.g. ``read_wikitext(root)["train"]``).

        Words seen at least ``min_count`` times, by decreasing count, ties in
        code-point order; at most ``max_size`` symbols in all (specials included);
        then ``madeupword0000``, ... until the size is a multiple of
        ``pad_to_multiple`` (fairseq uses 8). ``</s>`` and ``<unk>`` tokens count
        towards their special symbols; a ``<pad>`` token is an error.
        """
        for name, value, low in (("min_count", min_count, 1), ("pad_to_multiple",
                                                               pad_to_multiple, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if max_size is not None and (not isinstance(max_size, int) or max_size < len(SPECIALS)):
            raise ValueError(f"max_size must be None or an int >= {len(SPECIALS)}, got {max_size!r}")
        counter = Counter(tokens)
        if counter.get(PAD):
            raise ValueError(f"the tokens contain {PAD!r} {counter[PAD]} times: it is reserved "
                             "for padding")
        special_counts = [0, counter.pop(EOS, 0), counter.pop(UNK, 0)]
        words = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        words = [(w, c) for w, c in words if c >= min_count]
        if max_size is not None:
            words = words[:max_size - len(SPECIALS)]
        symbols = list(SPECIALS) + [w for w, _ in words]
        counts = special_counts + [c for _, c in words]
        i, taken = 0, set(symbols)
        while len(symbols) % pad_to_multiple:
            made = f"madeupword{i:04d}"
            i += 1
            if made not in taken:
                symbols.append(made)
                counts.append(0)
        dropped = len(counter) - len(words)
        logger.info("word vocabulary: %d symbols (%d words seen, %d left out by min_count=%d / "
                    "max_size=%s)", len(symbols), len(counter), dropped, min_count, max_size)
        return cls(symbols, counts)

    # -- lookup --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def __eq__(self, other) -> bool:
        return isinstance(other, WordVocab) and self.symbols == other.symbols

    def __repr__(self) -> str:
        return f"WordVocab({len(self)} symbols)"

    def index(self, word: str) -> int:
        """Id of ``word`` (``<unk>``'s id when unknown)."""
        return self._index.get(word, self.unk_id)

    def encode(self, tokens: Sequence[str] | Iterable[str]) -> np.ndarray:
        """1-D ``int64`` ids of ``tokens``; unknown words become ``<unk>`` (and the
        share of replaced words is logged, as fairseq does)."""
        if isinstance(tokens, str):
            raise TypeError("WordVocab.encode takes a sequence of tokens, not a str "
                            "(use WordTokenizer.encode for text)")
        if not isinstance(tokens, Sequence):
            tokens = list(tokens)
        ids = np.fromiter(map(self._index.get, tokens, repeat(self.unk_id)), dtype=np.int64,
                          count=len(tokens))
        if len(tokens):
            n_unk = int(np.count_nonzero(ids == self.unk_id))
            replaced = n_unk - (tokens.count(UNK) if isinstance(tokens, list) else
                                sum(1 for t in tokens if t == UNK))
            if replaced:
                logger.info("%d of %d tokens (%.2f%%) replaced by %s", replaced, len(tokens),
                            100.0 * replaced / len(tokens), UNK)
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The symbols of ``ids`` (``np.ndarray``, tensor or ints)."""
        out = []
        n = len(self.symbols)
        for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            if not 0 <= i < n:
                raise ValueError(f"id {i} is outside the vocabulary (size {n})")
            out.append(self.symbols[i])
        return out

    # -- files ---------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"format": VOCAB_FORMAT, "version": 1, "symbols": list(self.symbols),
                "counts": None if self.counts is None else list(self.counts)}

    @classmethod
    def from_dict(cls, data: dict, where: str = "word vocabulary") -> WordVocab:
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT:
            raise ValueError(f"{where}: not a {VOCAB_FORMAT} object")
        if data.get("version") != 1:
            raise ValueError(f"{where}: unsupported version {data.get('version')!r} (known: 1)")
        if not isinstance(data.get("symbols"), list):
            raise ValueError(f"{where}: 'symbols' must be a list")
        try:
            return cls(data["symbols"], data.get("counts"))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as one JSON file (atomically)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> WordVocab:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"word vocabulary file {path} not found") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a JSON file ({err})") from None
        return cls.from_dict(data, str(path))


def load_wikitext(root: str | Path, vocab: WordVocab | None = None, *, min_count: int = 1,
                  splits: Sequence[str] = SPLITS) -> tuple[WordVocab, dict[str, np.ndarray]]:
    """``(vocab, split -> 1-D int64 ids)``: the WikiText streams, one split in memory
    as words at a time. Without ``vocab``, it is built from the training split
    (which must then be among ``splits``)."""
    if isinstance(splits, str):
        splits = (splits,)
    if vocab is None and "train" not in splits:
        raise ValueError("without a vocabulary, 'train' must be among the splits "
                         "(the vocabulary is built from it)")
    order = sorted(splits, key=lambda s: s != "train")  # train first: it builds the vocab
    out: dict[str, np.ndarray] = {}
    for s in order:
        tokens = read_wikitext(root, (s,))[s]
        if vocab is None:
            vocab = WordVocab.build(tokens, min_count=min_count)
        out[s] = vocab.encode(tokens)
        del tokens
    return vocab, {s: out[s] for s in splits}
