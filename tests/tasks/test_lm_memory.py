"""No N x N tensor is allocated for linear mechanisms in training.

A ``TorchDispatchMode`` records the shape of every tensor that every ATen op
returns during the forward *and* backward pass of one ``CausalLM`` training
step (loss, ``backward()``) on an ``N = 1024``-token sequence with a tiny width
and vocabulary (so that no honest tensor has two dimensions >= N: activations
are ``[1, N, 16]``, logits ``[1, N, 50]``, weights and states are small). A
tensor with two dimensions both >= N is an N x N (attention-sized) buffer.

Fused kernels hide their internals from the dispatcher: on the CPU,
``scaled_dot_product_attention`` without dropout runs the flash kernel, whose
outputs are ``[B, H, N, D]`` and a log-sum-exp ``[B, H, N]`` (it works in
blocks and never holds N x N either), so a hook that only watched softmax
through that kernel could not fail. To make the positive control honest the
whole test runs under ``sdpa_kernel(SDPBackend.MATH)``: SDPA is then decomposed
into ATen ops (scores ``bmm``, softmax, ``bmm``) that the mode sees, and the
same hook must find softmax's ``[.., N, N]`` scores. The linear mechanisms are
written in plain PyTorch ops (chunked causal linear attention), and the MATH
backend also rules out that any of them hides an N x N product inside a fused
SDPA call.
"""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from leapformer.models import CausalLM, LMConfig

N = 1024


pytestmark = pytest.mark.usefixtures("one_thread")


class ShapeRecorder(TorchDispatchMode):
    """Every op's output shapes; ``square`` lists those with two dims >= ``n``."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.ops: set[str] = set()
        self.square: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(str(func))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and sum(s >= self.n for s in t.shape) >= 2:
                self.square.append((str(func), tuple(t.shape)))
        return out


def training_step_shapes(attention: str, dropout: float = 0.1) -> ShapeRecorder:
    torch.manual_seed(0)
    cfg = LMConfig(vocab_size=50, context_length=N, attention=attention, num_layers=1,
                   d_model=16, nhead=2, dim_feedforward=32, dropout=dropout)
    model = CausalLM(cfg).train()
    tokens = torch.randint(1, 50, (1, N))
    rec = ShapeRecorder(N)
    with sdpa_kernel(SDPBackend.MATH), rec:
        model.loss(tokens).backward()
    assert any("backward" in op for op in rec.ops), "the backward pass was not recorded"
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    return rec


@pytest.mark.parametrize("attention", ["linear", "elu", "cosformer", "leap"])
def test_linear_mechanisms_never_hold_n_by_n(attention):
    rec = training_step_shapes(attention)
    assert rec.square == []


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_the_hook_sees_softmax_scores(dropout):
    """Positive control: the same hook finds softmax's N x N scores (and their gradient)."""
    rec = training_step_shapes("softmax", dropout)
    shapes = {s[-2:] for _, s in rec.square}
    assert (N, N) in shapes
    assert any("backward" in op for op, _ in rec.square)
