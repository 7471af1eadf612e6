"""Argument types and helpers shared by every command family."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_length(text: str) -> int:
    """``"4096"``, ``"4k"`` or ``"4K"`` -> 4096."""
    text = text.strip().lower()
    try:
        n = int(text[:-1]) * 1024 if text.endswith("k") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a length: {text!r} (use e.g. 4096 or 4k)") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"length must be positive, got {n}")
    return n


def invocation() -> str:
    """The command line that started this process, for results files."""
    import os
    import shlex

    prog = Path(sys.argv[0]).name
    prog = prog if prog == "leapformer" else f"python {os.path.relpath(sys.argv[0])}"
    return " ".join([prog, *map(shlex.quote, sys.argv[1:])])


def parse_positive(text: str) -> int:
    """A positive integer (batch size, repetitions, threads)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {n}")
    return n


def parse_key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``(KEY, VALUE)``; VALUE read as JSON when it parses
    (``4``, ``0.1``, ``true``, ``null``), else kept as a string."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_bench_common(parser: argparse.ArgumentParser, name: str, quick_help: str,
                      out_dir_default) -> None:
    """Options every benchmark command has."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out-dir", type=Path, default=out_dir_default,
                        help=f"write {name}-<device>[-quick].md/.json here"
                        + ("" if out_dir_default is None else f" (default {out_dir_default})"))
    parser.add_argument("--threads", type=parse_positive,
                        help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


class CommandError(Exception):
    """An expected failure of a command; ``main`` prints it as one line, exit code 2."""


def command_name(args: argparse.Namespace) -> str:
    """``"lm train"``, ``"lra"``, ``"bench ops"``: the command words of a parsed line."""
    words = [getattr(args, "command", None)]
    for key in ("target", "dataset", "lm_command", "translate_command"):
        value = getattr(args, key, None)
        if value:
            words.append(value)
    return " ".join(w for w in words if w)
