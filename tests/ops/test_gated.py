"""Gated linear attention (GLA decay, with and without LeaP re-weighting): the chunk and
recurrent forms and the decoding step against the quadratic oracle, and the oracle
against the recurrence written out in the test."""

import math

import pytest
import torch

from leapformer.ops import (
    LinearAttentionState,
    gated_leap_attention,
    gated_linear_attention,
    gated_step_,
    gla_log_decay,
    leap_attention,
    linear_attention,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(B, H, N, D, Dv, *, seed, pad_lengths=None, gate_scale=3.0, grad=False):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, H, N, D, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(B, H, N, Dv, generator=g, dtype=torch.float64)
    logits = gate_scale * torch.randn(B, H, N, D, generator=g, dtype=torch.float64)
    qp, kp = (torch.rand(B, H, N, generator=g, dtype=torch.float64) for _ in range(2))
    mask = None
    if pad_lengths is not None:
        mask = torch.arange(N)[None, :] >= torch.tensor(pad_lengths)[:, None]
    tensors = [q, k, v, logits, qp, kp]
    if grad:
        for t in tensors:
            t.requires_grad_(True)
    return tensors, mask


def _call(leap, q, k, v, logits, qp, kp, tau=2.0, **kw):
    ld = gla_log_decay(logits, tau)
    if leap:
        return gated_leap_attention(q, k, v, ld, qp, kp, **kw)
    return gated_linear_attention(q, k, v, ld, **kw)


def _explicit(q, k, v, logits, qp, kp, tau, leap, mask=None, clamp=0.1):
    """The recurrence ``S_t = diag(a_t) S_{t-1} + phi(k_t)^T v_t`` with
    ``a = sigmoid(logits)^(1/tau)`` and the re-weighting cosine, written with loops."""
    B, H, N, _ = q.shape
    a = torch.sigmoid(logits) ** (1 / tau)
    out = torch.zeros(B, H, N, v.shape[-1], dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for i in range(N):
                num = torch.zeros(v.shape[-1], dtype=q.dtype)
                den = torch.zeros((), dtype=q.dtype)
                for j in range(i + 1):
                    if mask is not None and mask[b, j]:
                        continue
                    decay = torch.ones_like(a[b, h, 0])
                    for t in range(j + 1, i + 1):
                        if mask is None or not mask[b, t]:
                            decay = decay * a[b, h, t]
                    w = (torch.relu(q[b, h, i]) * torch.relu(k[b, h, j]) * decay).sum()
                    if leap:
                        w = w * torch.cos(math.pi / 2 * (qp[b, h, i] - kp[b, h, j]))
                    num = num + w * v[b, h, j]
                    den = den + w
                out[b, h, i] = num / den.clamp(min=clamp)
    return out


@pytest.mark.parametrize("leap", [False, True])
def test_oracle_equals_the_recurrence_written_out(leap):
    (q, k, v, logits, qp, kp), mask = _inputs(2, 2, 7, 3, 2, seed=1, pad_lengths=[7, 4])
    mask[0, 2] = True  # a padded slot inside a sequence decays nothing
    want = _explicit(q, k, v, logits, qp, kp, 2.0, leap, mask)
    for mode in ("parallel", "chunk", "recurrent"):
        got = _call(leap, q, k, v, logits, qp, kp, mode=mode, key_padding_mask=mask,
                    chunk_size=3)
        torch.testing.assert_close(got, want)


CASES = [  # (B, H, N, D, Dv, pad_lengths, seed)
    (2, 3, 37, 4, 5, None, 0),
    (2, 1, 70, 5, 3, [70, 41], 1),
    (1, 2, 1, 3, 4, None, 2),
    (3, 2, 20, 2, 6, [20, 1, 13], 3),
]


@pytest.mark.parametrize("leap", [False, True])
@pytest.mark.parametrize("case", CASES, ids=[f"N{c[2]}-pad{c[5] is not None}" for c in CASES])
def test_forms_equal_the_oracle_values_and_gradients(leap, case):
    B, H, N, D, Dv, pad, seed = case
    tensors, mask = _inputs(B, H, N, D, Dv, seed=seed, pad_lengths=pad, grad=True)
    used = tensors if leap else tensors[:4]
    probe = torch.randn(B, H, N, Dv, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
    if mask is not None:
        probe = probe.masked_fill(mask[:, None, :, None], 0.0)  # rows of padded queries

    def run(mode, chunk_size=64):
        o = _call(leap, *tensors, mode=mode, key_padding_mask=mask, chunk_size=chunk_size)
        return o, torch.autograd.grad((o * probe).sum(), used)

    ref, ref_grads = run("parallel")
    forms = [("recurrent", 64)] + [("chunk", c) for c in (1, 3, 16, 32, 64)]
    for mode, chunk_size in forms:
        o, grads = run(mode, chunk_size)
        torch.testing.assert_close(o, ref, msg=f"{mode} chunk_size={chunk_size}")
        for name, g, r in zip(("q", "k", "v", "gate logits", "q_prop", "k_prop"), grads,
                              ref_grads):
            torch.testing.assert_close(g, r, msg=f"d{name}, {mode} chunk_size={chunk_size}")


@pytest.mark.parametrize("leap", [False, True])
@pytest.mark.parametrize("mode", ["parallel", "chunk", "recurrent"])
def test_split_and_resumed_from_the_state_equals_one_call(leap, mode):
    (q, k, v, logits, qp, kp), mask = _inputs(2, 2, 23, 4, 3, seed=4, pad_lengths=[23, 15])
    full, state = _call(leap, q, k, v, logits, qp, kp, mode=mode, key_padding_mask=mask,
                        chunk_size=8, output_final_state=True)
    ref_full, ref_state = _call(leap, q, k, v, logits, qp, kp, mode="parallel",
                                key_padding_mask=mask, output_final_state=True)
    torch.testing.assert_close(full, ref_full)
    torch.testing.assert_close(state.s, ref_state.s)
    cut = 9
    parts, s = [], None
    for sl in (slice(0, cut), slice(cut, None)):
        o, s = _call(leap, q[:, :, sl], k[:, :, sl], v[:, :, sl], logits[:, :, sl],
                     qp[:, :, sl], kp[:, :, sl], mode=mode, key_padding_mask=mask[:, sl],
                     chunk_size=8, initial_state=s, output_final_state=True)
        parts.append(o)
    torch.testing.assert_close(torch.cat(parts, 2), full)
    torch.testing.assert_close(s.s, state.s)
    assert isinstance(s, LinearAttentionState) and s.groups == (2 if leap else 1)


@pytest.mark.parametrize("normalize", ["clamp", "eps", "none"])
def test_normalisations_agree_across_forms(normalize):
    (q, k, v, logits, qp, kp), _ = _inputs(1, 2, 19, 3, 2, seed=5)
    ref = _call(True, q, k, v, logits, qp, kp, mode="parallel", normalize=normalize)
    for mode in ("chunk", "recurrent"):
        got = _call(True, q, k, v, logits, qp, kp, mode=mode, normalize=normalize, chunk_size=16)
        torch.testing.assert_close(got, ref)
    num = _call(True, q, k, v, logits, qp, kp, mode="parallel", normalize="none")
    ones = _call(True, q, k, torch.ones_like(v[..., :1]), logits, qp, kp, mode="parallel",
                 normalize="none")  # the denominator: the same weights on a ones column
    want = {"clamp": num / ones.clamp(min=0.1), "eps": num / (ones + 1e-6), "none": num}
    torch.testing.assert_close(ref, want[normalize])


def test_weights_are_the_normalised_oracle_matrix():
    (q, k, v, logits, qp, kp), mask = _inputs(2, 1, 9, 3, 2, seed=6, pad_lengths=[9, 5])
    o, w = _call(True, q, k, v, logits, qp, kp, return_weights=True, key_padding_mask=mask)
    torch.testing.assert_close(w @ v, o)
    assert torch.all(w.triu(1) == 0) and torch.all(w[1, :, :, 5:] == 0)


def test_no_decay_is_the_ungated_attention():
    (q, k, v, _, qp, kp), mask = _inputs(2, 2, 30, 4, 3, seed=7, pad_lengths=[30, 11])
    zero = torch.zeros(2, 2, 30, 4, dtype=torch.float64)
    for mode in ("parallel", "chunk", "recurrent"):
        got = gated_leap_attention(q, k, v, zero, qp, kp, mode=mode, key_padding_mask=mask,
                                   chunk_size=16)
        want = leap_attention(q, k, v, qp, kp, causal=True, key_padding_mask=mask)
        torch.testing.assert_close(got, want)
        got = gated_linear_attention(q, k, v, zero, mode=mode, key_padding_mask=mask)
        want = linear_attention(q, k, v, causal=True, key_padding_mask=mask)
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("leap", [False, True])
def test_decoding_step_equals_the_recurrent_form(leap):
    (q, k, v, logits, qp, kp), _ = _inputs(2, 3, 6, 4, 5, seed=8)
    ld = gla_log_decay(logits, 16.0)
    want = _call(leap, q, k, v, logits, qp, kp, tau=16.0, mode="recurrent")
    G = 2 if leap else 1
    s = LinearAttentionState.zeros(2, 3, G, 4, 5, dtype=torch.float64).s
    outs = []
    for t in range(6):
        f = torch.relu(torch.stack((q[:, :, t:t + 1], k[:, :, t:t + 1])))
        props = torch.stack((qp[:, :, t:t + 1], kp[:, :, t:t + 1])) if leap else None
        outs.append(gated_step_(f, v[:, :, t:t + 1], s, ld[:, :, t:t + 1], props))
    torch.testing.assert_close(torch.cat(outs, 2), want)


def test_strong_decay_stays_finite_in_float32():
    """Chunk-local log-space sums: a decay of exp(-60) per token over 64-token chunks
    (exp(+3840) if factored naively) neither overflows nor gives NaN gradients."""
    (q, k, v, logits, qp, kp), _ = _inputs(1, 2, 130, 4, 3, seed=9, grad=True)
    tensors = [t.detach().float().requires_grad_(True) for t in (q, k, v, logits, qp, kp)]
    with torch.no_grad():
        tensors[3][..., :2] -= 60.0  # channels 0, 1: forget almost at once
    o = _call(True, *tensors, tau=1.0, mode="chunk", chunk_size=64)
    ref = _call(True, *tensors, tau=1.0, mode="recurrent")
    torch.testing.assert_close(o, ref, rtol=1e-4, atol=1e-5)
    grads = torch.autograd.grad(o.sum(), tensors)
    assert all(torch.isfinite(g).all() for g in grads)
    assert o.dtype == torch.float32


def test_bad_input_is_a_one_line_error():
    (q, k, v, logits, qp, kp), _ = _inputs(1, 2, 5, 3, 2, seed=10)
    ld = gla_log_decay(logits)
    with pytest.raises(ValueError, match="log_decay must have shape"):
        gated_linear_attention(q, k, v, ld[..., :2])
    with pytest.raises(TypeError, match="log_decay must be a torch.Tensor"):
        gated_linear_attention(q, k, v, 0.5)
    with pytest.raises(ValueError, match="tau must be a positive finite number"):
        gla_log_decay(logits, 0.0)
    with pytest.raises(ValueError, match="causal attention needs as many queries"):
        gated_linear_attention(q[:, :, :3], k, v, ld)
    with pytest.raises(ValueError, match="return_weights=True needs mode='parallel'"):
        gated_linear_attention(q, k, v, ld, mode="chunk", return_weights=True)
    with pytest.raises(ValueError, match="q_prop must hold proportions"):
        gated_leap_attention(q, k, v, ld, qp + 2.0, kp)
    with pytest.raises(ValueError, match="needs both q_prop and k_prop"):
        gated_leap_attention(q, k, v, ld, None, kp)
    state = LinearAttentionState.zeros(1, 2, 1, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="initial_state does not fit"):
        gated_leap_attention(q, k, v, ld, qp, kp, initial_state=state)
