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
