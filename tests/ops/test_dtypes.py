import pytest
import torch

from leapformer.ops import leap_attention, linear_attention

from .helpers import make_inputs


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
def test_low_precision_inputs_keep_float32_state(dtype, causal):
    q, k, v, qp, kp, mask = make_inputs(2, 2, 70, 70, 8, pad_lengths=[70, 50])
    ref = leap_attention(q, k, v, qp, kp, causal=causal, key_padding_mask=mask, mode="parallel")
    cast = [t.to(dtype) for t in (q, k, v, qp, kp)]
    o, st = leap_attention(*cast, causal=causal, key_padding_mask=mask, chunk_size=16,
                           output_final_state=True)
    assert o.dtype == dtype
    assert st.s.dtype == torch.float32
    # compare with the float64 oracle on the rounded inputs: the error is the output rounding only
    ref_cast = leap_attention(*[t.double() for t in cast], causal=causal, key_padding_mask=mask,
                              mode="parallel")
    tol = {torch.float32: 1e-5, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(o.double(), ref_cast, rtol=tol, atol=tol)
    assert (o.double() - ref).abs().max() < 0.1


def test_bfloat16_gradients_flow():
    q, k, v, *_ = make_inputs(1, 2, 20, 20, 4, dtype=torch.bfloat16, grad=True)
    linear_attention(q, k, v, causal=True, chunk_size=8).float().sum().backward()
    assert q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad.float()).all()
