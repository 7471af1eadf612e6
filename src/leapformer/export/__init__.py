"""Export the one-token decoding step of a linear-family causal LM (constant-size
state) for inference outside PyTorch: ONNX via ``torch.onnx.export`` (dynamo).

- :class:`DecodeStep`: the step as a pure function, ``(token, position, *states)
  -> (logits, *new_states)`` (:mod:`leapformer.export.step`);
- :func:`export_onnx`: trace it and write an ONNX file;
- :class:`OnnxDecoder`: run that file in onnxruntime;
- :func:`load_run_model`: the model of a ``leapformer lm train`` run folder.

Usage in docs/export.md. ONNX needs the ``[onnx]`` extra (imported lazily).
"""

from leapformer.export.onnx_export import export_onnx
from leapformer.export.runs import load_run_model
from leapformer.export.runtime import OnnxDecoder
from leapformer.export.step import (
    DecodeStep,
    check_exportable,
    exportable_mechanisms,
    initial_states,
    state_shapes,
)

__all__ = ["DecodeStep", "OnnxDecoder", "check_exportable", "export_onnx",
           "exportable_mechanisms", "initial_states", "load_run_model", "state_shapes"]
