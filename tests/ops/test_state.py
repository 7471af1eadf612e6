"""Explicit recurrent state: split-and-resume, token-by-token decoding, extendable cross-attention."""

import pytest
import torch

from leapformer.ops import LinearAttentionState, cosformer_attention, leap_attention, linear_attention

from .helpers import make_inputs


@pytest.mark.parametrize("mode", ["chunk", "recurrent", "parallel"])
@pytest.mark.parametrize("split", [1, 17, 39])
def test_split_and_resume_equals_one_call(mode, split):
    T = 40
    q, k, v, qp, kp, _ = make_inputs(2, 2, T, T, 5, 3, seed=split)
    ref, ref_state = leap_attention(q, k, v, qp, kp, causal=True, mode="parallel",
                                    output_final_state=True)
    a, st = leap_attention(q[:, :, :split], k[:, :, :split], v[:, :, :split], qp[..., :split],
                           kp[..., :split], causal=True, mode=mode, chunk_size=8,
                           output_final_state=True)
    b, st2 = leap_attention(q[:, :, split:], k[:, :, split:], v[:, :, split:], qp[..., split:],
                            kp[..., split:], causal=True, mode=mode, chunk_size=8,
                            initial_state=st, output_final_state=True)
    torch.testing.assert_close(torch.cat((a, b), dim=2), ref)
    torch.testing.assert_close(st2.s, ref_state.s)


def test_token_by_token_equals_causal_chunk():
    T = 30
    q, k, v, qp, kp, _ = make_inputs(1, 3, T, T, 4, 6, seed=2)
    ref = leap_attention(q, k, v, qp, kp, causal=True, mode="chunk", chunk_size=7)
    state = LinearAttentionState.zeros(1, 3, 2, 4, 6, dtype=torch.float64)
    outs = []
    for t in range(T):
        s = slice(t, t + 1)
        o, state = leap_attention(q[:, :, s], k[:, :, s], v[:, :, s], qp[..., s], kp[..., s],
                                  causal=True, initial_state=state, output_final_state=True)
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, dim=2), ref)


def test_cosformer_decoding_with_offset():
    T, L = 12, 20
    q, k, v, *_ = make_inputs(1, 2, T, T, 4, seed=3)
    ref = cosformer_attention(q, k, v, causal=True, max_length=L)
    state = None
    outs = []
    for t in range(T):
        s = slice(t, t + 1)
        o, state = cosformer_attention(q[:, :, s], k[:, :, s], v[:, :, s], causal=True,
                                       max_length=L, offset=t, initial_state=state,
                                       output_final_state=True)
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, dim=2), ref)


def test_cross_attention_state_extends_chunk_by_chunk():
    """MLA Algorithm 1: extend the memory sums as source arrives, never recompute."""
    M, N = 4, 23
    q, k, v, qp, kp, _ = make_inputs(2, 2, M, N, 5, 3, seed=4)
    ref, ref_state = leap_attention(q, k, v, qp, kp, mode="parallel", output_final_state=True)
    state = None
    for start in range(0, N, 6):
        s = slice(start, start + 6)
        o, state = leap_attention(q, k[:, :, s], v[:, :, s], qp, kp[..., s], mode="recurrent",
                                  initial_state=state, output_final_state=True)
    torch.testing.assert_close(o, ref)
    torch.testing.assert_close(state.s, ref_state.s)


def test_state_views_hold_the_running_sums():
    q, k, v, *_ = make_inputs(1, 1, 6, 6, 3, 2, seed=5)
    _, st = linear_attention(q, k, v, causal=True, output_final_state=True)
    fk = torch.relu(k)
    torch.testing.assert_close(st.kv[:, :, 0], fk.transpose(-1, -2) @ v)
    torch.testing.assert_close(st.z[:, :, 0], fk.sum(2))
    assert st.groups == 1
    assert st.bytes_per_sequence() == st.s[0].numel() * 8


def test_state_errors():
    q, k, v, qp, kp, _ = make_inputs(2, 2, 3, 3, 4)
    other = LinearAttentionState.zeros(1, 2, 2, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="initial_state"):
        leap_attention(q, k, v, qp, kp, causal=True, initial_state=other)
    wrong_groups = LinearAttentionState.zeros(2, 2, 2, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="another layer"):
        linear_attention(q, k, v, causal=True, initial_state=wrong_groups)
    f32 = LinearAttentionState.zeros(2, 2, 2, 4, 4)
    with pytest.raises(TypeError, match="dtype"):
        leap_attention(q, k, v, qp, kp, causal=True, initial_state=f32)
    with pytest.raises(TypeError, match="LinearAttentionState"):
        leap_attention(q, k, v, qp, kp, causal=True, initial_state=torch.zeros(3))


@pytest.mark.parametrize("reweighted", [False, True])
@pytest.mark.parametrize("normalize", ["clamp", "eps", "none"])
def test_public_extend_and_read_equal_the_parallel_form(reweighted, normalize):
    """``LinearAttentionState.extend_`` (keys in two chunks) then ``read`` equals
    bidirectional attention over all keys (the parallel oracle)."""
    torch.manual_seed(0)
    B, H, M, N, D = 2, 3, 5, 7, 4
    q, k, v = torch.randn(B, H, M, D), torch.randn(B, H, N, D), torch.randn(B, H, N, D)
    fq, fk = torch.relu(q), torch.relu(k)
    qp, kp = torch.rand(B, H, M), torch.rand(B, H, N)
    state = LinearAttentionState.zeros(B, H, 2 if reweighted else 1, D, D)
    wq = wk = None
    if reweighted:
        wq = torch.stack((torch.sin(torch.pi / 2 * qp), torch.cos(torch.pi / 2 * qp)), -1)
        wk = torch.stack((torch.sin(torch.pi / 2 * kp), torch.cos(torch.pi / 2 * kp)), -1)
    state.extend_(fk[:, :, :3], v[:, :, :3], None if wk is None else wk[:, :, :3])
    state.extend_(fk[:, :, 3:], v[:, :, 3:], None if wk is None else wk[:, :, 3:])
    got = state.read(fq, wq, normalize=normalize, eps=0.1)
    a = fq @ fk.transpose(-1, -2)
    if reweighted:
        a = a * torch.cos(torch.pi / 2 * (qp[..., :, None] - kp[..., None, :]))
    num, den = a @ v, a.sum(-1, keepdim=True)
    want = {"clamp": num / den.clamp_min(0.1), "eps": num / (den + 0.1), "none": num}[normalize]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_read_rejects_an_unknown_normalisation():
    state = LinearAttentionState.zeros(1, 1, 1, 2, 2)
    with pytest.raises(ValueError, match="normalize"):
        state.read(torch.ones(1, 1, 1, 2), normalize="sum")
