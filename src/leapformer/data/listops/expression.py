"""ListOps expressions: tokens, examples, the official layout, length and evaluator.

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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

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

_OP_INDEX = {tok: i for i, tok in enumerate(OPERATORS)}
_DIGIT_VALUE = {tok: i for i, tok in enumerate(DIGITS)}
_SOURCE_TOKENS = frozenset(OPERATORS + (END,) + DIGITS + PARENS)


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


# --------------------------------------------------------------------------- helpers


def _check_int(name: str, value, low: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
