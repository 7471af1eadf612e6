"""ListOps TSV files, the format of the LRA release.

**TSV.** Header ``Source<TAB>Target``, then one ``source<TAB>label`` row per
example. :func:`write_tsv` ends lines in ``\\n`` (LRA's ``csv.writer`` wrote
``\\r\\n``); :func:`read_tsv` accepts both.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from leapformer._io import atomic_open
from leapformer.data.listops.expression import (
    OPERATORS,
    _SOURCE_TOKENS,
    ListOpsExample,
    _short,
    evaluate,
)

logger = logging.getLogger(__name__)

HEADER = ("Source", "Target")
_LABEL = re.compile(r"[0-9]")


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
