"""Causal LM: cached decoding equals the full forward, left padding is exact,
the loss skips padding, presets, positions and errors."""

import pytest
import torch

from leapformer.models import LM_PRESETS, CausalLM, LMConfig, count_parameters, next_token_loss

V, CTX = 23, 32
# (mechanism, options); cosFormer also in its "stepping" length mode
MECHS = [("softmax", {}), ("linear", {}), ("elu", {}), ("cosformer", {}), ("leap", {}),
         ("performer", {}), ("cosformer", {"length_mode": "stepping"})]
IDS = ["softmax", "linear", "elu", "cosformer", "leap", "performer", "cosformer-stepping"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(mech="softmax", options=None, positions="learned", seed=0, **kw):
    """A small float64 model whose attention matters (out_proj scaled up)."""
    torch.manual_seed(seed)
    cfg = LMConfig(**{"vocab_size": V, "context_length": CTX, "attention": mech,
                      "num_layers": 2, "d_model": 16, "nhead": 2, "dim_feedforward": 32,
                      "dropout": 0.0, "positions": positions, "tie_embeddings": False,
                      "scale_embedding": False, "mechanism_options": options or {}, **kw})
    model = CausalLM(cfg).double().eval()
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.self_attn.out_proj.weight.mul_(4.0)
    return model


def _tol(options):
    # stepping computes its quadratic weights in float32 (as CosFormer does)
    return dict(rtol=1e-5, atol=1e-6) if options.get("length_mode") == "stepping" else {}


@pytest.mark.parametrize(("mech", "options"), MECHS, ids=IDS)
@torch.no_grad()
def test_token_by_token_equals_full_forward(mech, options):
    model = make_model(mech, options)
    tokens = torch.randint(0, V, (2, 11))
    full = model(tokens, target_length=CTX)
    cache = model.new_cache(2)
    steps = [model(tokens[:, t:t + 1], cache=cache, target_length=CTX) for t in range(11)]
    torch.testing.assert_close(torch.cat(steps, 1), full, **_tol(options))
    assert cache.length == 11 and cache.lengths.tolist() == [11, 11]


@pytest.mark.parametrize(("mech", "options"), MECHS, ids=IDS)
@torch.no_grad()
def test_prefill_then_steps_equals_full_forward(mech, options):
    model = make_model(mech, options, seed=1)
    tokens = torch.randint(0, V, (2, 10))
    full = model(tokens, target_length=CTX)
    cache = model.new_cache(2, max_length=10)
    parts = [model(tokens[:, :5], cache=cache, target_length=CTX),
             model(tokens[:, 5:7], cache=cache, target_length=CTX)]
    parts += [model(tokens[:, t:t + 1], cache=cache, target_length=CTX) for t in (7, 8, 9)]
    torch.testing.assert_close(torch.cat(parts, 1), full, **_tol(options))
    with pytest.raises(ValueError, match="max_length"):
        model(tokens[:, :1], cache=cache, target_length=CTX)


def _left_pad(prompts, pad_id=0):
    P = max(map(len, prompts))
    tokens = torch.full((len(prompts), P), pad_id)
    mask = torch.ones(len(prompts), P, dtype=torch.bool)
    for b, p in enumerate(prompts):
        tokens[b, P - len(p):] = torch.tensor(p)
        mask[b, P - len(p):] = False
    return tokens, mask


@pytest.mark.parametrize(("mech", "options"), MECHS, ids=IDS)
@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
@torch.no_grad()
def test_left_padded_cache_equals_items_alone(mech, options, positions):
    model = make_model(mech, options, positions=positions, seed=2)
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(1, V, (n,), generator=gen).tolist() for n in (1, 3, 7)]
    follow = torch.randint(1, V, (3, 3), generator=gen)  # three more tokens per item
    tokens, mask = _left_pad(prompts, pad_id=5)
    cache = model.new_cache(3)
    first = model(tokens, key_padding_mask=mask, cache=cache, target_length=CTX)
    steps = [model(follow[:, t:t + 1], cache=cache, target_length=CTX) for t in range(3)]
    assert cache.lengths.tolist() == [4, 6, 10]
    for b, p in enumerate(prompts):
        alone = model.new_cache(1)
        ref = model(torch.tensor([p]), cache=alone, target_length=CTX)
        torch.testing.assert_close(first[b, -len(p):], ref[0], **_tol(options))
        for t in range(3):
            ref = model(follow[b:b + 1, t:t + 1], cache=alone, target_length=CTX)
            torch.testing.assert_close(steps[t][b], ref[0], **_tol(options))
    if options.get("length_mode") != "stepping":  # the full forward, left-padded, too
        seq = torch.cat((tokens, follow), 1)
        full = model(seq, key_padding_mask=torch.cat((mask, torch.zeros_like(follow, dtype=bool)),
                                                     1), target_length=CTX)
        torch.testing.assert_close(full[:, -4:], torch.cat([first[:, -1:]] + steps, 1))


@torch.no_grad()
def test_padded_slot_contents_do_not_matter():
    model = make_model("softmax", seed=4)
    tokens, mask = _left_pad([[3], [4, 5, 6]])
    outs = []
    for fill in (0, 7):
        cache = model.new_cache(2)
        outs.append(model(tokens.masked_fill(mask, fill), key_padding_mask=mask, cache=cache))
        outs.append(model(torch.tensor([[1], [2]]), cache=cache))
    torch.testing.assert_close(outs[0][:, -1], outs[2][:, -1])
    torch.testing.assert_close(outs[1], outs[3])


@pytest.mark.parametrize("mech", ["softmax", "cosformer", "leap"])
@torch.no_grad()
def test_loss_ignores_padding(mech):
    model = make_model(mech, seed=5)
    seqs = [[3, 4, 5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15]]
    alone = sum(model.loss(torch.tensor([s]), reduction="sum") for s in seqs)
    n_targets = sum(len(s) - 1 for s in seqs)
    left, _ = _left_pad(seqs)  # pad_id 0 -> inferred mask
    right = torch.zeros_like(left)
    for b, s in enumerate(seqs):
        right[b, :len(s)] = torch.tensor(s)
    for tokens in (left, right):
        torch.testing.assert_close(model.loss(tokens, reduction="sum"), alone)
        torch.testing.assert_close(model.loss(tokens), alone / n_targets)
        per = model.loss(tokens, reduction="none")
        assert per.shape == (3, 5) and int((per != 0).sum()) == n_targets


def test_next_token_loss_matches_cross_entropy():
    torch.manual_seed(6)
    logits, tokens = torch.randn(2, 5, V), torch.randint(0, V, (2, 5))
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V),
                                            tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(next_token_loss(logits, tokens), ref)
    with pytest.raises(ValueError, match="reduction"):
        next_token_loss(logits, tokens, reduction="avg")


def test_training_lowers_the_loss():
    torch.manual_seed(7)
    model = CausalLM(LMConfig(vocab_size=V, context_length=CTX, attention="leap", num_layers=2,
                              d_model=32, nhead=2, dim_feedforward=64, dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tokens = (torch.arange(12)[None, :] * 2 + torch.arange(8)[:, None]) % (V - 1) + 1
    losses = []
    for _ in range(30):
        loss = model.loss(tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@torch.no_grad()
def test_positions_none_and_sinusoidal():
    model = make_model("cosformer", positions="none")
    assert model.pos is None
    tokens = torch.randint(1, V, (2, 40))  # past the context: no position table to outgrow
    assert model(tokens).shape == (2, 40, V)
    assert make_model(positions="sinusoidal")(tokens).shape == (2, 40, V)
    with pytest.raises(ValueError, match="learned position"):
        make_model(positions="learned")(tokens)


@torch.no_grad()
def test_tied_output_projection():
    torch.manual_seed(8)
    model = CausalLM(LMConfig(vocab_size=V, num_layers=1, d_model=16, nhead=2,
                              dim_feedforward=32)).eval()
    assert model.output is None
    tokens = torch.randint(1, V, (1, 5))
    torch.testing.assert_close(model(tokens), model.hidden_states(tokens) @ model.embed.weight.T)
    untied = LMConfig(vocab_size=V, num_layers=1, d_model=16, nhead=2, dim_feedforward=32,
                      tie_embeddings=False)
    tied = LMConfig(vocab_size=V, num_layers=1, d_model=16, nhead=2, dim_feedforward=32)
    assert count_parameters(untied) - count_parameters(tied) == V * 16
    assert count_parameters(tied) == sum(p.numel() for p in model.parameters())


def test_presets():
    lite = LMConfig.preset("lite", 10_000, attention="leap")
    assert (lite.num_layers, lite.d_model, lite.nhead, lite.context_length) == (2, 128, 2, 256)
    small = LMConfig.preset("small", 10_000, attention="leap")
    assert (small.num_layers, small.d_model, small.nhead, small.context_length) == \
        (4, 256, 4, 512)
    for cfg, low, high in ((lite, 1_000_000, 2_500_000), (small, 2_000_000, 10_000_000)):
        n = count_parameters(cfg)
        assert low < n < high
        assert n == sum(p.numel() for p in CausalLM(cfg).parameters())
    wiki = LMConfig.preset("wikitext103", 267_744)
    assert (wiki.num_layers, wiki.d_model, wiki.dim_feedforward, wiki.dropout) == \
        (16, 1024, 4096, 0.3)
    # 16 layers of 12.6M (meta device: nothing allocated) plus the tied embedding
    assert count_parameters(wiki) == 16 * 12_596_224 + 2 * 1024 + 267_744 * 1024
    assert set(LM_PRESETS) == {"wikitext103", "lite", "small"}
    with pytest.raises(ValueError, match="unknown LM preset"):
        LMConfig.preset("huge", 100)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"attention": "nope"}, "unknown attention mechanism"),
    ({"attention": "linformer"}, "no causal form"),
    ({"positions": "rotary"}, "positions"),
    ({"vocab_size": 0}, "vocab_size"),
    ({"pad_id": 99}, "pad_id"),
    ({"d_model": 15}, "multiple of nhead"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LMConfig(**{"vocab_size": V, "nhead": 2, "d_model": 16, **kwargs})


@torch.no_grad()
def test_forward_errors():
    model = make_model()
    tokens = torch.randint(1, V, (2, 5))
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 2] = True  # a hole in the middle
    with pytest.raises(ValueError, match="contiguous"):
        model(tokens, key_padding_mask=mask)
    with pytest.raises(ValueError, match="integer tensor"):
        model(tokens.double())
    with pytest.raises(ValueError, match="shape of tokens"):
        model(tokens, key_padding_mask=mask[:, :3])
    with pytest.raises(TypeError, match="bool"):
        model(tokens, key_padding_mask=mask.long())
    cache = model.new_cache(2)
    model(tokens, cache=cache)
    late = torch.zeros(2, 1, dtype=torch.bool)
    late[1, 0] = True
    with pytest.raises(ValueError, match="left padding"):
        model(tokens[:, :1], key_padding_mask=late, cache=cache)
    with pytest.raises(ValueError, match="batch size"):
        model(tokens[:1, :1], cache=cache)
    with pytest.raises(TypeError, match="LMCache"):
        model(tokens, cache=cache.decoder)
