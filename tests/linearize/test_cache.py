"""The constant-size cache of linearised models: exact against the full forward and the
default key/value cache, left padding as if alone, memory flat in the length."""

from __future__ import annotations

import pytest
import torch

from leapformer.hf import CACHE_ARGUMENT
from leapformer.linearize import linear_cache, linearize, state_bytes

from ._tiny import ARCHS, VOCAB, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("layers", ["all", [1]])
def test_generate_matches_default_cache_and_items_alone(arch, layers):
    model = tiny(arch, sharp=2.0)
    linearize(model, "leap", layers=layers)
    ids = torch.randint(1, VOCAB, (2, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    kw = dict(max_new_tokens=6, do_sample=False)
    default = model.generate(ids, attention_mask=mask, **kw)
    cache = linear_cache(model)
    constant = model.generate(ids, attention_mask=mask, **{CACHE_ARGUMENT: cache}, **kw)
    assert torch.equal(constant, default)
    alone = model.generate(ids[1:, 3:], **{CACHE_ARGUMENT: linear_cache(model)}, **kw)
    assert torch.equal(alone[0, -6:], constant[1, -6:])
    kinds = [type(layer).__name__ for layer in cache.layers]
    assert kinds == (["LinearStateLayer"] * 2 if layers == "all"
                     else ["DynamicLayer", "LinearStateLayer"])


@pytest.mark.parametrize("arch", ARCHS)
def test_steps_equal_the_full_forward_with_flat_memory(arch):
    model = tiny(arch)
    linearize(model, "leap", feature_map="hedgehog")
    ids = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(4))
    cache = linear_cache(model)
    sizes = []
    with torch.no_grad():
        full = model(input_ids=ids).logits
        out = model(input_ids=ids[:, :5], **{CACHE_ARGUMENT: cache}, use_cache=True)
        steps = [out.logits]
        for t in range(5, 40):
            steps.append(model(input_ids=ids[:, t:t + 1], **{CACHE_ARGUMENT: cache},
                               use_cache=True).logits)
            sizes.append(state_bytes(cache))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)
    # the state of every linear layer is the same size at every length
    assert len(set(sizes)) == 1 and sizes[0] > 0
    assert cache.get_seq_length() == 40
    assert all(layer.keys is None for layer in cache.layers)


def test_cache_errors():
    model = tiny("gpt2")
    with pytest.raises(ValueError, match="no linearised layers"):
        linear_cache(model)
    linearize(model)
    cache = linear_cache(model)
    with pytest.raises(ValueError, match="cannot be cropped"):
        cache.layers[0].crop(-1)
