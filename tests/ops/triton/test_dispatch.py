"""``backend=``: what ``auto`` picks, one-line errors for calls a backend cannot serve, and
the launch fallback when a device lacks shared memory."""

import pytest
import torch
from triton.runtime.errors import OutOfResources

from leapformer.ops import FavorPlus, draw_projection, leap_attention, linear_attention
from leapformer.ops.feature_maps import relu
from leapformer.ops.triton import dispatch
from leapformer.ops.triton.functions import launch_chunked

from ..helpers import make_inputs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_auto_is_torch_on_cpu_and_triton_on_cuda(monkeypatch):
    q = torch.zeros(1, 1, 4, 4)
    assert dispatch.resolve_backend("auto", q=q, phi=relu, form="chunk") == "torch"
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    assert dispatch.resolve_backend("auto", q=q, phi=relu, form="chunk") == "triton"
    assert dispatch.resolve_backend("auto", q=q, phi=relu, form="recurrent") == "triton"
    assert dispatch.resolve_backend("auto", q=q, phi=relu, form="parallel") == "torch"
    favor = FavorPlus(draw_projection(8, 4))
    assert dispatch.resolve_backend("auto", q=q, phi=favor, form="chunk") == "torch"
    monkeypatch.setattr(dispatch, "triton_available", lambda: False)
    assert dispatch.resolve_backend("auto", q=q, phi=relu, form="chunk") == "torch"


def test_auto_on_cpu_gives_the_torch_result():
    q, k, v, qp, kp, _ = make_inputs(1, 2, 9, 9, 4)
    torch.testing.assert_close(leap_attention(q, k, v, qp, kp, causal=True),
                               leap_attention(q, k, v, qp, kp, causal=True, backend="torch"))


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    q, k, v, qp, kp, _ = make_inputs(1, 1, 4, 4, 4)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="backend='triton' needs CUDA tensors"):
        leap_attention(q, k, v, qp, kp, backend="triton")


@pytest.mark.parametrize("kwargs,match", [
    (dict(backend="cuda"), "backend must be one of"),
    (dict(backend="triton", mode="parallel"), "runs mode 'chunk', 'recurrent' or 'auto'"),
    (dict(backend="triton", return_weights=True), "runs mode 'chunk', 'recurrent' or 'auto'"),
    (dict(backend="fla", causal=True), "backend='fla' needs CUDA tensors"),
])
def test_errors(kwargs, match):
    q, k, v, qp, kp, _ = make_inputs(1, 1, 4, 4, 4)
    with pytest.raises(ValueError, match=match):
        leap_attention(q, k, v, qp, kp, **kwargs)


def test_unsupported_feature_map():
    q, k, v, _, _, _ = make_inputs(1, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="supports feature_map"):
        linear_attention(q, k, v, feature_map=FavorPlus(draw_projection(8, 4)), backend="triton")


class _SharedMemoryHungry:
    """Stands in for a kernel that needs more shared memory than the device has above
    ``fits`` rows per chunk."""

    def __init__(self, fits):
        self.fits, self.tried = fits, []

    def __getitem__(self, grid):
        def launch(*args, BT, **kwargs):
            self.tried.append(BT)
            if BT > self.fits:
                raise OutOfResources(BT * 4096, self.fits * 4096, "shared memory")
        return launch


def test_causal_launch_halves_rows_until_shared_memory_fits():
    kernel = _SharedMemoryHungry(fits=16)
    assert launch_chunked(kernel, (1,), 64) == 16
    assert kernel.tried == [64, 32, 16]
    with pytest.raises(OutOfResources):
        launch_chunked(_SharedMemoryHungry(fits=8), (1,), 32)
