"""Batched generation: left-padded batches decode as items alone, sampling
options, reproducibility, EOS, modes restored, argument errors."""

import pytest
import torch

from leapformer.models import CausalLM, LMConfig, choose_next, generate
from tests.models.test_lm import CTX, IDS, MECHS, V, make_model

PROMPTS = [[7], [3, 9, 14], [2, 11, 5, 20, 8, 1, 16]]  # lengths 1, 3, 7


pytestmark = pytest.mark.usefixtures("one_thread")


def _length(options):
    return "stepping" if options.get("length_mode") == "stepping" else "train"


@pytest.mark.parametrize(("mech", "options"), MECHS, ids=IDS)
@pytest.mark.parametrize("positions", ["learned", "none"])
def test_batched_greedy_equals_each_prompt_alone(mech, options, positions):
    model = make_model(mech, options, positions=positions, seed=10)
    kw = dict(cosformer_length=_length(options))
    batch = generate(model, PROMPTS, 10, **kw)
    alone = [generate(model, [p], 10, **kw)[0] for p in PROMPTS]
    assert batch == alone
    assert [len(row) for row in batch] == [10, 10, 10]
    assert len({tuple(row) for row in batch}) == 3  # the prompts lead to different text


@torch.no_grad()
def test_greedy_follows_the_full_forward():
    model = make_model("leap", seed=11)
    new = generate(model, [PROMPTS[1]], 6)[0]
    seq = torch.tensor([PROMPTS[1] + new])
    expected = model(seq).argmax(-1)[0, len(PROMPTS[1]) - 1:-1]
    assert new == expected.tolist()


def test_cosformer_lengths():
    model = make_model("cosformer", seed=12)
    train = generate(model, PROMPTS, 6)
    assert generate(model, PROMPTS, 6, cosformer_length=CTX) == train
    with torch.no_grad():  # "train" = L is the context length in the full forward too
        seq = torch.tensor([PROMPTS[2] + train[2]])
        expected = model(seq, target_length=CTX).argmax(-1)[0, 6:-1]
    assert train[2] == expected.tolist()
    stepping = generate(model, PROMPTS, 6, cosformer_length="stepping")
    with torch.no_grad():  # "stepping" = L is the current length
        seq = torch.tensor([PROMPTS[2] + stepping[2]])
        for m in model.modules():
            if hasattr(m, "length_mode"):
                m.length_mode = "stepping"
        expected = model(seq).argmax(-1)[0, 6:-1]
    assert stepping[2] == expected.tolist()


@pytest.mark.parametrize("mech", ["softmax", "leap"])
def test_top_k_one_and_tiny_top_p_equal_greedy(mech):
    model = make_model(mech, seed=13)
    greedy = generate(model, PROMPTS, 8)
    assert generate(model, PROMPTS, 8, strategy="sample", top_k=1, temperature=5.0,
                    seed=1) == greedy
    assert generate(model, PROMPTS, 8, strategy="sample", top_p=1e-9, seed=2) == greedy


def test_seeded_sampling_is_reproducible():
    model = make_model("linear", seed=14)
    kw = dict(strategy="sample", temperature=1.5, top_k=10, top_p=0.95)
    rng = torch.random.get_rng_state()
    a = generate(model, PROMPTS, 12, seed=123, **kw)
    assert torch.equal(rng, torch.random.get_rng_state())  # the global RNG is not used
    assert generate(model, PROMPTS, 12, seed=123, **kw) == a
    assert generate(model, PROMPTS, 12, seed=124, **kw) != a


def test_choose_next_respects_top_k_and_top_p():
    logits = torch.tensor([[0.0, 3.0, 2.9, -1.0, 1.0]]).repeat(400, 1)
    gen = torch.Generator().manual_seed(0)
    drawn = choose_next(logits, strategy="sample", top_k=2, generator=gen)
    assert set(drawn.tolist()) == {1, 2}
    p = logits[0].softmax(-1)
    top_p = float(p[1] + p[2]) - 1e-6  # tokens 1 and 2 reach it; 4 is not needed
    drawn = choose_next(logits, strategy="sample", top_p=top_p, generator=gen)
    assert set(drawn.tolist()) == {1, 2}
    assert choose_next(logits[:2]).tolist() == [1, 1]


def test_eos_stops_each_item():
    model = make_model("softmax", seed=15)
    free = generate(model, PROMPTS, 8)
    eos = free[1][2]
    out = generate(model, PROMPTS, 8, eos_id=eos)
    for row, ref in zip(out, free, strict=True):
        cut = ref.index(eos) + 1 if eos in ref else len(ref)
        assert row == ref[:cut]


def test_zero_new_tokens_and_modes_restored():
    model = make_model("cosformer", seed=16).train()
    assert generate(model, PROMPTS, 0) == [[], [], []]
    generate(model, PROMPTS, 3, cosformer_length="stepping")
    assert model.training
    assert all(m.length_mode == "given" for m in model.modules() if hasattr(m, "length_mode"))


def test_tied_default_model_generates():
    torch.manual_seed(17)
    model = CausalLM(LMConfig(vocab_size=V, context_length=CTX, attention="leap", num_layers=1,
                              d_model=16, nhead=2, dim_feedforward=32))
    out = generate(model, PROMPTS, 5, strategy="sample", seed=0)
    assert [len(r) for r in out] == [5, 5, 5] and all(0 <= t < V for r in out for t in r)


@pytest.mark.parametrize(("prompts", "kwargs", "name"), [
    ([], {}, "prompts"),
    ([[1], []], {}, r"prompts\[1\]"),
    ([[1, V]], {}, r"prompts\[0\]"),
    ([[1]], {"max_new_tokens": -1}, "max_new_tokens"),
    ([[1]], {"top_p": 0.0}, "top_p"),
    ([[1]], {"top_p": 1.5}, "top_p"),
    ([[1]], {"top_k": 0}, "top_k"),
    ([[1]], {"temperature": 0.0}, "temperature"),
    ([[1]], {"strategy": "beam"}, "strategy"),
    ([[1]], {"eos_id": V}, "eos_id"),
    ([[1]], {"pad_id": -1}, "pad_id"),
    ([[1]], {"cosformer_length": "given"}, "cosformer_length"),
    ([[1]], {"max_new_tokens": CTX + 1}, "max_new_tokens"),
])
def test_errors_name_the_argument(prompts, kwargs, name):
    model = make_model()
    kw = {"max_new_tokens": 2, **kwargs}
    with pytest.raises(ValueError, match=name):
        generate(model, prompts, **kw)
    with pytest.raises(TypeError, match="CausalLM"):
        generate(model.decoder, [[1]], 2)
