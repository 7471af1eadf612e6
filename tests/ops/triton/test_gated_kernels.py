"""The gated Triton kernels (GLA's decay, with and without LeaP re-weighting), run by
Triton's CPU interpreter, equal the torch chunk form and the quadratic oracle: values
and the gradients of q, k, v, both proportions, the log decay and the initial state,
lengths 1 to 200, padding, feature maps, normalisations, strong decays, state in and
out, float64 and float32; the nn mechanisms pick them through the backend."""

import pytest
import torch

from leapformer.ops import (
    LinearAttentionState,
    gated_leap_attention,
    gated_linear_attention,
    gla_log_decay,
)

from leapformer.ops._fused import padded_width

from .helpers import assert_close_all, values_and_grads

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = dict(rtol=1e-9, atol=1e-10)
F32 = dict(rtol=2e-4, atol=2e-5)


def _inputs(B, H, N, D, Dv, *, seed, dtype=torch.float64, gate_scale=3.0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, H, N, D, generator=g, dtype=dtype) for _ in range(2))
    v = torch.randn(B, H, N, Dv, generator=g, dtype=dtype)
    logits = gate_scale * torch.randn(B, H, N, D, generator=g, dtype=dtype)
    qp, kp = (torch.rand(B, H, N, generator=g, dtype=dtype) for _ in range(2))
    return [t.requires_grad_() for t in (q, k, v, logits, qp, kp)]


def _mask(N, lengths):
    return torch.arange(N)[None, :] >= torch.tensor(lengths)[:, None]


def _fn(backend, leap, tau=2.0, **kw):
    def fn(q, k, v, logits, qp, kp):
        ld = gla_log_decay(logits, tau)
        if leap:
            return gated_leap_attention(q, k, v, ld, qp, kp, backend=backend, **kw)
        return gated_linear_attention(q, k, v, ld, backend=backend, **kw)
    return fn


@pytest.mark.parametrize("leap", [True, False], ids=["gated-leap", "gla"])
@pytest.mark.parametrize("N", [1, 17, 64, 200])
def test_equals_torch_chunk_and_oracle(leap, N):
    inputs = _inputs(2, 2, N, 4, 3, seed=N)
    mask = _mask(N, [N, max(1, N - 6)])
    kw = dict(key_padding_mask=mask, chunk_size=64 if N > 64 else 16)
    got = values_and_grads(_fn("triton", leap, **kw), inputs)
    want = values_and_grads(_fn("torch", leap, mode="chunk", **kw), inputs)
    assert_close_all(got, want, **F64)
    oracle = _fn("torch", leap, mode="parallel", **kw)(*inputs)
    torch.testing.assert_close(got[0], oracle.detach().flatten(), **F64)


@pytest.mark.parametrize("feature_map,normalize,leap", [
    ("elu", "eps", False), ("identity", "none", True), ("relu", "clamp", False),
    ("elu", "clamp", True)])
def test_feature_maps_and_normalisations(feature_map, normalize, leap):
    inputs = _inputs(2, 1, 23, 4, 5, seed=3, gate_scale=1.0)
    kw = dict(key_padding_mask=_mask(23, [23, 12]), feature_map=feature_map,
              normalize=normalize)
    assert_close_all(values_and_grads(_fn("triton", leap, **kw), inputs),
                     values_and_grads(_fn("torch", leap, **kw), inputs), **F64)


def test_strong_decay_does_not_overflow():
    """Log decays down to -60 per token: every exponent the kernels take is <= 0."""
    inputs = _inputs(1, 2, 40, 4, 4, seed=5, gate_scale=40.0)
    got = values_and_grads(_fn("triton", True, tau=0.5), inputs)
    want = values_and_grads(_fn("torch", True, tau=0.5, mode="parallel"), inputs)
    assert all(torch.isfinite(t).all() for t in (got[0], *got[1]))
    assert_close_all(got, want, **F64)


@pytest.mark.parametrize("leap", [True, False], ids=["gated-leap", "gla"])
def test_state_in_and_out_with_gradients(leap):
    """A prefix's final state fed to the rest equals one call over the whole sequence,
    and gradients flow through the state both ways (into s0, out of the final state)."""
    B, H, N, D, Dv = 2, 2, 30, 4, 3
    G = 2 if leap else 1
    g = torch.Generator().manual_seed(7)
    # padding columns non-zero too: they decay with the state, so they reach the log decay
    s0 = torch.randn(B, H, G, D, padded_width(Dv), generator=g, dtype=torch.float64).abs()
    s0[..., Dv] += 1.0  # a positive denominator state

    def run(backend):
        def fn(q, k, v, logits, qp, kp, s):
            ld = gla_log_decay(logits, 2.0)
            state = LinearAttentionState(s, Dv)
            kw = dict(initial_state=state, output_final_state=True, backend=backend,
                      key_padding_mask=_mask(N, [N, N - 4]))
            if leap:
                o, final = gated_leap_attention(q, k, v, ld, qp, kp, **kw)
            else:
                o, final = gated_linear_attention(q, k, v, ld, **kw)
            return o, final.s
        return fn

    inputs = [*_inputs(B, H, N, D, Dv, seed=8), s0.requires_grad_()]
    assert_close_all(values_and_grads(run("triton"), inputs),
                     values_and_grads(run("torch"), inputs), **F64)


def test_loss_on_the_final_state_alone():
    """Gradients that reach k, v, the key proportions and the log decay only through the
    final state (the exp(B_last) term of the log decay's gradient)."""
    def run(backend):
        def fn(q, k, v, logits, qp, kp):
            _, final = gated_leap_attention(q, k, v, gla_log_decay(logits, 2.0), qp, kp,
                                            backend=backend, output_final_state=True,
                                            key_padding_mask=_mask(19, [19, 13]))
            return final.s
        return fn

    q, k, v, logits, qp, kp = _inputs(2, 1, 19, 4, 3, seed=17)
    inputs = (q.detach(), k, v, logits, qp.detach(), kp)  # the state does not read queries
    assert_close_all(values_and_grads(run("triton"), inputs),
                     values_and_grads(run("torch"), inputs), **F64)


def test_odd_head_size_and_broadcast_proportions():
    """D = 20 (register block 32), Dv = 1, proportions shared by the heads ``[B,1,N]``,
    non-contiguous q and k."""
    q, k, v, logits, qp, kp = (t.detach() for t in _inputs(2, 3, 37, 20, 1, seed=18))
    q = q.transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()  # non-contiguous
    k = k.transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()
    qp, kp = qp[:, :1].clone().requires_grad_(), kp[:, :1].clone().requires_grad_()
    inputs = (q, k, v.requires_grad_(), logits.requires_grad_(), qp, kp)
    kw = dict(key_padding_mask=_mask(37, [37, 30]))
    assert_close_all(values_and_grads(_fn("triton", True, **kw), inputs),
                     values_and_grads(_fn("torch", True, mode="parallel", **kw), inputs), **F64)


def test_prefix_state_continues():
    inputs = [t.detach() for t in _inputs(1, 2, 33, 4, 3, seed=9)]
    q, k, v, logits, qp, kp = inputs
    ld = gla_log_decay(logits, 2.0)
    whole = gated_leap_attention(q, k, v, ld, qp, kp, backend="triton")
    cut = 20
    head, state = gated_leap_attention(q[:, :, :cut], k[:, :, :cut], v[:, :, :cut],
                                       ld[:, :, :cut], qp[..., :cut], kp[..., :cut],
                                       backend="triton", output_final_state=True)
    tail = gated_leap_attention(q[:, :, cut:], k[:, :, cut:], v[:, :, cut:], ld[:, :, cut:],
                                qp[..., cut:], kp[..., cut:], backend="triton",
                                initial_state=state)
    torch.testing.assert_close(torch.cat((head, tail), 2), whole, **F64)


def test_float32():
    inputs = _inputs(1, 2, 64, 8, 8, seed=11, dtype=torch.float32)
    kw = dict(key_padding_mask=_mask(64, [50]))
    assert_close_all(values_and_grads(_fn("triton", True, **kw), inputs),
                     values_and_grads(_fn("torch", True, mode="chunk", **kw), inputs), **F32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_inputs(dtype):
    """16-bit inputs (float32 inside, the log decay in float32): output and gradients in
    the input dtype, equal to the torch forms up to the final rounding."""
    q, k, v, logits, qp, kp = (t.detach() for t in _inputs(1, 2, 40, 8, 8, seed=15,
                                                            dtype=torch.float32))
    q, k, v = (t.to(dtype).requires_grad_() for t in (q, k, v))
    inputs = (q, k, v, logits.requires_grad_(), qp.requires_grad_(), kp.requires_grad_())
    kw = dict(key_padding_mask=_mask(40, [35]))
    got = values_and_grads(_fn("triton", True, **kw), inputs)
    want = values_and_grads(_fn("torch", True, mode="chunk", **kw), inputs)
    assert got[0].dtype == dtype and all(g.dtype == dtype for g in got[1][:3])
    assert_close_all(got, want, rtol=2e-2, atol=2e-2)


def test_padded_positions_do_not_leak():
    """NaN and inf in padded keys, values, proportions and log decays are never read."""
    q, k, v, logits, qp, kp = (t.detach() for t in _inputs(2, 1, 20, 4, 3, seed=16))
    mask = _mask(20, [20, 9])
    ld = gla_log_decay(logits, 2.0)
    dirty = [t.clone() for t in (k, v, kp, ld)]
    for t in dirty:
        t[1, :, 9:] = float("nan")
    dirty[1][1, :, 9:] = float("inf")
    got = gated_leap_attention(q, dirty[0], dirty[1], dirty[3], qp, dirty[2], backend="triton",
                               key_padding_mask=mask, check_proportions=False)
    want = gated_leap_attention(q, k, v, ld, qp, kp, backend="torch", key_padding_mask=mask)
    torch.testing.assert_close(got, want, **F64)


def test_recurrent_mode_is_the_kernel_on_few_tokens():
    inputs = [t.detach() for t in _inputs(2, 1, 3, 4, 4, seed=12)]
    got = _fn("triton", True, mode="recurrent")(*inputs)
    want = _fn("torch", True, mode="recurrent")(*inputs)
    torch.testing.assert_close(got, want, **F64)


def test_parallel_and_weights_refused():
    inputs = [t.detach() for t in _inputs(1, 1, 4, 4, 4, seed=13)]
    with pytest.raises(ValueError, match="backend='triton' runs mode"):
        _fn("triton", True, mode="parallel")(*inputs)
    with pytest.raises(ValueError, match="backend='fla' has no gated form"):
        _fn("fla", True)(*inputs)


def test_auto_keeps_torch_on_cpu():
    """On CPU tensors ``auto`` is the torch form, even under the interpreter."""
    inputs = [t.detach() for t in _inputs(1, 1, 9, 4, 4, seed=14)]
    torch.testing.assert_close(_fn("auto", True)(*inputs), _fn("torch", True)(*inputs),
                               rtol=0, atol=0)


@pytest.mark.parametrize("mechanism", ["gated-leap", "gla"])
def test_nn_mechanism_through_the_kernels(monkeypatch, mechanism):
    """The nn layer's causal forward with ``auto`` resolved to the kernels (what CUDA
    does) equals the torch forms: output and the gradients of every parameter, gate
    included."""
    from leapformer.nn import MultiheadAttention
    from leapformer.ops import gated

    torch.manual_seed(0)
    layer = MultiheadAttention(16, 2, mechanism).double()
    x = torch.randn(2, 21, 16, dtype=torch.float64)
    mask = _mask(21, [21, 15])

    def run():
        layer.zero_grad()
        out = layer(x, causal=True, key_padding_mask=mask)[0]
        out.pow(2).sum().backward()
        return out.detach(), [p.grad.clone() for p in layer.parameters() if p.grad is not None]

    want = run()
    picked = []
    resolve = gated.resolve_backend

    def kernels(backend, **kw):
        picked.append(backend)
        return "triton" if backend == "auto" else resolve(backend, **kw)

    monkeypatch.setattr(gated, "resolve_backend", kernels)
    got = run()
    assert picked and set(picked) == {"auto"}
    torch.testing.assert_close(got[0], want[0], **F64)
    assert len(got[1]) == len(want[1]) > 0
    for a, b in zip(got[1], want[1]):
        torch.testing.assert_close(a, b, **F64)
