"""``leapformer export``: the one-token decoding step of a trained linear-family LM
(constant-size state) as an ONNX file (docs/export.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from leapformer.cli._args import check_writable, parse_positive

FORMATS = ("onnx",)


def run_export(args: argparse.Namespace) -> int:
    from leapformer.export import OnnxDecoder, export_onnx, load_run_model

    check_writable(args.out, "--out")
    model, config = load_run_model(args.run, checkpoint=args.checkpoint)
    source = {"run": str(args.run.resolve()), "checkpoint": args.checkpoint}
    path = export_onnx(model, args.out, opset=args.opset, extra_metadata={"source": source})
    decoder = OnnxDecoder(path)  # the file loads, and reports its inputs
    print(json.dumps({"out": str(path), "format": args.format, "attention": config["attention"],
                      "layers": len(decoder.state_shapes), "vocab_size": decoder.vocab_size,
                      "inputs": {"token": "[B] int64", "position": "[B] int64, 1-based",
                                 **{name: "[B, " + ", ".join(map(str, shape)) + "] float"
                                    for name, shape in zip(decoder.state_names,
                                                           decoder.state_shapes, strict=True)}},
                      "outputs": ["logits [B, vocab]",
                                  *(f"new_{name}" for name in decoder.state_names)],
                      "bytes": path.stat().st_size}, indent=1))
    return 0


def register(commands) -> None:
    """Add this family's commands to the sub-parser set ``commands``."""
    p = commands.add_parser("export", help="export the decoding step of a linear-family LM "
                            "run (constant-size state) to ONNX")
    p.add_argument("--run", type=Path, required=True, metavar="DIR",
                   help="run folder of 'leapformer lm train' (linear, elu, performer, "
                   "cosformer or leap attention)")
    p.add_argument("--format", choices=FORMATS, default="onnx",
                   help="output format (default onnx)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="file to write (e.g. step.onnx); replaced atomically")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint of the run (default best)")
    p.add_argument("--opset", type=parse_positive,
                   help="ONNX opset version, >= 18 (default: the exporter's)")
    p.set_defaults(func=run_export)
