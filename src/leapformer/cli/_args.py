"""Argument types and helpers shared by every command family."""

from __future__ import annotations

import argparse
import os
import shlex
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


def invocation(argv: list[str] | None = None) -> str:
    """The command line, for results files: ``leapformer`` + ``argv`` (the arguments
    given to :func:`leapformer.cli.main`), else this process's own: ``leapformer ...``
    when started by the console script or ``python -m leapformer.cli`` (``torchrun -m``
    too), ``python SCRIPT ...`` otherwise."""
    if argv is not None:
        return " ".join(["leapformer", *map(shlex.quote, argv)])
    first = Path(sys.argv[0])
    if first.stem == "leapformer" or first.parts[-3:] == ("leapformer", "cli", "__main__.py"):
        prog = "leapformer"
    else:
        prog = f"python {shlex.quote(os.path.relpath(sys.argv[0]))}"
    return " ".join([prog, *map(shlex.quote, sys.argv[1:])])


def command_line(args: argparse.Namespace) -> str:
    """The command line of a parsed command (set by ``main``, else this process's)."""
    return getattr(args, "command_line", None) or invocation()


def resume_command(args: argparse.Namespace) -> str:
    """The command that continues an interrupted one: the same line without
    ``--overwrite``, with ``--resume`` where the command has that option."""
    words = [w for w in shlex.split(command_line(args)) if w != "--overwrite"]
    if hasattr(args, "resume") and "--resume" not in words:
        words.append("--resume")
    return shlex.join(words)


def interrupt_message(name: str, args: argparse.Namespace, err: BaseException) -> str:
    """One line for an interrupted command: where it stopped, what was saved and the
    exact command that continues it."""
    where = f" at step {err.step}/{err.steps}" if hasattr(err, "step") else ""
    checkpoint = getattr(err, "checkpoint", None)
    out = getattr(args, "out", None)
    if checkpoint is None and out is not None and (Path(out) / "last.pt").is_file():
        checkpoint = Path(out) / "last.pt"
    if checkpoint is not None:
        return (f"leapformer {name}: interrupted{where}; saved {checkpoint}; continue with: "
                f"{resume_command(args)}")
    if not hasattr(args, "resume") and hasattr(args, "out"):  # resumable by running again
        return (f"leapformer {name}: interrupted{where}; finished parts are kept; continue "
                f"with: {resume_command(args)}")
    return f"leapformer {name}: interrupted{where}; nothing was saved"


def _int_from_zero(text: str, must: str) -> int:
    """An integer >= 0, or an ``ArgumentTypeError`` saying ``{must}, got N``."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{must}, got {n}")
    return n


def parse_seed(text: str) -> int:
    """A random seed: an integer >= 0."""
    return _int_from_zero(text, "a seed must be >= 0")


def parse_seconds(text: str) -> float:
    """A duration in seconds, >= 0."""
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not s >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return s


def add_checkpoint_seconds(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint-seconds S`` of the training commands."""
    parser.add_argument("--checkpoint-seconds", type=parse_seconds, default=60.0, metavar="S",
                        help="also write OUT/last.pt every S seconds of training (default "
                        "60; 0: only at evaluations and the end)")


def parse_index(text: str) -> int:
    """An index into a list: an integer >= 0."""
    return _int_from_zero(text, "must be >= 0 (0 = the first)")


def check_writable(path: Path, option: str) -> None:
    """CommandError unless a file can be written at ``path``: called before the work
    whose result goes there. Missing folders are fine (they are created)."""
    import tempfile

    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{option} {path} is a folder, not a file")
    folder = next((p for p in path.parents if p.exists()), Path("."))
    if not folder.is_dir():
        raise CommandError(f"{option} {path}: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise CommandError(f"{option} {path}: cannot write in {folder} "
                           f"({err.strerror or err})") from None


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line, ``error: leapformer <command>: <message>``, exit code 2
    (sub-command parsers inherit the class)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but unknown arguments are reported by the parser of the
        sub-command they were given to, so the line names it: ``error: leapformer lm
        train: unrecognized arguments: --colour red`` (exit code 2)."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            _command_parser(self, parsed).error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def _command_parser(parser: argparse.ArgumentParser,
                    args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the deepest sub-command chosen in ``args`` (``parser`` itself if none)."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = subs[0].choices.get(getattr(args, subs[0].dest, None)) if subs else None
        if chosen is None:
            return parser
        parser = chosen


def parse_positive(text: str) -> int:
    """A positive integer (batch size, repetitions, threads)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {n}")
    return n


def parse_nonnegative(text: str) -> int:
    """A count that may be zero: an integer >= 0."""
    return _int_from_zero(text, "must be >= 0")


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


def one_line(err: BaseException) -> str:
    """An exception as one line (an ``OSError``'s file name included)."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return " ".join(text.split())


def print_error(name: str, err: BaseException | str) -> int:
    """``error: leapformer NAME: message`` on stderr, one line; returns exit code 2."""
    print(f"error: leapformer {name}: {err if isinstance(err, str) else one_line(err)}",
          file=sys.stderr)
    return 2


def command_name(args: argparse.Namespace) -> str:
    """``"lm train"``, ``"lra"``, ``"bench ops"``: the command words of a parsed line."""
    words = [getattr(args, "command", None)]
    for key in ("target", "dataset", "lm_command", "translate_command", "st_command",
                "tts_command", "linearize_command", "export_command"):
        value = getattr(args, key, None)
        if value:
            words.append(value)
    return " ".join(w for w in words if w)
