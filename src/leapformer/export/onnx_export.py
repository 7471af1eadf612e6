"""Export the decoding step of a linear-family causal LM to an ONNX file.

:func:`export_onnx` traces :class:`~leapformer.export.step.DecodeStep` with
``torch.onnx.export(..., dynamo=True)`` (``torch.export`` underneath) and
writes one self-contained file (weights inside; models over 2 GB, the
protobuf limit, are refused). The graph's inputs are ``token`` (int64 ``[B]``),
``position`` (int64 ``[B]``, 1-based) and ``state_0 .. state_{L-1}`` (float32
``[B, H, G, F, P]``); its outputs ``logits`` (``[B, V]``) and
``new_state_0 ..``. The batch size ``B`` is dynamic. The file's metadata
(key ``leapformer``, JSON) records the model's configuration and the state
shapes, which :class:`~leapformer.export.runtime.OnnxDecoder` reads.

Needs the ``[onnx]`` extra (``onnx``, ``onnxscript``; ``onnxruntime`` to run
the file).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

from leapformer._io import atomic_open
from leapformer.export.step import DecodeStep, check_exportable, initial_states, state_shapes
from leapformer.models.generate import cosformer_length_mode
from leapformer.models.lm import CausalLM

logger = logging.getLogger(__name__)

FORMAT = "leapformer-decode-step"
METADATA_KEY = "leapformer"
MIN_OPSET = 18
EXAMPLE_BATCH = 2  # traced with 2 sequences: a batch of 1 would be specialised to 1


def require_onnx(*modules: str) -> None:
    """ImportError naming the ``[onnx]`` extra unless ``modules`` can be imported."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"ONNX export needs the {name} package: pip install "
                              f"'leapformer[onnx]' ({err})") from err


def input_names(num_layers: int) -> list[str]:
    return ["token", "position", *(f"state_{i}" for i in range(num_layers))]


def output_names(num_layers: int) -> list[str]:
    return ["logits", *(f"new_state_{i}" for i in range(num_layers))]


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's notices (missing torchvision ops, pytree deprecations,
    axis renaming): they concern its internals, not the exported graph."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "torch._export")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(model: CausalLM, out: str | Path, *, opset: int | None = None,
                extra_metadata: dict | None = None) -> Path:
    """Write the decoding step of ``model`` to the ONNX file ``out`` (atomically); returns it.

    ``model``: a :class:`~leapformer.models.CausalLM` of the linear family
    (ValueError for softmax). It is traced in eval mode (its mode is restored).
    ``opset``: the ONNX opset, >= 18 (None: the exporter's default).
    ``extra_metadata``: JSON-able items added to the file's metadata (e.g. the
    run it came from).
    """
    check_exportable(model)
    if opset is not None and (not isinstance(opset, int) or opset < MIN_OPSET):
        raise ValueError(f"opset must be an int >= {MIN_OPSET} (the dynamo exporter's "
                         f"lowest; it raises lower ones silently), got {opset!r}")
    require_onnx("onnx", "onnxscript")
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"out {out} is a folder, not a file")
    L = model.cfg.num_layers
    step = DecodeStep(model)
    device = model.embed.weight.device
    example = (torch.arange(1, EXAMPLE_BATCH + 1, device=device) % model.cfg.vocab_size,
               torch.ones(EXAMPLE_BATCH, dtype=torch.long, device=device),
               *initial_states(model, EXAMPLE_BATCH))
    batch = torch.export.Dim("batch", min=1)
    dynamic = ({0: batch}, {0: batch}, tuple({0: batch} for _ in range(L)))
    was_training = model.training
    model.eval()
    try:
        with cosformer_length_mode(model, "given"):
            # one eager step first: the ops make some small constants on first use, and
            # they must be real tensors, not the tracer's fake ones
            with torch.no_grad():
                step(*example)
            # traced with autograd on: LeaP's no-grad fast path keeps a detached copy of
            # its weights, which would enter the graph as constants
            with torch.enable_grad(), _quiet_exporter():
                program = torch.onnx.export(step, example, dynamo=True,
                                            input_names=input_names(L),
                                            output_names=output_names(L),
                                            dynamic_shapes=dynamic, opset_version=opset,
                                            optimize=True, verbose=False)
    finally:
        model.train(was_training)
    proto = program.model_proto
    meta = {"format": FORMAT, "version": 1, "model": asdict(model.cfg),
            "states": [list(s) for s in state_shapes(model)],
            "position": "1-based position of the token", **(extra_metadata or {})}
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    try:
        data = proto.SerializeToString()
    except ValueError as err:  # protobuf's 2 GB limit
        raise ValueError(f"cannot write {out}: the model is too large for one ONNX file "
                         f"({err})") from err
    with atomic_open(out) as fh:
        fh.write(data)
    logger.info("exported the %s decoding step (%d layers) to %s (%.1f MB)",
                model.cfg.attention, L, out, len(data) / 1e6)
    return out
