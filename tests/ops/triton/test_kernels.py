"""The Triton kernels (run by Triton's CPU interpreter) equal the torch forms: values and
gradients of q, k, v and both proportions, causal and bidirectional, lengths 1 to 200,
padding, feature maps, normalisations, state in and out, float64 and float32."""

import pytest
import torch

from leapformer.ops import (
    LinearAttentionState,
    cosformer_attention,
    leap_attention,
    linear_attention,
)

from ..helpers import make_inputs
from .helpers import assert_close_all, values_and_grads

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = dict(rtol=1e-9, atol=1e-10)
F32 = dict(rtol=2e-4, atol=2e-5)


def _leap(backend, **kw):
    def fn(q, k, v, qp, kp):
        return leap_attention(q, k, v, qp, kp, backend=backend, **kw)
    return fn


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("N", [1, 17, 64, 200])
def test_leap_equals_torch_chunk_and_oracle(causal, N):
    q, k, v, qp, kp, mask = make_inputs(2, 2, N, N, 4, 3, grad=True,
                                        pad_lengths=[N, max(1, N - 6)], seed=N)
    qp = qp[:, :1].detach().requires_grad_()  # proportions shared by the heads
    inputs = (q, k, v, qp, kp)
    kw = dict(causal=causal, key_padding_mask=mask, chunk_size=64 if N > 64 else 16)
    got = values_and_grads(_leap("triton", **kw), inputs)
    want = values_and_grads(_leap("torch", mode="chunk", **kw), inputs)
    assert_close_all(got, want, **F64)
    oracle = leap_attention(*inputs, mode="parallel", backend="torch", **kw)
    torch.testing.assert_close(got[0], oracle.detach().flatten(), **F64)


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("feature_map,normalize,reweight", [
    ("elu", "eps", False), ("identity", "none", True), ("relu", "clamp", False),
    ("elu", "clamp", True)])
def test_feature_maps_and_normalisations(causal, feature_map, normalize, reweight):
    q, k, v, qp, kp, mask = make_inputs(2, 1, 17, 17, 4, 5, grad=True, pad_lengths=[17, 12])

    def run(backend):
        def fn(q, k, v, qp, kp):
            kw = dict(causal=causal, key_padding_mask=mask, feature_map=feature_map,
                      normalize=normalize, chunk_size=16, backend=backend)
            if reweight:
                return leap_attention(q, k, v, qp, kp, **kw)
            return linear_attention(q, k, v, **kw)
        return fn

    inputs = (q, k, v, qp, kp) if reweight else (q, k, v, None, None)
    assert_close_all(values_and_grads(run("triton"), inputs),
                     values_and_grads(run("torch"), inputs), **F64)


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_float32(causal):
    q, k, v, qp, kp, mask = make_inputs(1, 2, 64, 64, 8, 8, grad=True, dtype=torch.float32,
                                        pad_lengths=[50])
    kw = dict(causal=causal, key_padding_mask=mask, chunk_size=16)
    got = values_and_grads(_leap("triton", **kw), (q, k, v, qp, kp))
    want = values_and_grads(_leap("torch", mode="chunk", **kw), (q, k, v, qp, kp))
    assert_close_all(got, want, **F32)


def test_cross_attention_lengths():
    """Bidirectional with M != N (cross-attention) and a padded source."""
    q, k, v, qp, kp, mask = make_inputs(2, 2, 9, 70, 4, 3, grad=True, pad_lengths=[70, 33])
    got = values_and_grads(_leap("triton", key_padding_mask=mask), (q, k, v, qp, kp))
    want = values_and_grads(_leap("torch", mode="chunk", key_padding_mask=mask),
                            (q, k, v, qp, kp))
    assert_close_all(got, want, **F64)


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_state_in_and_out_with_gradients(causal):
    """Initial state in, final state out; gradients reach the initial state and flow
    back from the final one."""
    q, k, v, qp, kp, _ = make_inputs(2, 2, 21, 21, 4, 3, grad=True, seed=3)
    g = torch.Generator().manual_seed(4)
    s = (torch.rand(2, 2, 2, 4, 8, generator=g, dtype=torch.float64)).requires_grad_()

    def run(backend):
        def fn(q, k, v, qp, kp, s):
            o, final = leap_attention(q, k, v, qp, kp, causal=causal, chunk_size=16,
                                      initial_state=LinearAttentionState(s, 3),
                                      output_final_state=True, backend=backend)
            return o, final.s
        return fn

    inputs = (q, k, v, qp, kp, s)
    assert_close_all(values_and_grads(run("triton"), inputs),
                     values_and_grads(run("torch"), inputs), **F64)


def test_split_sequence_resumes_from_state():
    q, k, v, qp, kp, _ = make_inputs(1, 2, 30, 30, 4, 3)
    whole = leap_attention(q, k, v, qp, kp, causal=True, backend="triton", chunk_size=16)
    first, state = leap_attention(q[:, :, :13], k[:, :, :13], v[:, :, :13], qp[..., :13],
                                  kp[..., :13], causal=True, backend="triton", chunk_size=16,
                                  output_final_state=True)
    second = leap_attention(q[:, :, 13:], k[:, :, 13:], v[:, :, 13:], qp[..., 13:],
                            kp[..., 13:], causal=True, backend="triton", chunk_size=16,
                            initial_state=state)
    torch.testing.assert_close(torch.cat((first, second), dim=2), whole, **F64)


def test_decoding_steps_equal_torch_recurrent():
    """The recurrent step (one token, state in and out), five tokens in a row."""
    q, k, v, qp, kp, _ = make_inputs(2, 2, 5, 5, 4, 3, seed=7)
    states = {b: None for b in ("triton", "torch")}
    for t in range(5):
        outs = {}
        for b in states:
            outs[b], states[b] = leap_attention(
                q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1], qp[..., t:t + 1],
                kp[..., t:t + 1], causal=True, mode="recurrent", initial_state=states[b],
                output_final_state=True, backend=b)
        torch.testing.assert_close(outs["triton"], outs["torch"], **F64)
        torch.testing.assert_close(states["triton"].s, states["torch"].s, **F64)


def test_cosformer_per_sequence_lengths():
    q, k, v, _, _, mask = make_inputs(2, 2, 17, 17, 4, 3, grad=True, pad_lengths=[17, 11])
    L = torch.tensor([17, 25])

    def run(backend):
        return lambda q, k, v: cosformer_attention(q, k, v, causal=True, max_length=L,
                                                   key_padding_mask=mask, chunk_size=16,
                                                   backend=backend)

    assert_close_all(values_and_grads(run("triton"), (q, k, v)),
                     values_and_grads(run("torch"), (q, k, v)), **F64)


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_padded_positions_do_not_leak(causal):
    q, k, v, qp, kp, mask = make_inputs(2, 1, 20, 20, 4, 3, pad_lengths=[20, 9])
    dirty_k, dirty_v, dirty_kp = k.clone(), v.clone(), kp.clone()
    dirty_k[1, :, 9:] = float("nan")
    dirty_v[1, :, 9:] = float("inf")
    dirty_kp[1, :, 9:] = float("nan")
    got = leap_attention(q, dirty_k, dirty_v, qp, dirty_kp, causal=causal, key_padding_mask=mask,
                         backend="triton", check_proportions=False)
    want = leap_attention(q, k, v, qp, kp, causal=causal, key_padding_mask=mask, backend="torch")
    torch.testing.assert_close(got, want, **F64)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_half_inputs(dtype, causal):
    """16-bit inputs: float32 inside; output and gradients in the input dtype, equal to the
    torch forms (also float32 inside) up to the final rounding."""
    q, k, v, qp, kp, mask = make_inputs(1, 2, 40, 40, 8, 8, dtype=torch.float32,
                                        pad_lengths=[35])
    q, k, v = (t.to(dtype).requires_grad_() for t in (q, k, v))
    qp.requires_grad_()
    kw = dict(causal=causal, key_padding_mask=mask, chunk_size=16)
    got = values_and_grads(_leap("triton", **kw), (q, k, v, qp, kp))
    want = values_and_grads(_leap("torch", mode="chunk", **kw), (q, k, v, qp, kp))
    assert got[0].dtype == dtype and all(g.dtype == dtype for g in got[1][:3])
    assert_close_all(got, want, rtol=2e-2, atol=2e-2)


def test_second_derivatives_are_refused():
    """The kernels' backward is not itself differentiable: asking for a second derivative
    is an error, not a silently wrong number."""
    q, k, v, qp, kp, _ = make_inputs(1, 1, 5, 5, 4, grad=True)
    o = leap_attention(q, k, v, qp, kp, causal=True, backend="triton")
    (g,) = torch.autograd.grad(o.sum(), q, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        g.sum().backward()
