"""The FLA interop identity: LeaP (and plain linear attention) equals FLA's linear
attention on the expanded features with a ones column on the values. Checked on CPU
with FLA's pure-PyTorch recurrent reference at ``scale=1`` (its chunk reference
disagrees with its own recurrent one); ``backend="fla"`` runs FLA's
``chunk_linear_attn`` on CUDA with the same inputs."""

import importlib.util
from pathlib import Path

import pytest
import torch

from leapformer.ops import LinearAttentionState, leap_attention, linear_attention
from leapformer.ops.attention import _divisor
from leapformer.ops.feature_maps import get_feature_map
from leapformer.ops.triton.fla import fla_attention

from ..helpers import make_inputs
from .helpers import assert_close_all, values_and_grads

pytestmark = pytest.mark.usefixtures("one_thread")

_FLA = importlib.util.find_spec("fla")
if _FLA is None:
    raise ImportError("the FLA interop test needs flash-linear-attention: "
                      "pip install 'leapformer[fla]'")


def _load_reference():
    """FLA's ``ops/linear_attn/naive.py`` (torch and einops only), loaded by path: importing
    the ``fla`` package loads its models and every kernel module (seconds of CPU)."""
    path = Path(_FLA.submodule_search_locations[0]) / "ops" / "linear_attn" / "naive.py"
    spec = importlib.util.spec_from_file_location("fla_linear_attn_naive", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.naive_recurrent_linear_attn


naive_recurrent_linear_attn = _load_reference()

TOL = dict(rtol=1e-5, atol=1e-5)


def _via_fla(reweight, mask, feature_map="relu"):
    def fn(q, k, v, qp, kp, s):
        num, den, final = fla_attention(
            q, k, v, qp if reweight else None, kp if reweight else None,
            phi=get_feature_map(feature_map), key_padding_mask=mask, s0=s,
            cdtype=torch.float32, kernel=naive_recurrent_linear_attn)
        return num / _divisor(den, "clamp", 0.1), final
    return fn


def _via_torch(reweight, mask, feature_map="relu"):
    def fn(q, k, v, qp, kp, s):
        kw = dict(causal=True, key_padding_mask=mask, feature_map=feature_map,
                  initial_state=LinearAttentionState(s, v.shape[-1]), output_final_state=True,
                  backend="torch", mode="chunk", chunk_size=8)
        if reweight:
            o, final = leap_attention(q, k, v, qp, kp, **kw)
        else:
            o, final = linear_attention(q, k, v, **kw)
        return o, final.s
    return fn


@pytest.mark.parametrize("reweight,feature_map", [(True, "relu"), (False, "elu")])
@pytest.mark.parametrize("N", [1, 19])
def test_fla_linear_attention_on_expanded_features(reweight, feature_map, N):
    q, k, v, qp, kp, mask = make_inputs(2, 2, N, N, 4, 3, dtype=torch.float32, grad=True,
                                        pad_lengths=[N, max(1, N - 5)])
    G = 2 if reweight else 1
    s = torch.rand(2, 2, G, 4, 8, generator=torch.Generator().manual_seed(2))
    s[..., 4:] = 0.0  # the padding columns of a real state
    s.requires_grad_()
    inputs = (q, k, v, qp, kp, s)
    assert_close_all(values_and_grads(_via_fla(reweight, mask, feature_map), inputs),
                     values_and_grads(_via_torch(reweight, mask, feature_map), inputs), **TOL)
