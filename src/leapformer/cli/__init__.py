"""The ``leapformer`` command: one module per command family, each with ``register(commands)``.

Every handler returns an exit code. Expected failures (bad input, missing or
mismatched files, a full or read-only disk) end as one line on stderr,
``error: leapformer <command>: <what and where>``, with exit code 2; an
interruption (Ctrl-C) ends as one line saying what was saved, exit code 130.
"""

from __future__ import annotations

import argparse
import logging
import sys

from leapformer.cli import (
    bench,
    data,
    demo,
    export,
    linearize,
    lm,
    lra,
    mqar,
    st,
    translate,
    tts,
)
from leapformer.cli._args import (
    CommandError,
    OneLineParser,
    command_name,
    interrupt_message,
    invocation,
    parse_key_value,
    parse_length,
    parse_positive,
    print_error,
)

DESCRIPTION = """\
Linear attention with learned proportions (LeaPformer), cosFormer and modular
linearized attention for PyTorch.

command families:
  demo        what `make demo` shows: recall that separates the mechanisms, and cost
  bench       speed and memory: attention ops, decoding, LRA classifier at 4k
  data        generate task data (ListOps, Pathfinder, MQAR, spoken Bible) in official formats
  lra         train one Long-Range Arena task (lra-grid, lra-report, heatmap)
  lm          causal language modelling: train, eval, generate, bench, report
  translate   text translation, offline and simultaneous wait-k
  st          speech: ASR, speech translation, simultaneous wait-k on pre-decision chunks
  tts         text-to-speech (TransformerTTS, MLA spec): train, synth, eval, report
  mqar        multi-query associative recall (mqar-grid, mqar-report)
  linearize   convert a pretrained transformers causal LM to LeaP / linear attention
              (linearize-report)
  export      export a linear-family LM's one-token decoding step (ONNX)

`leapformer COMMAND --help` describes each command."""

__all__ = ["CommandError", "build_parser", "invocation", "main", "parse_key_value",
           "parse_length", "parse_positive"]


def build_parser() -> argparse.ArgumentParser:
    from leapformer import __version__

    parser = OneLineParser(prog="leapformer", description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"leapformer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)
    for family in (demo, bench, data, lra, lm, translate, st, tts, mqar, linearize, export):
        family.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    name = command_name(args)
    args.command_line = invocation(argv)
    try:
        return args.func(args)
    except CommandError as err:
        return print_error(name, str(err))
    except KeyboardInterrupt as err:  # SIGINT, or SIGTERM during training: 128 + signal
        print(interrupt_message(name, args, err), file=sys.stderr)
        return 128 + getattr(err, "signum", 2)
    except (ValueError, TypeError, KeyError, OSError, EOFError, RuntimeError) as err:
        if args.verbose:
            raise
        return print_error(name, err)
