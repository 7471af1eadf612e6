"""ListOps (Long-Range Arena): generator, official TSV files, evaluator, tokenizer.

An expression is a tree of operators over the digits 0-9 (docs/math.md §5.1, LRA
``lra_benchmarks/data/listops.py``)::

    [MAX 2 9 [MIN 4 7 ] 0 ]          -> 9
    [SM 2 [MED 3 8 ] 1 ]             -> 8   (MED of 3, 8 = int(5.5) = 5; 2 + 5 + 1 = 8)

- ``[MIN``, ``[MAX``: smallest / largest argument.
- ``[MED``: ``int(np.median(args))``, the integer part of the median; for an
  even count the mean of the two middle values, truncated (``[MED 1 2 ] -> 1``).
- ``[SM``: sum modulo 10.

**Official layout.** The LRA files wrap every operator application in
parentheses, one pair per (function, argument) step and one for the closing
bracket: ``[MAX 2 9 ]`` is written ``( ( ( [MAX 2 ) 9 ) ] )``. The LRA input
pipeline drops ``(`` and ``)`` before tokenising, so the model sees
``[MAX 2 9 ]``. :func:`format_source` writes this layout; everything that reads
a source (:func:`evaluate`, :class:`ListOpsTokenizer`, :func:`read_tsv`)
ignores the parentheses.

**Length.** The length of an expression is its number of operator, digit and
``]`` tokens (parentheses not counted), which is LRA's count and the number of
ids :meth:`ListOpsTokenizer.encode` returns. ``min_len`` and ``max_len`` are
*inclusive* here. LRA's generator keeps ``500 < length < 2000`` (exclusive), so
the defaults :data:`LRA_MIN_LEN` = 501 and :data:`LRA_MAX_LEN` = 1999 select
exactly LRA's set.

**Trees.** The root is at depth 1; a node at depth ``< max_depth`` is an
operator with probability ``p_operator`` (else a digit); nodes at depth
``max_depth`` are digits, so a tree has at most ``max_depth`` levels. An
operator takes a uniform number of arguments in ``[2, max_args]`` and one of
the four operators uniformly. Trees outside the length range are rejected
(a tree is abandoned as soon as its committed length passes ``max_len``, which
does not change the distribution of the accepted ones) and duplicate sources
are dropped.

**TSV.** Header ``Source<TAB>Target``, then one ``source<TAB>label`` row per
example. :func:`write_tsv` ends lines in ``\\n`` (LRA's ``csv.writer`` wrote
``\\r\\n``); :func:`read_tsv` accepts both.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from leapformer._io import atomic_open

logger = logging.getLogger(__name__)

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
"""Operator tokens, in the order of their ids (1-4) in :class:`ListOpsTokenizer`."""
END = "]"
DIGITS = tuple(str(d) for d in range(10))
PARENS = ("(", ")")
PAD = "<pad>"
LRA_MIN_LEN = 501
"""Smallest length LRA keeps (its generator tests ``length > 500``)."""
LRA_MAX_LEN = 1999
"""Largest length LRA keeps (its generator tests ``length < 2000``)."""
HEADER = ("Source", "Target")

_OP_INDEX = {tok: i for i, tok in enumerate(OPERATORS)}
_DIGIT_VALUE = {tok: i for i, tok in enumerate(DIGITS)}
_SOURCE_TOKENS = frozenset(OPERATORS + (END,) + DIGITS + PARENS)
_LABEL = re.compile(r"[0-9]")


# --------------------------------------------------------------------------- examples


@dataclass(frozen=True, slots=True)
class ListOpsExample:
    """One expression in the official layout and its value.

    ``source``: e.g. ``"( ( ( [MAX 2 ) 9 ) ] )"``; ``label``: int in ``[0, 9]``.
    """

    source: str
    label: int

    def __post_init__(self):
        if not isinstance(self.source, str):
            raise TypeError("ListOpsExample.source must be a str, "
                            f"got {type(self.source).__name__}")
        if not isinstance(self.label, int) or isinstance(self.label, bool):
            raise TypeError(f"ListOpsExample.label must be an int, got {type(self.label).__name__}")
        if not 0 <= self.label <= 9:
            raise ValueError(f"ListOpsExample.label must be in [0, 9], got {self.label}")

    @property
    def length(self) -> int:
        """Number of operator, digit and ``]`` tokens (parentheses not counted)."""
        return count_tokens(self.source)


def count_tokens(source: str) -> int:
    """Length of ``source`` as LRA counts it: its tokens other than ``(`` and ``)``."""
    return len(source.split()) - source.count("(") - source.count(")")


# --------------------------------------------------------------------------- evaluation


def _apply(op: int, args: list[int]) -> int:
    if op == 0:
        return min(args)
    if op == 1:
        return max(args)
    if op == 2:
        s = sorted(args)
        mid = len(s) // 2
        # int(np.median): the middle value, or the mean of the two middle ones truncated
        return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) // 2
    return sum(args) % 10


def _fold(tokens: Iterable[str], leaf: Callable[[int], object] | None,
          node: Callable[[int, list], object]):
    """Reduce a token sequence bottom-up without recursion.

    ``leaf(digit)`` makes a value from a digit (``None``: the digit itself),
    ``node(op_index, children)`` one
    from an operator application. Parentheses are skipped. Raises ``ValueError``
    (message without location; callers add it) on any malformed structure.
    """
    stack: list[tuple[int, list]] = []
    root = None
    done = False
    for i, tok in enumerate(tokens):
        digit = _DIGIT_VALUE.get(tok)
        if digit is not None:
            value = digit if leaf is None else leaf(digit)
        else:
            op = _OP_INDEX.get(tok)
            if op is not None:
                if done:
                    raise ValueError(f"token {i} {tok!r} follows a complete expression")
                stack.append((op, []))
                continue
            if tok == END:
                if not stack:
                    raise ValueError(f"token {i} ']' closes no operator (unbalanced brackets)")
                op, children = stack.pop()
                if not children:
                    raise ValueError(f"token {i}: operator {OPERATORS[op]} has no arguments")
                value = node(op, children)
            elif tok in PARENS:
                continue
            else:
                raise ValueError(f"unknown token {tok!r} at token {i}")
        if stack:
            stack[-1][1].append(value)
        elif done:
            raise ValueError(f"token {i} {tok!r} follows a complete expression")
        else:
            root, done = value, True
    if stack:
        raise ValueError(f"{len(stack)} operator(s) never closed with ']' (unbalanced brackets)")
    if not done:
        raise ValueError("empty expression")
    return root


def evaluate(source: str | Sequence[str]) -> int:
    """Value (0-9) of an expression, given as a source string (parentheses optional)
    or as a token sequence. Raises ``ValueError`` on a malformed expression."""
    if isinstance(source, str):
        source = source.split()
    return _fold(source, None, _apply)


def _format_node(op: int, children: list[str]) -> str:
    parts = ["( " * (len(children) + 1), OPERATORS[op]]
    for child in children:
        parts += (" ", child, " )")
    parts.append(" ] )")
    return "".join(parts)


def format_source(tokens: str | Sequence[str]) -> str:
    """The official LRA layout of an expression: ``"[MAX 2 9 ]"`` (or its tokens)
    -> ``"( ( ( [MAX 2 ) 9 ) ] )"``; a lone digit stays bare. Existing parentheses
    are ignored, so already formatted sources come back unchanged."""
    if isinstance(tokens, str):
        tokens = tokens.split()
    return _fold(tokens, DIGITS.__getitem__, _format_node)


# --------------------------------------------------------------------------- generation


class _TooLong(Exception):
    pass


def _sample_tokens(rng: random.Random, max_depth: int, max_args: int, p_operator: float,
                   max_len: int) -> list[str]:
    """One tree in prefix order (no parentheses); ``_TooLong`` once it must exceed ``max_len``.

    The committed length counts every announced argument as one token; it only
    grows, so a tree is abandoned exactly when its final length would be too long.
    """
    rnd = rng.random
    span = max_args - 1
    q = 1.0 - p_operator
    tokens: list[str] = []
    open_args: list[int] = []  # arguments still to draw for each open operator
    committed = 1
    while True:
        if len(open_args) + 1 < max_depth:
            u = rnd()
            if u < p_operator:
                k = 2 + int(rnd() * span)
                tokens.append(OPERATORS[int(rnd() * 4)])
                committed += k + 1
                if committed > max_len:
                    raise _TooLong
                open_args.append(k)
                continue
            digit = min(9, int((u - p_operator) / q * 10))  # u given u >= p is uniform
        else:
            digit = int(rnd() * 10)
        tokens.append(DIGITS[digit])
        while open_args:
            open_args[-1] -= 1
            if open_args[-1]:
                break
            open_args.pop()
            tokens.append(END)
        if not open_args:
            return tokens


def _max_length(max_depth: int, max_args: int, cap: int) -> int:
    """Longest expression possible with these limits (capped at ``cap``)."""
    longest = 1
    for _ in range(max_depth - 1):
        longest = min(cap, max(1, 2 + max_args * longest))
    return longest


def _check_int(name: str, value, low: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def generate_listops(n: int, *, seed: int, min_len: int = LRA_MIN_LEN,
                     max_len: int = LRA_MAX_LEN, max_depth: int = 10, max_args: int = 10,
                     p_operator: float = 0.25, max_attempts: int | None = None,
                     progress: Callable[[int], object] | None = None) -> list[ListOpsExample]:
    """``n`` distinct ListOps examples with ``min_len <= length <= max_len`` (inclusive).

    Deterministic given ``seed`` (a private ``random.Random(seed)``, no global
    state); examples come in generation order. See the module docstring for the
    tree distribution and the length count; the defaults are LRA's.

    ``max_attempts``: trees drawn before giving up with ``ValueError`` (default
    ``1000 * n + 1_000_000``), for length ranges that are unreachable or nearly
    so. ``progress``: called with ``1`` after each accepted example (the
    signature of ``tqdm.update``).
    """
    _check_int("n", n, 0)
    _check_int("seed", seed, 0)
    _check_int("min_len", min_len, 1)
    _check_int("max_len", max_len, 1)
    _check_int("max_depth", max_depth, 1)
    _check_int("max_args", max_args, 2)
    if max_len < min_len:
        raise ValueError(f"max_len must be >= min_len, got min_len={min_len}, max_len={max_len}")
    if not isinstance(p_operator, (int, float)) or isinstance(p_operator, bool):
        raise TypeError(f"p_operator must be a float, got {type(p_operator).__name__}")
    if not 0.0 <= p_operator <= 1.0:
        raise ValueError(f"p_operator must be in [0, 1], got {p_operator}")
    if min_len > 1:
        if max_depth < 2 or p_operator == 0:
            raise ValueError(f"min_len={min_len} is unreachable: with max_depth={max_depth} and "
                             f"p_operator={p_operator} every expression is a single digit")
        if max_len < 4:
            raise ValueError(f"no expression has a length in [{min_len}, {max_len}] "
                             "(an operator needs at least 4 tokens: op, 2 arguments, ']')")
        longest = _max_length(max_depth, max_args, min_len)
        if longest < min_len:
            raise ValueError(f"min_len={min_len} is unreachable: max_depth={max_depth} and "
                             f"max_args={max_args} allow at most {longest} tokens")
    if p_operator == 1.0 and max_len == 1 and max_depth > 1:
        raise ValueError("max_len=1 is unreachable with p_operator=1 (the root is an operator)")
    if max_attempts is None:
        max_attempts = 1000 * n + 1_000_000
    _check_int("max_attempts", max_attempts, 1)

    rng = random.Random(seed)
    seen: set[str] = set()
    examples: list[ListOpsExample] = []
    attempts = too_long = duplicates = 0
    start = time.perf_counter()
    while len(examples) < n:
        if attempts >= max_attempts:
            raise ValueError(
                f"generate_listops: only {len(examples)} of n={n} examples after "
                f"max_attempts={max_attempts} trees ({too_long} too long, "
                f"{duplicates} duplicates); "
                f"the length range [{min_len}, {max_len}] is unreachable or too narrow for "
                f"max_depth={max_depth}, max_args={max_args}, p_operator={p_operator}: "
                "widen min_len/max_len or raise max_attempts")
        attempts += 1
        try:
            tokens = _sample_tokens(rng, max_depth, max_args, p_operator, max_len)
        except _TooLong:
            too_long += 1
            continue
        if len(tokens) < min_len:
            continue
        source = format_source(tokens)
        if source in seen:
            duplicates += 1
            continue
        seen.add(source)
        examples.append(ListOpsExample(source, evaluate(tokens)))
        if progress is not None:
            progress(1)
    logger.info("generated %d ListOps examples (lengths %d-%d) in %.2f s: %d trees drawn, "
                "%d too long, %d duplicates", n, min_len, max_len, time.perf_counter() - start,
                attempts, too_long, duplicates)
    return examples


# --------------------------------------------------------------------------- TSV files


def write_tsv(examples: Iterable[ListOpsExample], path: str | Path) -> Path:
    """Write ``examples`` as an LRA ListOps TSV file, atomically (temporary file in
    the same folder, then renamed over ``path``). Returns ``path``."""
    path = Path(path)
    rows = ["\t".join(HEADER)]
    for i, ex in enumerate(examples):
        if not isinstance(ex, ListOpsExample):
            raise TypeError(f"examples[{i}] must be a ListOpsExample, got {type(ex).__name__}")
        if "\t" in ex.source or "\n" in ex.source or "\r" in ex.source:
            raise ValueError(f"examples[{i}].source contains a tab or a line break")
        rows.append(f"{ex.source}\t{ex.label}")
    data = ("\n".join(rows) + "\n").encode("ascii", errors="strict")
    with atomic_open(path) as fh:
        fh.write(data)
    logger.info("wrote %d ListOps examples to %s", len(rows) - 1, path)
    return path


_PAREN_DELTA = np.zeros(256, dtype=np.int32)
_PAREN_DELTA[ord("(")], _PAREN_DELTA[ord(")")] = 1, -1
_BRACKET_DELTA = np.zeros(256, dtype=np.int32)
_BRACKET_DELTA[ord("[")], _BRACKET_DELTA[ord("]")] = 1, -1


def _balance_error(raw: bytes, delta: np.ndarray, what: str) -> str | None:
    depth = np.cumsum(delta[np.frombuffer(raw, dtype=np.uint8)])
    if depth.size == 0:
        return None
    if depth.min() < 0:
        col = int(np.argmax(depth < 0))
        return f"unbalanced {what}: a closing one at column {col + 1} has no opening one"
    if depth[-1] != 0:
        return f"unbalanced {what}: {int(depth[-1])} never closed"
    return None


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def read_tsv(path: str | Path, *, verify_labels: bool = False) -> list[ListOpsExample]:
    """Read an LRA ListOps TSV file (``Source<TAB>Target`` header; ``\\n`` or ``\\r\\n``).

    Every row is checked: two tab-separated columns, a label ``0``-``9``, known
    tokens only (``[MIN [MAX [MED [SM ]``, digits, parentheses), balanced
    parentheses and operator brackets. ``verify_labels=True`` also evaluates each
    expression and checks it against its label (slower). Any failure raises
    ``ValueError("<path>:<line>: ...")``; a missing file raises ``FileNotFoundError``.
    """
    path = Path(path)
    examples: list[ListOpsExample] = []

    def fail(lineno: int, message: str):
        raise ValueError(f"{path}:{lineno}: {message}")

    with open(path, "rb") as fh:
        lineno = 0
        for lineno, raw in enumerate(fh, start=1):
            raw = raw.rstrip(b"\n")
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                line = raw.decode("ascii")
            except UnicodeDecodeError:
                fail(lineno, "non-ASCII bytes (ListOps files hold only ASCII tokens)")
            fields = line.split("\t")
            if lineno == 1:
                if tuple(fields) != HEADER:
                    fail(lineno, f"expected the header 'Source\\tTarget', got {_short(line)}")
                continue
            if len(fields) != 2:
                fail(lineno, f"expected 2 tab-separated columns (Source, Target), "
                     f"got {len(fields)}: {_short(line)}")
            source, label = fields
            if not _LABEL.fullmatch(label):
                fail(lineno, f"Target must be an integer 0-9, got {label!r}")
            tokens = source.split()
            if not tokens:
                fail(lineno, "empty Source")
            if not _SOURCE_TOKENS.issuperset(tokens):
                bad = next(t for t in tokens if t not in _SOURCE_TOKENS)
                fail(lineno, f"unknown token {_short(bad, 20)} in Source "
                     f"(known: {' '.join(OPERATORS)} ] 0-9 ( ))")
            for delta, what in ((_PAREN_DELTA, "parentheses"), (_BRACKET_DELTA, "brackets")):
                message = _balance_error(raw, delta, what)
                if message:
                    fail(lineno, message)
            example = ListOpsExample(source, int(label))
            if verify_labels:
                try:
                    value = evaluate(tokens)
                except ValueError as err:
                    fail(lineno, f"malformed expression: {err}")
                if value != example.label:
                    fail(lineno, f"Target {example.label} but the expression evaluates to {value}")
            examples.append(example)
        if lineno == 0:
            fail(1, "missing header 'Source\\tTarget' (the file is empty)")
    logger.info("read %d ListOps examples from %s", len(examples), path)
    return examples


# --------------------------------------------------------------------------- tokenizer


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
