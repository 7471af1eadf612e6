"""Stage 1 (attention transfer) lowers the per-layer MSE and trains only the new
parameters; stage 2 (LoRA) trains only LoRA adapters on q/k/v/o of the linearised
layers; a linearised model survives save and load."""

from __future__ import annotations

import pytest
import torch

from leapformer.linearize import (
    attention_transfer,
    finetune_lora,
    is_linearized,
    layer_mse,
    linear_cores,
    linearize,
    load_linearized,
    lora_targets,
    new_parameters,
    save_linearized,
)

from ._tiny import VOCAB, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(seed=0, B=2, T=16):
    ids = torch.randint(0, VOCAB, (B, T + 1), generator=torch.Generator().manual_seed(seed))
    return ids[:, :-1], ids[:, 1:]


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("arch,mechanism,feature_map", [("gpt2", "leap", "relu"),
                                                        ("llama", "leap", "relu"),
                                                        ("llama", "linear", "hedgehog")])
def test_stage1_lowers_mse_and_trains_only_new_parameters(arch, mechanism, feature_map):
    model = tiny(arch, sharp=4.0)
    linearize(model, mechanism, feature_map=feature_map)
    batch = _batch()
    before_mse = layer_mse(model, batch[0])
    before = _snapshot(model)
    res = attention_transfer(model, lambda i: batch, 30, lr=3e-2)
    after_mse = layer_mse(model, batch[0])
    assert res["steps"] == 30 and len(res["losses"]) == 30
    assert res["losses"][0] == pytest.approx(sum(before_mse), rel=1e-5)
    assert sum(after_mse) < 0.97 * sum(before_mse)
    new = {id(p) for p in new_parameters(model)}
    for name, p in model.named_parameters():
        if id(p) in new:
            assert not torch.equal(p, before[name]), name
        else:
            assert torch.equal(p, before[name]), name
        assert p.requires_grad  # restored


def test_stage1_without_new_parameters_is_skipped():
    model = tiny("gpt2")
    linearize(model, "linear")
    assert attention_transfer(model, lambda i: _batch(), 5) == {"steps": 0, "losses": []}
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        attention_transfer(model, lambda i: _batch(), -1)


@pytest.mark.parametrize("arch,expected", [
    # GPT-2: fused c_attn (32 -> 96) and c_proj (32 -> 32); Llama: q/o 32 -> 32, k/v 32 -> 16
    ("gpt2", 4 * ((32 + 96) + (32 + 32))),
    ("llama", 4 * (2 * (32 + 32) + 2 * (32 + 16))),
])
def test_stage2_trains_only_lora(arch, expected, tmp_path):
    model = tiny(arch)
    linearize(model, "leap", layers=[1])
    targets = lora_targets(model)
    assert all(".1." in t or "h.1." in t for t in targets)  # the linearised layer only
    before = _snapshot(model)
    batch = _batch(1)
    model, res = finetune_lora(model, lambda i: batch, 4, lr=1e-2, rank=4, merge=False)
    assert res["trainable"] == expected
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert res["losses"][-1] < res["losses"][0]
    merged = model.merge_and_unload()
    changed = {n for n, p in merged.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {f"{t}.weight" for t in targets}
    assert linear_cores(merged) and merged.leapformer_linearize["layers"] == [1]
    # the merged model saves and loads with its new parameters
    merged.eval()
    save_linearized(merged, tmp_path / "lin")
    assert is_linearized(tmp_path / "lin") and not is_linearized(tmp_path)
    loaded = load_linearized(tmp_path / "lin")
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=batch[0]).logits,
                                   merged(input_ids=batch[0]).logits)
    assert sorted(linear_cores(loaded)) == [1]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a linearised model folder"):
        load_linearized(tmp_path)
    with pytest.raises(ValueError, match="model is not linearised"):
        save_linearized(tiny("gpt2"), tmp_path / "x")
    model = tiny("llama")
    with pytest.raises(ValueError, match="no linearised layers"):
        finetune_lora(model, lambda i: _batch(), 1)
