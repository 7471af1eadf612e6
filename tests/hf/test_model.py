"""The transformers wrapper: Auto classes, the config mapping, save/load round trip,
the forward against the wrapped CausalLM (cache, padding, loss), and errors."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from leapformer.hf import CACHE_ARGUMENT, LeapformerCache, LeapformerConfig, LeapformerForCausalLM
from leapformer.models import CausalLM, LMConfig
from tests.hf.tiny import ATTENTIONS, CTX, SIZES, V, left_pad, make_hf

pytestmark = pytest.mark.usefixtures("one_thread")


def _mechanisms(model):
    return [layer.self_attn.mechanism for layer in model.model.decoder.layers]


@pytest.mark.parametrize("name", ATTENTIONS)
def test_auto_classes_build_the_model(name):
    attention = ATTENTIONS[name]
    cfg = AutoConfig.for_model("leapformer", **SIZES, attention=attention)
    assert isinstance(cfg, LeapformerConfig)
    model = AutoModelForCausalLM.from_config(cfg)
    assert isinstance(model, LeapformerForCausalLM) and isinstance(model.model, CausalLM)
    expected = [attention] * 2 if isinstance(attention, str) else attention
    assert _mechanisms(model) == expected
    lm = model.model.cfg
    assert (lm.vocab_size, lm.d_model, lm.num_layers, lm.nhead, lm.dim_feedforward,
            lm.context_length) == (V, 32, 2, 4, 64, CTX)


def test_config_defaults_and_lm_config_round_trip():
    cfg = LeapformerConfig()
    assert cfg.layer_attention == ["leap"] * cfg.num_hidden_layers
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings"):
        assert isinstance(getattr(cfg, name), int) and getattr(cfg, name) > 0
    lm = LMConfig(vocab_size=V, attention=["softmax", "leap", "linear"], num_layers=3,
                  d_model=32, nhead=4, dim_feedforward=48, context_length=40,
                  positions="learned", tie_embeddings=False, pad_id=None,
                  mechanism_options={"leap": {"step_down": 2}})
    assert LeapformerConfig.from_lm_config(lm).to_lm_config() == lm
    single = LMConfig(vocab_size=V, attention="leap", num_layers=2, d_model=32, nhead=4,
                      mechanism_options={"step_down": 2})
    assert LeapformerConfig.from_lm_config(single).to_lm_config() == single


@pytest.mark.parametrize("tied", [False, True])
def test_save_and_load_round_trip_exactly(tmp_path, tied):
    model = make_hf(ATTENTIONS["hybrid"], seed=1, tie_word_embeddings=tied,
                    position_embedding_type="learned" if tied else "sinusoidal",
                    mechanism_options={"leap": {"step_down": 2}})
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "leapformer"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64)
    assert isinstance(loaded, LeapformerForCausalLM) and not loaded.training
    assert loaded.config.to_lm_config() == model.config.to_lm_config()
    before, after = model.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    ids, mask = left_pad([[5, 9, 2, 30], [7, 1]])
    with torch.no_grad():
        a = model(ids, attention_mask=mask, use_cache=False).logits
        b = loaded(ids, attention_mask=mask, use_cache=False).logits
    assert torch.equal(a, b)
    assert loaded.model.cfg.layer_attention == ["softmax", "leap"]
    assert (loaded.model.output is None) == tied


@pytest.mark.parametrize("name", ATTENTIONS)
@torch.no_grad()
def test_forward_equals_the_causal_lm_and_the_cache_is_exact(name):
    model = make_hf(ATTENTIONS[name], seed=2)
    ids = torch.randint(1, V, (2, 9))
    full = model(ids, use_cache=False).logits
    torch.testing.assert_close(full, model.model(ids))
    assert getattr(model(ids, use_cache=False), CACHE_ARGUMENT) is None
    cache = model.new_cache(2)
    prefix = model(ids[:, :4], **{CACHE_ARGUMENT: cache}).logits  # a prompt, then one at a time
    steps = [model(ids[:, t:t + 1], **{CACHE_ARGUMENT: cache}).logits for t in range(4, 9)]
    torch.testing.assert_close(torch.cat([prefix, *steps], 1), full)
    assert cache.get_seq_length() == 9
    out = model(ids, logits_to_keep=1)
    assert isinstance(getattr(out, CACHE_ARGUMENT), LeapformerCache)
    torch.testing.assert_close(out.logits, full[:, -1:])


@pytest.mark.parametrize("name", ATTENTIONS)
@torch.no_grad()
def test_left_padding_gives_each_item_its_logits_alone(name):
    model = make_hf(ATTENTIONS[name], seed=3)
    prompts = [[4], [8, 3, 12], [6, 20, 9, 1, 33]]
    ids, mask = left_pad(prompts)
    for use_cache in (False, True):
        batch = model(ids, attention_mask=mask, use_cache=use_cache).logits
        for b, p in enumerate(prompts):
            alone = model(torch.tensor([p]), use_cache=use_cache).logits[0]
            torch.testing.assert_close(batch[b, -len(p):], alone)


@torch.no_grad()
def test_labels_give_the_next_token_loss():
    model = make_hf(ATTENTIONS["hybrid"], seed=4)
    ids = torch.randint(1, V, (3, 8))
    loss = model(ids, labels=ids).loss
    torch.testing.assert_close(loss, model.model.loss(ids))
    labels = ids.clone()
    labels[:, :4] = -100  # no loss on tokens 1-3 (token 0 is never a target)
    logits = model.model(ids)
    expected = torch.nn.functional.cross_entropy(logits[:, 3:-1].reshape(-1, V),
                                                 ids[:, 4:].reshape(-1))
    torch.testing.assert_close(model(ids, labels=labels).loss, expected)


def test_gradients_reach_the_wrapped_parameters():
    model = make_hf("leap", seed=5).train()
    ids = torch.randint(1, V, (2, 6))
    model(ids, labels=ids).loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"attention": "nope"}, ValueError, "unknown attention mechanism"),
    ({"attention": ["leap"]}, ValueError, "one per layer"),
    ({"attention": "linformer"}, ValueError, "no causal form"),
    ({"attention": "leap", "mechanism_options": {"softmax": {}}}, ValueError, "does not use"),
    ({"attention": ["leap", "leap"], "mechanism_options": {"leap": 3}}, TypeError,
     "mechanism_options"),
    ({"attention": ["leap", "leap"], "mechanism_options": {"softmax": {}}}, ValueError,
     "mechanism_options must map"),
    ({"attention": 3}, TypeError, "attention must be"),
    ({"hidden_size": 30}, ValueError, "nhead|divisible"),
])
def test_bad_configs_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        LeapformerConfig(**{**SIZES, **kwargs})


def test_bad_inputs_raise():
    from transformers import DynamicCache

    model = make_hf("leap")
    ids = torch.randint(1, V, (2, 5))
    with pytest.raises(TypeError, match="LeapformerCache"):
        model(ids, **{CACHE_ARGUMENT: DynamicCache()})
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids, attention_mask=torch.ones(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="output_attentions"):
        model(ids, output_attentions=True)
    with pytest.raises(TypeError, match="CausalLM"):
        LeapformerCache(torch.nn.Linear(2, 2), 1)


def test_leapformer_imports_without_transformers():
    code = ("import sys; sys.modules['transformers'] = None\n"
            "import leapformer, leapformer.models, leapformer.nn, leapformer.ops\n"
            "try:\n    import leapformer.hf\nexcept ImportError as e:\n    print(e)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "pip install 'leapformer[hf]'" in done.stdout


@torch.no_grad()
def test_from_causal_lm_wraps_a_trained_model():
    torch.manual_seed(6)
    lm = CausalLM(LMConfig(vocab_size=V, attention=["leap", "softmax"], num_layers=2,
                           d_model=32, nhead=4, dim_feedforward=64, dropout=0.0,
                           mechanism_options={"leap": {"step_down": 2}})).double().eval()
    model = LeapformerForCausalLM.from_causal_lm(lm, eos_token_id=3).eval()
    assert model.config.eos_token_id == 3 and model.config.layer_attention == ["leap", "softmax"]
    ids = torch.randint(1, V, (2, 7))
    assert torch.equal(model(ids, use_cache=False).logits, lm(ids))
    with pytest.raises(TypeError, match="CausalLM"):
        LeapformerForCausalLM.from_causal_lm(model)


def test_the_cache_is_taken_under_either_name_but_not_twice():
    model = make_hf("leap", seed=3)
    ids = torch.randint(1, V, (2, 6))
    full = model(ids, use_cache=False).logits
    for name in ("cache", "past_key_values"):
        cache = model.new_cache(2)
        prefix = model(ids[:, :3], **{name: cache}).logits
        rest = model(ids[:, 3:], **{name: cache}).logits
        torch.testing.assert_close(torch.cat([prefix, rest], 1), full)
    with pytest.raises(ValueError, match="cache or past_key_values"):
        model(ids, cache=model.new_cache(2), past_key_values=model.new_cache(2))


def test_cache_refuses_rollback_and_outside_updates():
    """The deliberate limits of the cache: no rollback (assisted decoding) and no filling by
    transformers' update methods; each is a clear error, a no-op crop is fine."""
    model = make_hf(ATTENTIONS["hybrid"], seed=3)  # a softmax (KV) and a LeaP (state) layer
    cache = model.new_cache(1)
    model(torch.randint(1, V, (1, 5)), **{CACHE_ARGUMENT: cache})
    zeros = torch.zeros(1, 1, 1, 1)
    kv, state = cache.layers
    for layer in (kv, state):
        layer.crop(0)  # nothing to remove
        with pytest.raises(NotImplementedError, match="cannot be rolled back"):
            layer.crop(2)
    with pytest.raises(NotImplementedError, match="update methods are not used"):
        kv.update(zeros, zeros)
    with pytest.raises(NotImplementedError, match="update methods are not used"):
        state.update_recurrent_state(zeros)
    assert cache.get_seq_length() == 5
