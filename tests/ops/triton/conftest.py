"""The Triton kernels run on CPU through Triton's interpreter: the variable must be set
before the kernel modules are imported (Triton reads it when a kernel is defined);
tests/conftest.py sets it first, this is the same setting for a run of this folder
alone. Without Triton the run fails here, with the install line (no silent skip)."""

import importlib.util
import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

if importlib.util.find_spec("triton") is None:
    raise ImportError("tests/ops/triton need Triton (its CPU interpreter runs the kernels): "
                      "pip install 'leapformer[triton]'")
