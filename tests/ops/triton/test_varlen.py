"""Packed sequences (``cu_seqlens``, flash-linear-attention's convention): the kernels
equal the torch forms run one sequence at a time, values and gradients, with state per
sequence; an empty sequence and a length-1 one included."""

import pytest
import torch

from leapformer.ops import LinearAttentionState, cosformer_attention, leap_attention

from ..helpers import make_inputs
from .helpers import assert_close_all, values_and_grads

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = dict(rtol=1e-9, atol=1e-10)
LENGTHS = [7, 0, 20, 1, 70]


def _cu(lengths):
    return torch.tensor([0] + lengths).cumsum(0)


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_packed_equals_per_sequence_torch(causal):
    T = sum(LENGTHS)
    cu = _cu(LENGTHS)
    q, k, v, qp, kp, _ = make_inputs(1, 2, T, T, 4, 3, grad=True, seed=11)
    mask = torch.zeros(1, T, dtype=torch.bool)
    mask[0, 30:33] = True  # a few padded keys inside the fourth sequence
    S = len(LENGTHS)
    s = torch.rand(S, 2, 2, 4, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    s[..., 4:] = 0.0
    s.requires_grad_()

    def run(backend):
        def fn(q, k, v, qp, kp, s):
            o, final = leap_attention(q, k, v, qp, kp, causal=causal, cu_seqlens=cu,
                                      key_padding_mask=mask, chunk_size=16,
                                      initial_state=LinearAttentionState(s, 3),
                                      output_final_state=True, backend=backend)
            return o, final.s
        return fn

    inputs = (q, k, v, qp, kp, s)
    assert_close_all(values_and_grads(run("triton"), inputs),
                     values_and_grads(run("torch"), inputs), **F64)


def test_packed_torch_reference_is_separate_calls():
    T = sum(LENGTHS)
    cu = _cu(LENGTHS)
    q, k, v, qp, kp, _ = make_inputs(1, 2, T, T, 4, 3, seed=12)
    packed = leap_attention(q, k, v, qp, kp, causal=True, cu_seqlens=cu, backend="torch")
    lo = 0
    for n in LENGTHS:
        if n:
            rows = slice(lo, lo + n)
            alone = leap_attention(q[:, :, rows], k[:, :, rows], v[:, :, rows], qp[..., rows],
                                   kp[..., rows], causal=True, backend="torch")
            torch.testing.assert_close(packed[:, :, rows], alone, **F64)
        lo += n


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_packed_cosformer_restarts_positions(backend):
    lengths = [9, 4, 17]
    cu = _cu(lengths)
    q, k, v, _, _, _ = make_inputs(1, 2, 30, 30, 4, 3, seed=13)
    packed = cosformer_attention(q, k, v, causal=True, cu_seqlens=cu, backend=backend)
    lo = 0
    for n in lengths:
        rows = slice(lo, lo + n)
        alone = cosformer_attention(q[:, :, rows], k[:, :, rows], v[:, :, rows], causal=True,
                                    backend="torch")
        torch.testing.assert_close(packed[:, :, rows], alone, **F64)
        lo += n


@pytest.mark.parametrize("cu,match", [
    (torch.tensor([1, 10]), "must rise from 0 to the length 10"),
    (torch.tensor([0, 6, 4, 10]), "must rise from 0"),
    (torch.tensor([0.0, 10.0]), "int32 or int64"),
])
def test_bad_cu_seqlens(cu, match):
    q, k, v, qp, kp, _ = make_inputs(1, 1, 10, 10, 4)
    with pytest.raises((ValueError, TypeError), match=match):
        leap_attention(q, k, v, qp, kp, causal=True, cu_seqlens=cu, backend="triton")


def test_cu_seqlens_needs_a_batch_of_one():
    q, k, v, qp, kp, _ = make_inputs(2, 1, 10, 10, 4)
    with pytest.raises(ValueError, match="batch of one"):
        leap_attention(q, k, v, qp, kp, cu_seqlens=torch.tensor([0, 10]))
