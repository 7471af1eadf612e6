import os

import pytest
import torch

# Triton kernels run on CPU through Triton's interpreter. Triton reads the variable
# when a kernel is defined, so it is set here, before any test module imports
# leapformer.ops.triton (tests/bench/test_gpu_dry_run.py is collected before
# tests/ops/triton). On a CUDA machine the kernels are compiled for the GPU.
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_thread():
    """Run a test on one torch thread (small models, many short ops: threads only add
    overhead), restoring the count afterwards. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fused_steps_traced_not_compiled(monkeypatch):
    """Models' shared compiled decoding steps (``fused_step.shared_step``: generation,
    the simultaneous agents, TTS synthesis, their warm-ups) are traced by dynamo and run
    by its ``eager`` backend in the suite: the same graph, without a C++ compile of tens
    of seconds per model. Inductor itself is tested in tests/models/test_fused_step.py,
    which builds its steps with the inductor backend explicitly."""
    from leapformer.models import fused_step

    monkeypatch.setattr(fused_step, "BACKEND", "eager")
