"""Shared pieces of the Triton tests: run one call on two backends, compare values and
gradients of every input that takes one."""

from __future__ import annotations

import torch


def values_and_grads(fn, inputs, seed=1):
    """``fn(*inputs)`` and the gradients of a random projection of its output (and of any
    extra outputs it returns) with respect to the inputs that require them."""
    out = fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    flat = torch.cat([o.flatten() for o in outs])
    g = torch.Generator().manual_seed(seed)
    weights = torch.randn(flat.shape, generator=g, dtype=flat.dtype)
    wanted = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    grads = torch.autograd.grad((flat * weights).sum(), wanted, allow_unused=True)
    return flat.detach(), [torch.zeros(()) if x is None else x for x in grads]


def assert_close_all(a, b, *, rtol, atol):
    (va, ga), (vb, gb) = a, b
    torch.testing.assert_close(va, vb, rtol=rtol, atol=atol)
    assert len(ga) == len(gb)
    for i, (x, y) in enumerate(zip(ga, gb)):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=lambda m: f"grad {i}: {m}")
