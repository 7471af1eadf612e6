"""``model.generate`` through LeapformerCache: greedy equals the project's own
generation token for token, a left-padded batch equals its items alone, beam
search and a passed cache work, and linear layers' state does not grow."""

import pytest
import torch

from leapformer.hf import CACHE_ARGUMENT, KVLayer, LeapformerCache, StateLayer
from leapformer.models.generate import generate
from tests.hf.tiny import ATTENTIONS, V, left_pad, make_hf

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = [[7], [3, 9, 14], [2, 11, 5, 20, 8, 1, 16]]  # lengths 1, 3, 7
NEW = 12


def _hf_new_tokens(model, prompts, **kwargs):
    ids, mask = left_pad(prompts)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                         **kwargs)
    return out[:, ids.shape[1]:].tolist()


@pytest.mark.parametrize("attention", [*ATTENTIONS.values(), ["cosformer", "linear"]],
                         ids=[*ATTENTIONS, "cosformer"])
def test_greedy_equals_the_project_generation_and_items_alone(attention):
    model = make_hf(attention, seed=11)
    batch = _hf_new_tokens(model, PROMPTS)
    assert batch == generate(model.model, PROMPTS, NEW)
    assert batch == [_hf_new_tokens(model, [p])[0] for p in PROMPTS]
    assert len({tuple(row) for row in batch}) == 3  # the prompts lead to different text
    assert all(len(set(row)) > 2 for row in batch)  # not one token repeated


@pytest.mark.parametrize("name", ATTENTIONS)
def test_cached_generation_equals_recomputing_everything(name):
    model = make_hf(ATTENTIONS[name], seed=12)
    assert _hf_new_tokens(model, PROMPTS) == _hf_new_tokens(model, PROMPTS, use_cache=False)


def test_beam_search_reorders_the_cache():
    model = make_hf(ATTENTIONS["hybrid"], seed=12)
    kw = dict(num_beams=3, num_return_sequences=2)
    assert _hf_new_tokens(model, PROMPTS, **kw) == \
        _hf_new_tokens(model, PROMPTS, use_cache=False, **kw)


def test_eos_stops_like_the_project_generation():
    model = make_hf(ATTENTIONS["hybrid"], seed=13)
    free = generate(model.model, PROMPTS, NEW)
    eos = free[2][4]  # a token that the third prompt produces mid-way
    ids, mask = left_pad(PROMPTS)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                         eos_token_id=eos, pad_token_id=0)[:, ids.shape[1]:].tolist()
    expected = generate(model.model, PROMPTS, NEW, eos_id=eos)
    assert len(expected[2]) <= 5 and expected[2][-1] == eos
    for row, want in zip(out, expected, strict=True):
        assert row[:len(want)] == want
        assert all(t == 0 for t in row[len(want):])  # padding after the end


def test_a_passed_cache_is_used_and_returned():
    model = make_hf(ATTENTIONS["hybrid"], seed=14)
    ids, mask = left_pad(PROMPTS)
    cache = model.new_cache(len(PROMPTS))
    out = model.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                         **{CACHE_ARGUMENT: cache}, return_dict_in_generate=True)
    assert getattr(out, CACHE_ARGUMENT) is cache
    assert cache.get_seq_length() == ids.shape[1] + NEW - 1  # the last token is never fed
    assert out.sequences[:, ids.shape[1]:].tolist() == generate(model.model, PROMPTS, NEW)


@torch.no_grad()
def test_linear_state_is_constant_and_softmax_grows():
    model = make_hf(ATTENTIONS["hybrid"], seed=15)
    cache = model.new_cache(2)
    assert [type(layer) for layer in cache.layers] == [KVLayer, StateLayer]
    assert cache.is_linear == [False, True]
    sizes = []
    for length in (8, 200, 300):
        ids = torch.randint(1, V, (2, length - cache.get_seq_length()))
        model(ids, **{CACHE_ARGUMENT: cache})
        sizes.append(cache.layer_nbytes())
    assert cache.get_seq_length() == 300
    kv, state = zip(*sizes)
    assert state[0] == state[1] == state[2] > 0
    assert kv[0] < kv[1] < kv[2]
    H, D = 4, 8  # keys and values of 300 tokens at least, in float64
    assert kv[2] >= 2 * 2 * H * 300 * D * 8
    assert cache.nbytes == sum(sizes[-1])
    assert cache.layers[0].keys.shape == (2, H, 300, D)


def test_generate_cache_bytes_do_not_grow_for_linear_layers():
    model = make_hf("leap", seed=16)
    ids, mask = left_pad(PROMPTS)
    nbytes = []
    for new in (2, 90):
        out = model.generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=False,
                             return_dict_in_generate=True)
        assert isinstance(getattr(out, CACHE_ARGUMENT), LeapformerCache)
        assert getattr(out, CACHE_ARGUMENT).get_seq_length() == ids.shape[1] + new - 1
        nbytes.append(getattr(out, CACHE_ARGUMENT).layer_nbytes())
    assert nbytes[0] == nbytes[1] and all(n > 0 for n in nbytes[0])


@torch.no_grad()
def test_row_selection_repeat_and_reset_keep_the_cache_exact():
    model = make_hf(ATTENTIONS["hybrid"], seed=17)
    ids, mask = left_pad(PROMPTS)
    cache = model.new_cache(len(PROMPTS))
    model(ids, attention_mask=mask, **{CACHE_ARGUMENT: cache})
    cache.batch_select_indices(torch.tensor([2, 0]))
    cache.batch_repeat_interleave(2)  # rows 2, 2, 0, 0
    assert cache.batch_size == 4
    nxt = torch.tensor([[5], [6], [7], [8]])
    got = model(nxt, **{CACHE_ARGUMENT: cache}).logits[:, -1]
    for row, (p, t) in enumerate(zip([PROMPTS[2]] * 2 + [PROMPTS[0]] * 2, [5, 6, 7, 8])):
        alone = model(torch.tensor([p + [t]]), use_cache=False).logits[0, -1]
        torch.testing.assert_close(got[row], alone)
    cache.reset()
    assert cache.get_seq_length() == 0 and cache.nbytes == model.new_cache(4).nbytes
    fresh = torch.randint(1, V, (4, 5))
    torch.testing.assert_close(model(fresh, **{CACHE_ARGUMENT: cache}).logits,
                               model(fresh, use_cache=False).logits)
